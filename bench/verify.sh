#!/usr/bin/env bash
# Verifier benchmark (issue #6): a clean `replicator verify` pass and a pass that finds 10
# injected differences, against a baseline of one full sum(hashtextextended(t::text, 0)) scan of
# every pgbench table run on both sides at once — all in the same run, on the same clusters.
#
#   bench/verify.sh [SCALE]      (default 50: 5M rows in pgbench_accounts; JOBS=2 by default)
#
# Two throwaway clusters (PostgreSQL 15, wal_level=logical) are started in a temp directory and
# removed at the end. Target: clean pass <= 1.2x baseline; 10 differences <= 1.5x the clean pass.
set -euo pipefail
SCALE=${1:-${SCALE:-50}}
JOBS=${JOBS:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
WORK=$(mktemp -d /tmp/replicator-bench-verify.XXXXXX)
export PGUSER=postgres PGHOST=127.0.0.1
# initdb refuses root: under root the server programs run as the postgres OS user.
AS=(); if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); chown postgres "$WORK"; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_cluster() { # name port
  "${AS[@]}" "$PGBIN/initdb" -D "$WORK/$1" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N >/dev/null
  cat >>"$WORK/$1/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/$1'
wal_level = logical
max_replication_slots = 16
max_wal_senders = 16
shared_buffers = 512MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
CONF
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/$1" -l "$WORK/$1.log" -w start >/dev/null
}
cleanup() {
  for c in source target; do [ -d "$WORK/$c" ] && "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/$c" -m immediate -w stop >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

SP=$(free_port); start_cluster source "$SP"
TP=$(free_port); start_cluster target "$TP"
SRC="postgres://postgres@127.0.0.1:$SP/bench"; TGT="postgres://postgres@127.0.0.1:$TP/bench"
"$PGBIN/createdb" -p "$SP" bench; "$PGBIN/createdb" -p "$TP" bench

t0=$(now)
"$PGBIN/pgbench" -i -s "$SCALE" -q -p "$SP" bench 2>&1 | tail -1
"$PGBIN/pg_dump" -p "$SP" bench | "$PGBIN/psql" -q -p "$TP" -d bench -v ON_ERROR_STOP=1 >/dev/null
"$PGBIN/psql" -q -p "$TP" -d bench -c "VACUUM ANALYZE" >/dev/null
echo "loaded scale $SCALE on both sides in $(elapsed "$t0" "$(now)") s"

dotnet build "$ROOT/src/Cli" -c Release -v q -clp:ErrorsOnly -o "$WORK/bin" >/dev/null
VERIFY=(dotnet "$WORK/bin/replicator.dll" verify --source "$SRC" --target "$TGT" --jobs "$JOBS" --log-level Warning)

BASELINE_SQL="SET extra_float_digits = 3;"
for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
  BASELINE_SQL+=" SELECT sum(hashtextextended(t::text, 0)) FROM $t t;"
done
baseline() {
  "$PGBIN/psql" -qAt -p "$SP" -d bench -c "$BASELINE_SQL" >/dev/null &
  local a=$!
  "$PGBIN/psql" -qAt -p "$TP" -d bench -c "$BASELINE_SQL" >/dev/null &
  local b=$!
  wait $a; wait $b
}

baseline   # warm both caches the same way for everyone below
t0=$(now); baseline; T_BASE=$(elapsed "$t0" "$(now)")

t0=$(now); set +e; "${VERIFY[@]}" --report-json "$WORK/clean.json" >"$WORK/clean.txt"; RC_CLEAN=$?; set -e; T_CLEAN=$(elapsed "$t0" "$(now)")

ROWS=$("$PGBIN/psql" -qAt -p "$SP" -d bench -c "SELECT count(*) FROM pgbench_accounts")
"$PGBIN/psql" -q -p "$TP" -d bench -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid IN (SELECT (g * ($ROWS / 10))::int FROM generate_series(1, 10) g)" >/dev/null
t0=$(now); set +e; "${VERIFY[@]}" --report-json "$WORK/diff.json" >"$WORK/diff.txt"; RC_DIFF=$?; set -e; T_DIFF=$(elapsed "$t0" "$(now)")
FOUND=$(python3 -c "import json; print(json.load(open('$WORK/diff.json'))['row_differences'])")

tail -1 "$WORK/clean.txt"
tail -1 "$WORK/diff.txt"
python3 - "$SCALE" "$JOBS" "$T_BASE" "$T_CLEAN" "$RC_CLEAN" "$T_DIFF" "$RC_DIFF" "$FOUND" "$ROWS" <<'PY'
import sys
scale, jobs, base, clean, rc_clean, diff, rc_diff, found, rows = sys.argv[1:]
base, clean, diff = float(base), float(clean), float(diff)
print()
print(f"| verify benchmark, pgbench scale {scale} ({int(rows):,} accounts), --jobs {jobs} | seconds | ratio | target |")
print("|---|---:|---:|---|")
print(f"| baseline: sum(hashtextextended(t::text,0)) of every table, both sides at once | {base:.2f} | 1.00 | |")
print(f"| clean pass (exit {rc_clean}) | {clean:.2f} | {clean/base:.2f}× baseline | ≤ 1.2× {'met' if clean/base <= 1.2 else 'MISSED'} |")
print(f"| pass with 10 injected differences (exit {rc_diff}, {found} found) | {diff:.2f} | {diff/clean:.2f}× clean | ≤ 1.5× {'met' if diff/clean <= 1.5 else 'MISSED'} |")
ok = rc_clean == "0" and rc_diff == "1" and found == "10"
print()
print("correctness: " + ("clean pass exit 0, 10 differences found with exit 1" if ok else f"UNEXPECTED: clean exit {rc_clean}, diff exit {rc_diff}, found {found}"))
sys.exit(0 if ok else 1)
PY
