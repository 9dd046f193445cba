#!/usr/bin/env bash
# Continuous-replication benchmark: Replicator against native logical replication, same machine,
# same data, same run.
#   (1) backlog: both consumers stopped, pgbench writes for $BACKLOG_SECONDS, then each consumer
#       alone catches up (after a CHECKPOINT on both clusters and with no autovacuum worker running);
#       we time it to the slot's confirmed_flush_lsn reaching the end of the backlog.
#   (2) live lag: pgbench at $RATE tps for $LIVE_SECONDS with one consumer running; a probe row with
#       clock_timestamp() is written every 100 ms and the target is sampled every 100 ms for the
#       age of the newest probe it has (includes up to 100 ms of probe spacing).
# A third consumer, replicator with the Kafka buffer (capture → Kafka → apply in one process),
# runs against a local Kafka-protocol broker ('replicator dev-kafka', librdkafka's mock cluster),
# twice: records with their schema (the default) and without (Buffer:Kafka:Schemas=false); the
# first also in the live window.
# Usage: bench/cdc.sh [scale]      (default 50; env BACKLOG_SECONDS=30 RATE=1000 LIVE_SECONDS=30 KAFKA=1)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib/install.sh"
ensure_packages
source "$root/bench/lib/clusters.sh"
SCALE=${1:-50}
BACKLOG_SECONDS=${BACKLOG_SECONDS:-30}
RATE=${RATE:-1000}
LIVE_SECONDS=${LIVE_SECONDS:-30}
KAFKA=${KAFKA:-1}
trap 'stop_pids TERM "${kaf_pid:-}" "${kafka_pid:-}"; stop_clusters' EXIT

freeze_cli "$root"
start_cluster SRC
start_cluster TGT
echo "clusters: source :$SRC_PORT, target :$TGT_PORT (scale $SCALE)" >&2

psql_at "$SRC_PORT" postgres -c "CREATE DATABASE bench"
"$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >/dev/null 2>&1
psql_at "$SRC_PORT" bench -c "ALTER TABLE pgbench_history ADD COLUMN hid bigserial; ALTER TABLE pgbench_history REPLICA IDENTITY FULL; CREATE TABLE lag_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL); CREATE PUBLICATION replicator FOR ALL TABLES"
for db in rep native kaf kns; do
  psql_at "$TGT_PORT" postgres -c "CREATE DATABASE $db"
  "$PG_BIN/pg_dump" -h 127.0.0.1 -p "$SRC_PORT" -U postgres --no-publications --no-subscriptions bench | psql_at "$TGT_PORT" "$db" >/dev/null
done

# Both slots exist before the backlog is written, so both must replay the same WAL.
lsn=$(psql_at "$SRC_PORT" bench -c "SELECT lsn FROM pg_create_logical_replication_slot('rep_slot', 'pgoutput')")
psql_at "$TGT_PORT" rep -c "CREATE SCHEMA replicator; CREATE TABLE replicator.position (slot_name text PRIMARY KEY, commit_lsn pg_lsn NOT NULL, commit_time timestamptz, kafka_offsets jsonb, updated_at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO replicator.position (slot_name, commit_lsn) VALUES ('rep_slot', '$lsn')"
lsn_k=$(psql_at "$SRC_PORT" bench -c "SELECT lsn FROM pg_create_logical_replication_slot('kaf_slot', 'pgoutput')")
psql_at "$TGT_PORT" kaf -c "CREATE SCHEMA replicator; CREATE TABLE replicator.position (slot_name text PRIMARY KEY, commit_lsn pg_lsn NOT NULL, commit_time timestamptz, kafka_offsets jsonb, updated_at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO replicator.position (slot_name, commit_lsn) VALUES ('kaf_slot', '$lsn_k')"
# The Kafka buffer once more with Buffer:Kafka:Schemas=false (records without their schema).
lsn_n=$(psql_at "$SRC_PORT" bench -c "SELECT lsn FROM pg_create_logical_replication_slot('kns_slot', 'pgoutput')")
psql_at "$TGT_PORT" kns -c "CREATE SCHEMA replicator; CREATE TABLE replicator.position (slot_name text PRIMARY KEY, commit_lsn pg_lsn NOT NULL, commit_time timestamptz, kafka_offsets jsonb, updated_at timestamptz NOT NULL DEFAULT clock_timestamp()); INSERT INTO replicator.position (slot_name, commit_lsn) VALUES ('kns_slot', '$lsn_n')"
psql_at "$TGT_PORT" native -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=$SRC_PORT user=postgres dbname=bench' PUBLICATION replicator WITH (copy_data = false, create_slot = true, slot_name = 'native_slot', enabled = false)"

