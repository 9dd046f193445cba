#!/usr/bin/env bash
# Repeated backlog catch-up, embedded vs Kafka buffer, on ONE backlog (for iterating on the Kafka
# path; bench/cdc.sh is the benchmark of record). Creates 2*TRIALS slots and target databases
# before the backlog is written, then alternates embedded and Kafka trials and prints the
# same-run ratio of each pair with the load average. Progress of each trial (rows of
# pgbench_history on the target every second) goes to $BENCH_DIR/progress-*.txt.
# Usage: bench/kafka-path/catchup.sh [scale=20]  env: BACKLOG_SECONDS=20 TRIALS=2 KEEP=0
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/bench/lib/clusters.sh"
source "$root/scripts/lib/install.sh"
ensure_packages  # librdkafka: a fresh machine does not have it
SCALE=${1:-20}
BACKLOG_SECONDS=${BACKLOG_SECONDS:-20}
TRIALS=${TRIALS:-2}
trap 'stop_pids TERM "${kafka_pid:-}"; [ "${KEEP:-0}" = 1 ] || stop_clusters' EXIT
freeze_cli "$root"  # one frozen build for every trial
start_cluster SRC
start_cluster TGT
echo "clusters: source :$SRC_PORT, target :$TGT_PORT, dir $BENCH_DIR" >&2
psql_at "$SRC_PORT" postgres -c "CREATE DATABASE bench"
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >/dev/null 2>&1
psql_at "$SRC_PORT" bench -c "ALTER TABLE pgbench_history ADD COLUMN hid bigserial; ALTER TABLE pgbench_history REPLICA IDENTITY FULL; CREATE PUBLICATION replicator FOR ALL TABLES"
"$PG_BIN/pg_dump" -h 127.0.0.1 -p "$SRC_PORT" -U postgres --no-publications --no-subscriptions bench >"$BENCH_DIR/dump.sql"
for i in $(seq 1 "$TRIALS"); do
  for kind in e k; do
    db=${kind}$i
    psql_at "$TGT_PORT" postgres -c "CREATE DATABASE $db"
    psql_at "$TGT_PORT" "$db" -f "$BENCH_DIR/dump.sql" >/dev/null
    lsn=$(psql_at "$SRC_PORT" bench -c "SELECT lsn FROM pg_create_logical_replication_slot('${db}_slot', 'pgoutput')")
    psql_at "$TGT_PORT" "$db" -c "CREATE SCHEMA replicator; CREATE TABLE replicator.position (slot_name text PRIMARY KEY, commit_lsn pg_lsn NOT NULL, commit_time timestamptz, kafka_offsets jsonb, updated_at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO replicator.position (slot_name, commit_lsn) VALUES ('${db}_slot', '$lsn')"
  done
done
echo "backlog: pgbench for ${BACKLOG_SECONDS}s..." >&2
"$PG_BIN/pgbench" -n -c 4 -j 2 -T "$BACKLOG_SECONDS" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >"$BENCH_DIR/pgbench.log" 2>&1
txns=$(grep -Eo 'number of transactions actually processed: [0-9]+' "$BENCH_DIR/pgbench.log" | grep -Eo '[0-9]+$')
last=$(psql_at "$SRC_PORT" bench -c "SELECT max(hid) FROM pgbench_history")
echo "backlog: $txns transactions" >&2

trial() { # $1 = db, rest = extra args; prints seconds until the last history row is on the target
  local db=$1; shift
  local t0 pid progress="$BENCH_DIR/progress-$db.txt"
  t0=$(now)
  "${CLI[@]}" run --source "postgres://postgres@127.0.0.1:$SRC_PORT/bench" --target "postgres://postgres@127.0.0.1:$TGT_PORT/$db" \
    --slot "${db}_slot" --metrics-listen 127.0.0.1:0 --log-level "${LOG_LEVEL:-Warning}" "$@" >>"$BENCH_DIR/run-$db.log" 2>&1 &
  pid=$!
  : >"$progress"
  local n=0
  until [ "$(psql_at "$TGT_PORT" "$db" -c "SELECT count(*) FROM pgbench_history WHERE hid = $last" 2>/dev/null || echo 0)" = 1 ]; do
    sleep 0.05; n=$((n + 1))
    if [ $((n % 20)) = 0 ]; then echo "$(elapsed "$t0" "$(now)") $(psql_at "$TGT_PORT" "$db" -c "SELECT count(*) FROM pgbench_history" 2>/dev/null)" >>"$progress"; fi
  done
  elapsed "$t0" "$(now)"
  echo "  $db: process CPU $(awk '{printf "%.2f s (user %.2f, system %.2f)", ($14+$15)/100, $14/100, $15/100}' "/proc/$pid/stat")" >&2
  kill -TERM "$pid"; wait "$pid" || true
}

for i in $(seq 1 "$TRIALS"); do
  load1=$(cut -d' ' -f1 /proc/loadavg)
  te=$(trial "e$i")
  start_dev_kafka "${CLI[@]}"
  tk=$(trial "k$i" --buffer kafka --kafka-bootstrap "$kafka_bootstrap" --topic-prefix "bench$i")
  kill "$kafka_pid"; wait "$kafka_pid" 2>/dev/null || true; kafka_pid=
  load2=$(cut -d' ' -f1 /proc/loadavg)
  echo "trial $i ($txns txns, scale $SCALE, $(date -u +%H:%M) UTC, load $load1 → $load2): embedded ${te}s, kafka ${tk}s, kafka/embedded speed $(ratio "$te" "$tk")×"
done
