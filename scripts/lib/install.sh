# Shared by scripts: installs the Debian packages Replicator's tests, demo and benchmarks use,
# only when missing. Needs root (or sudo) and Debian's apt.
_apt_updated=""

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ -z "$_apt_updated" ]; then
    $sudo apt-get update -qq >/dev/null
    _apt_updated=1
  fi
  echo "installing: $*" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The basics for tests: PostgreSQL server binaries, librdkafka, promtool.
ensure_packages() {
  local need=()
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql postgresql-contrib)
  ldconfig -p | grep -q 'librdkafka\.so ' || need+=(librdkafka-dev)
  command -v promtool >/dev/null || need+=(prometheus)
  command -v bc >/dev/null || need+=(bc)
  command -v yamllint >/dev/null || need+=(yamllint)
  if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
  command -v dotnet >/dev/null || { echo "dotnet SDK 10 is required (https://dot.net)" >&2; exit 2; }
}

# pgcopydb, for the benchmarks' comparison.
ensure_bench_packages() {
  ensure_packages
  local need=()
  command -v pgcopydb >/dev/null || [ -x /usr/lib/postgresql/15/bin/pgcopydb ] || need+=(pgcopydb)
  if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
}
