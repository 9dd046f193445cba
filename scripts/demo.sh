#!/usr/bin/env bash
# The main job, end to end on this machine: two throwaway PostgreSQL servers, a sample database
# (pgbench) with a writer running on the source, 'replicator run' copying it and then streaming
# every change, 'replicator status' while it runs, a verifier pass, and a cutover while an
# application-like writer keeps writing: it ends on the target with every acknowledged write.
# Usage: scripts/demo.sh [seconds of writing, default 30] [pgbench scale, default 5]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib/install.sh"
ensure_packages
source "$root/bench/lib/clusters.sh"
source "$root/bench/lib/writer.sh"
SECONDS_OF_WRITES=${1:-30}
SCALE=${2:-5}
cleanup() { [ -n "${rep_pid:-}" ] && kill -TERM "$rep_pid" 2>/dev/null; [ -n "${writer_pid:-}" ] && kill "$writer_pid" 2>/dev/null; stop_clusters; }
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building replicator and the demo's application writer"
"$root/replicator" --help >/dev/null
build_writer
say "starting two PostgreSQL servers (source and target)"
start_cluster SRC
start_cluster TGT
SRC_URI="postgres://postgres@127.0.0.1:$SRC_PORT/shop"
TGT_URI="postgres://postgres@127.0.0.1:$TGT_PORT/shop"
echo "source $SRC_URI"
echo "target $TGT_URI"
psql_at "$SRC_PORT" postgres -c "CREATE DATABASE shop"
psql_at "$TGT_PORT" postgres -c "CREATE DATABASE shop"
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$SRC_PORT" -U postgres shop 2>&1 | tail -1
# pgbench_history has no primary key: give it a replica identity so the publication can carry
# its changes (preflight would otherwise refuse, naming this very fix).
psql_at "$SRC_PORT" shop -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL; $WRITER_SCHEMA"

say "writer: pgbench at 200 transactions/s on the source for ${SECONDS_OF_WRITES}s"
"$PG_BIN/pgbench" -n -c 2 -R 200 -T "$SECONDS_OF_WRITES" -h 127.0.0.1 -p "$SRC_PORT" -U postgres shop >"$BENCH_DIR/writer.log" 2>&1 &
writer_pid=$!

say "replicator run: snapshot, then continuous replication (log: $BENCH_DIR/replicator.log)"
"$root/replicator" run --source "$SRC_URI" --target "$TGT_URI" --metrics-listen 127.0.0.1:0 >"$BENCH_DIR/replicator.log" 2>&1 &
rep_pid=$!
until psql_at "$TGT_PORT" shop -c "SELECT 1 FROM replicator.position" 2>/dev/null | grep -q 1; do
  kill -0 "$rep_pid" 2>/dev/null || { cat "$BENCH_DIR/replicator.log"; exit 1; }
  sleep 1
done
sed -n '/^table /,/^Slot /p' "$BENCH_DIR/replicator.log" || true

while kill -0 "$writer_pid" 2>/dev/null; do
  say "replicator status (writer running)"
  "$root/replicator" status --source "$SRC_URI" --target "$TGT_URI"
  sleep 10
done
wait "$writer_pid" || true
writer_pid=

say "writer done; waiting for the target to catch up"
goal=$(psql_at "$SRC_PORT" shop -c "SELECT pg_current_wal_insert_lsn()")
wait_slot_caught_up "$SRC_PORT" shop replicator "$goal" 300
"$root/replicator" status --source "$SRC_URI" --target "$TGT_URI"
curl -s "$(grep -Eo 'http://127.0.0.1:[0-9]+/' "$BENCH_DIR/replicator.log" | head -1)metrics" | grep -E '^replicator_apply_(transactions_total|lag_seconds) ' || true

say "replicator verify: one pass at a consistent cut (the cutover requires a recent clean one)"
"$root/replicator" verify --source "$SRC_URI" --target "$TGT_URI"

say "application writer: 200 transactions/s on the source, following the endpoint the cutover's hook writes"
writer_start app "$SRC_URI" 200
sleep 3

say "replicator cutover: fence the source, drain, sequences, verify, switch the application to the target"
"$root/replicator" cutover --source "$SRC_URI" --target "$TGT_URI" --switch-command "$(writer_hook app)"
sleep 3
writer_stop app
echo "application writer: $(cat "$BENCH_DIR/writer-app.out")"
wait "$rep_pid"; rep_pid=   # 'run' stops by itself once the cutover has switched
say "checking the target"
status=0
acked=$(check_acked app "$TGT_PORT" shop)
echo "  every write the application saw acknowledged is on the target, once: $acked"
case "$acked" in yes*) ;; *) status=1 ;; esac
for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
  q="SELECT count(*) || ' rows, sha256 ' || left(encode(sha256(string_agg(x::text, '|' ORDER BY x::text)::bytea), 'hex'), 16) FROM $t x"
  a=$(psql_at "$SRC_PORT" shop -c "$q"); b=$(psql_at "$TGT_PORT" shop -c "$q")
  if [ "$a" = "$b" ]; then echo "  $t: $a — identical"; else echo "  $t: source $a, target $b — DIFFERENT"; status=1; fi
done
echo "  the source now refuses writes: $(psql_at "$SRC_PORT" shop -c "INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 1, 0)" 2>&1 | head -1)"
[ $status = 0 ] && say "done: the application runs on the target, nothing lost" || say "FAILED: see above"
exit $status