echo "backlog: pgbench for ${BACKLOG_SECONDS}s with both consumers stopped..." >&2
"$PG_BIN/pgbench" -n -c 4 -j 2 -T "$BACKLOG_SECONDS" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >"$BENCH_DIR/pgbench-backlog.log" 2>&1
txns=$(grep -Eo 'number of transactions actually processed: [0-9]+' "$BENCH_DIR/pgbench-backlog.log" | grep -Eo '[0-9]+$')
goal=$(psql_at "$SRC_PORT" bench -c "SELECT pg_current_wal_insert_lsn()")
wal_mb=$(psql_at "$SRC_PORT" bench -c "SELECT round((pg_current_wal_insert_lsn() - '$lsn')::numeric / 1048576, 1)")
echo "backlog: $txns transactions, $wal_mb MB of WAL" >&2

# Before each timed consumer: no checkpoint or autovacuum left over from what ran before (pgbench's
# backlog leaves both behind, and the first consumer timed would pay for them).
settle() {
  local port waited=0
  for port in "$SRC_PORT" "$TGT_PORT"; do psql_at "$port" postgres -c "CHECKPOINT"; done
  while [ "$waited" -lt 120 ] && [ "$(( $(psql_at "$SRC_PORT" postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'") + \
        $(psql_at "$TGT_PORT" postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'") ))" -gt 0 ]; do
    sleep 0.5; waited=$((waited + 1))
  done
}

log="$BENCH_DIR/replicator.log"
settle
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(now)
"${CLI[@]}" run --source "postgres://postgres@127.0.0.1:$SRC_PORT/bench" --target "postgres://postgres@127.0.0.1:$TGT_PORT/rep" \
  --slot rep_slot --metrics-listen 127.0.0.1:0 --log-level Warning >>"$log" 2>&1 &
rep_pid=$!
wait_slot_caught_up "$SRC_PORT" bench rep_slot "$goal"
t_rep=$(elapsed "$t0" "$(now)")
# CPU seconds spent catching up (start-up included): less sensitive than wall time to other load on the machine.
proc_cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat" 2>/dev/null || echo "?"; }
# The source's walsender decoding for a slot (the same work for every consumer).
walsender_cpu() { proc_cpu "$(psql_at "$SRC_PORT" bench -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$1'")"; }
rep_cpu=$(proc_cpu "$rep_pid")
rep_backend_cpu=$(proc_cpu "$(psql_at "$TGT_PORT" rep -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'replicator-applier' LIMIT 1")")
rep_walsender_cpu=$(walsender_cpu rep_slot)
echo "replicator caught up in ${t_rep}s" >&2
grep -E "warn|fail|crit" "$log" | head -20 | sed 's/^/  replicator log: /' >&2 || true

settle
t0=$(now)
psql_at "$TGT_PORT" native -c "ALTER SUBSCRIPTION native_sub ENABLE"
wait_slot_caught_up "$SRC_PORT" bench native_slot "$goal"
t_native=$(elapsed "$t0" "$(now)")
native_cpu=$(proc_cpu "$(psql_at "$TGT_PORT" native -c "SELECT pid FROM pg_stat_subscription WHERE subname = 'native_sub' AND relid IS NULL")")
native_walsender_cpu=$(walsender_cpu native_slot)
echo "native caught up in ${t_native}s" >&2

# Through Kafka the slot is confirmed when Kafka has the events, before they are applied: the
# catch-up ends when the backlog's last row is on the target itself.
# kafka_run DB PREFIX [run arguments...]: starts 'run --buffer kafka' into target database DB
# (slot DB_slot, topics under PREFIX) in the background; sets kaf_pid.
kafka_run() {
  local db=$1 prefix=$2; shift 2
  "${CLI[@]}" run --buffer kafka --kafka-bootstrap "$kafka_bootstrap" --topic-prefix "$prefix" --source "postgres://postgres@127.0.0.1:$SRC_PORT/bench" \
    --target "postgres://postgres@127.0.0.1:$TGT_PORT/$db" --slot "${db}_slot" --metrics-listen 127.0.0.1:0 --log-level Warning "$@" >>"$BENCH_DIR/kafka-run-$db.log" 2>&1 &
  kaf_pid=$!
}
kafka_catchup() { # $1 = target db and slot name stem, $2 = topic prefix, then extra run arguments; prints seconds
  local db=$1 prefix=$2 pid t0 last_commit; shift 2
  settle
  last_commit=$(psql_at "$SRC_PORT" bench -c "SELECT max(hid) FROM pgbench_history")
  t0=$(now)
  kafka_run "$db" "$prefix" "$@"
  pid=$kaf_pid
  until [ "$(psql_at "$TGT_PORT" "$db" -c "SELECT count(*) FROM pgbench_history WHERE hid = $last_commit" 2>/dev/null || echo 0)" = 1 ]; do sleep 0.05; done
  elapsed "$t0" "$(now)"
  # Where the machine's CPU went (the broker's since its start: it runs only these catch-ups).
  echo "process $(proc_cpu "$pid")s + target backend $(proc_cpu "$(psql_at "$TGT_PORT" "$db" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'replicator-applier' LIMIT 1")")s + walsender $(walsender_cpu "${db}_slot")s + broker $(proc_cpu "$kafka_pid")s (cumulative)" >"$BENCH_DIR/cpu-$db.txt"
  kill -TERM "$pid"; wait "$pid" || true
  kaf_pid=
}

t_kafka="-"
t_kns="-"
if [ "$KAFKA" = 1 ]; then
  start_dev_kafka "${CLI[@]}"
  t_kafka=$(kafka_catchup kaf bench)
  echo "replicator through kafka caught up in ${t_kafka}s" >&2
  t_kns=$(kafka_catchup kns benchns --set Buffer:Kafka:Schemas=false)
  echo "replicator through kafka without schemas caught up in ${t_kns}s" >&2
fi

check_same() { # $1 = target db
  local a b
  for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
    a=$(psql_at "$TGT_PORT" "$1" -c "SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM $t x")
    b=$(psql_at "$SRC_PORT" bench -c "SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM $t x")
    [ "$a" = "$b" ] || { echo "MISMATCH on $t between source and target database $1" >&2; return 1; }
  done
}
# The Kafka target is compared at once (the source gets more writes in the live windows below).
kafka_same=-
if [ "$KAFKA" = 1 ]; then
  kafka_same=$(check_same kaf && echo yes || echo NO)
  kafka_same="$kafka_same; without schemas: $(check_same kns && echo yes || echo NO)"
fi

# Live lag: one consumer at a time keeps up with a steady rate.
live_lag() { # $1 = target db, prints "p50 p99" in ms
  local db=$1 samples="$BENCH_DIR/lag-$1.txt"
  : >"$samples"
  "$PG_BIN/pgbench" -n -c 4 -j 2 -R "$RATE" -T "$LIVE_SECONDS" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench >"$BENCH_DIR/pgbench-live-$db.log" 2>&1 &
  local bench_pid=$! end=$(( $(date +%s) + LIVE_SECONDS ))
  ( while [ "$(date +%s)" -lt "$end" ]; do psql_at "$SRC_PORT" bench -c "INSERT INTO lag_probe (at) VALUES (clock_timestamp())"; sleep 0.1; done ) &
  local probe_pid=$!
  sleep 2
  while [ "$(date +%s)" -lt "$end" ]; do
    psql_at "$TGT_PORT" "$db" -c "SELECT round(extract(epoch FROM clock_timestamp() - max(at)) * 1000) FROM lag_probe" >>"$samples"
    sleep 0.1
  done
  wait "$bench_pid" "$probe_pid"
  sort -n "$samples" | awk '{a[NR]=$1} END {p50=a[int(NR*0.5)>0?int(NR*0.5):1]; p99=a[int(NR*0.99)>0?int(NR*0.99):1]; print p50, p99, NR}'
}

psql_at "$TGT_PORT" native -c "ALTER SUBSCRIPTION native_sub DISABLE"
read -r rep_p50 rep_p99 rep_n < <(live_lag rep)
goal=$(psql_at "$SRC_PORT" bench -c "SELECT pg_current_wal_insert_lsn()")
wait_slot_caught_up "$SRC_PORT" bench rep_slot "$goal"
kill -TERM "$rep_pid"; wait "$rep_pid" || true
check_same rep && same=yes || same=NO
psql_at "$TGT_PORT" native -c "ALTER SUBSCRIPTION native_sub ENABLE"
# Native's slot kept what was written during replicator's live window: let it catch up first, so
# both live windows start from zero lag.
goal=$(psql_at "$SRC_PORT" bench -c "SELECT pg_current_wal_insert_lsn()")
wait_slot_caught_up "$SRC_PORT" bench native_slot "$goal"
read -r nat_p50 nat_p99 nat_n < <(live_lag native)
# Live through Kafka (records with their schema): first what the two live windows above wrote,
# then the same window.
kaf_p50=- kaf_p99=- kaf_n=0
if [ "$KAFKA" = 1 ]; then
  newest=$(psql_at "$SRC_PORT" bench -c "SELECT max(id) FROM lag_probe")
  kafka_run kaf bench
  until [ "$(psql_at "$TGT_PORT" kaf -c "SELECT count(*) FROM lag_probe WHERE id = $newest" 2>/dev/null || echo 0)" = 1 ]; do
    kill -0 "$kaf_pid" 2>/dev/null || { tail -20 "$BENCH_DIR/kafka-run-kaf.log" >&2; exit 1; }
    sleep 0.2
  done
  read -r kaf_p50 kaf_p99 kaf_n < <(live_lag kaf)
  kill -TERM "$kaf_pid"; wait "$kaf_pid" || true
  kaf_pid=
fi
live_tps=$(grep -Eo 'tps = [0-9.]+' "$BENCH_DIR/pgbench-live-rep.log" | head -1 | grep -Eo '[0-9.]+')

cat <<TABLE

CDC benchmark — pgbench scale $SCALE, $(nproc) cores; backlog of $txns transactions ($wal_mb MB WAL)
| consumer | backlog catch-up (s) | speed vs native | live lag p50 (ms) | live lag p99 (ms) |
|---|---|---|---|---|
| native logical replication | $t_native | 1.00× | $nat_p50 | $nat_p99 |
| replicator (embedded buffer) | $t_rep | $(ratio "$t_native" "$t_rep")× | $rep_p50 | $rep_p99 |
| replicator (Kafka buffer, mock broker) | $t_kafka | $([ "$t_kafka" = - ] && echo - || ratio "$t_native" "$t_kafka")× ($([ "$t_kafka" = - ] && echo - || ratio "$t_rep" "$t_kafka")× embedded) | $kaf_p50 | $kaf_p99 |
| replicator (Kafka buffer, Buffer:Kafka:Schemas=false) | $t_kns | $([ "$t_kns" = - ] && echo - || ratio "$t_native" "$t_kns")× ($([ "$t_kns" = - ] && echo - || ratio "$t_rep" "$t_kns")× embedded) | - | - |

catch-up CPU: replicator process ${rep_cpu}s + its target backend ${rep_backend_cpu}s + walsender ${rep_walsender_cpu}s; native apply worker ${native_cpu}s + walsender ${native_walsender_cpu}s (load average before: $load_before)
$([ "$KAFKA" = 1 ] && echo "catch-up CPU through Kafka: $(cat "$BENCH_DIR/cpu-kaf.txt"); without schemas: $(cat "$BENCH_DIR/cpu-kns.txt")")
live: pgbench -R $RATE (achieved ${live_tps} tps) for ${LIVE_SECONDS}s, lag sampled every 100 ms ($rep_n / $nat_n / $kaf_n samples: embedded / native / Kafka); target content equal to source after the run: $same (Kafka targets after their catch-up: $kafka_same)
TABLE
