#!/usr/bin/env bash
# Bounded memory: one source transaction of $ROWS rows (default 2,000,000) replicates while we
# watch the replicator process's peak resident memory (VmHWM). Prints rows, time and peak RSS.
# Usage: bench/memory.sh [rows]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib/install.sh"
ensure_packages
source "$root/bench/lib/clusters.sh"
ROWS=${1:-2000000}
trap 'stop_pids TERM "${rep_pid:-}"; stop_clusters' EXIT
freeze_cli "$root"
start_cluster SRC
start_cluster TGT
for p in $SRC_PORT $TGT_PORT; do psql_at "$p" postgres -c "CREATE DATABASE big"; done
psql_at "$SRC_PORT" big -c "CREATE TABLE item (id bigint PRIMARY KEY, name text, price numeric(12,2), at timestamptz)"
"${CLI[@]}" run --source "postgres://postgres@127.0.0.1:$SRC_PORT/big" --target "postgres://postgres@127.0.0.1:$TGT_PORT/big" \
  --metrics-listen 127.0.0.1:0 --log-level Warning >"$BENCH_DIR/replicator.log" 2>&1 &
rep_pid=$!
until psql_at "$TGT_PORT" big -c "SELECT 1 FROM replicator.position" 2>/dev/null | grep -q 1; do sleep 0.5; done
rss() { awk '/VmHWM/ {print $2}' "/proc/$rep_pid/status"; }
before=$(rss)
t0=$(now)
psql_at "$SRC_PORT" big -c "INSERT INTO item SELECT g, 'item ' || g, g % 1000 + 0.99, now() FROM generate_series(1, $ROWS) g"
t_insert=$(elapsed "$t0" "$(now)")
goal=$(psql_at "$SRC_PORT" big -c "SELECT pg_current_wal_insert_lsn()")
wal_mb=$(psql_at "$SRC_PORT" big -c "SELECT round(pg_current_wal_insert_lsn()::text::pg_lsn - '0/0'::pg_lsn)")
wait_slot_caught_up "$SRC_PORT" big replicator "$goal" 1800
t_total=$(elapsed "$t0" "$(now)")
after=$(rss)
n=$(psql_at "$TGT_PORT" big -c "SELECT count(*) FROM item")
cat <<TABLE

Bounded memory — one source transaction of $ROWS rows
| rows on target | insert on source (s) | until applied and confirmed (s) | replicator peak RSS before | peak RSS after |
|---|---|---|---|---|
| $n | $t_insert | $t_total | $((before / 1024)) MiB | $((after / 1024)) MiB |
TABLE
[ "$n" = "$ROWS" ]
