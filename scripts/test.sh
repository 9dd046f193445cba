#!/usr/bin/env bash
# Runs the whole test suite on real PostgreSQL clusters and librdkafka's mock Kafka cluster.
# Installs what is missing first (Debian packages), so it works on a fresh machine.
# Usage: scripts/test.sh [extra dotnet test arguments, e.g. --filter Snapshot]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib/install.sh
ensure_packages
scripts/check-deploy.sh  # deploy/: kustomize overlays, yamllint, promtool rule checks and unit tests

# The CLI as users run it: ./replicator builds it (a native, ahead-of-time compiled executable
# where the toolchain allows). The tests that start replicator as a process run that executable;
# after a fallback build (a replicator.dll under dotnet, as ./replicator runs it) they run the test
# build's own replicator.dll, the same code.
"$root/replicator" --help >/dev/null
source scripts/lib/cli.sh
cli_in "$root/artifacts/cli"
if [ ${#CLI[@]} = 1 ]; then export CLI_UNDER_TEST="${CLI[0]}"; fi

results="$root/artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"
log="$results/console.log"
set +e
dotnet test "$root/Replicator.sln" -c Release --nologo --results-directory "$results" \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain closing line: "N passed, N failed" (summed over test assemblies).
passed=$(grep -Eo 'Passed: +[0-9]+' "$log" | grep -Eo '[0-9]+' | paste -sd+ | bc 2>/dev/null || echo 0)
failed=$(grep -Eo 'Failed: +[0-9]+' "$log" | grep -Eo '[0-9]+' | paste -sd+ | bc 2>/dev/null || echo 0)
skipped=$(grep -Eo 'Skipped: +[0-9]+' "$log" | grep -Eo '[0-9]+' | paste -sd+ | bc 2>/dev/null || echo 0)
echo
if [ "${failed:-0}" != 0 ]; then
  # Repeated at the very end, where a CI log's tail shows it: which tests failed and why (first lines).
  echo "Failed tests (full output in $log):"
  grep -E -A8 '^ +Failed [A-Za-z_]' "$log" | grep -v -E '^ +Stack Trace:|^ +at ' | cut -c1-300 || true
  echo
fi
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$status"
