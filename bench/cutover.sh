#!/usr/bin/env bash
# Cutover benchmark: the write outage of a blue-green switch while an application-like writer
# (bench/writer: one small transaction at a time, about $RATE per second, following an endpoint
# file that the switch rewrites) keeps writing. Same machine, same data, same run:
#   (1) replicator: `replicator run` (snapshot + streaming), one `replicator verify` pass, then
#       `replicator cutover --switch-command …` (fence, drain, sequences, final verification of
#       what changed, triggers/constraints, switch hook).
#   (1b) the same with `run --buffer kafka` against a local `replicator dev-kafka` broker.
#   (2) native logical replication with the usual scripted runbook: the same database fence
#       (ALTER DATABASE … default_transaction_read_only, end sessions), wait until the
#       subscription's slot has confirmed the fence LSN, copy every sequence with setval, disable
#       the subscription, rewrite the endpoint file. No final verification (native has none).
# Reported per method: the outage the tool measured (fence → switched), the longest gap between
# two acknowledged writes as the writer saw it (includes its reconnects), and whether every
# acknowledged write is on the new primary exactly once.
# Usage: bench/cutover.sh [scale]     (default 10: 1M pgbench accounts; env RATE=500 BEFORE=10 AFTER=5)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib/install.sh"
ensure_packages
source "$root/bench/lib/clusters.sh"
source "$root/bench/lib/writer.sh"
SCALE=${1:-10}
RATE=${RATE:-500}
BEFORE=${BEFORE:-10}
AFTER=${AFTER:-5}
trap 'stop_pids TERM "${rep_pid:-}" "${writer_pid:-}" "${kafka_pid:-}"; stop_clusters' EXIT

freeze_cli "$root"
echo "building the writer..." >&2
build_writer
start_cluster SRC
start_cluster TGT
echo "clusters: source :$SRC_PORT, target :$TGT_PORT (scale $SCALE, writer at $RATE tps)" >&2

for db in rep kaf nat; do
  psql_at "$SRC_PORT" postgres -c "CREATE DATABASE $db"
  "$PG_BIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$SRC_PORT" -U postgres "$db" >/dev/null 2>&1
  psql_at "$SRC_PORT" "$db" -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL; $WRITER_SCHEMA"
  psql_at "$TGT_PORT" postgres -c "CREATE DATABASE $db"
done
src() { echo "postgres://postgres@127.0.0.1:$SRC_PORT/$1"; }
tgt() { echo "postgres://postgres@127.0.0.1:$TGT_PORT/$1"; }

# ---- (1) replicator: embedded buffer (database rep), then through Kafka (database kaf) ----
# replicator_cutover DB [run arguments...]: snapshot and streaming, a writer, one verify pass,
# the cutover; sets out_outage, out_phases, out_verified, out_final, out_writer, out_ok.
replicator_cutover() {
  local db=$1; shift
  local log="$BENCH_DIR/replicator-$db.log"
  "${CLI[@]}" run --source "$(src "$db")" --target "$(tgt "$db")" --metrics-listen 127.0.0.1:0 --log-level Warning "$@" >>"$log" 2>&1 &
  rep_pid=$!
  until [ "$(psql_at "$TGT_PORT" "$db" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'replicator' AND tablename = 'position'" 2>/dev/null)" = 1 ] \
     && [ "$(psql_at "$TGT_PORT" "$db" -c "SELECT count(*) FROM replicator.position" 2>/dev/null)" = 1 ]; do
    kill -0 "$rep_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.2
  done
  echo "replicator ($db): snapshot done, streaming" >&2
  writer_start "$db" "$(src "$db")" "$RATE"
  sleep 2
  "${CLI[@]}" verify --source "$(src "$db")" --target "$(tgt "$db")" >"$BENCH_DIR/verify-$db.txt" || { cat "$BENCH_DIR/verify-$db.txt" >&2; exit 1; }
  sleep "$BEFORE"
  local report="$BENCH_DIR/cutover-$db.json"
  "${CLI[@]}" cutover --source "$(src "$db")" --target "$(tgt "$db")" --format json --log-level Debug \
    --switch-command "$(writer_hook "$db")" >"$report" 2>>"$log" \
    || { cat "$report" "$log" >&2; exit 1; }
  sleep "$AFTER"
  writer_stop "$db"
  out_writer=$(cat "$BENCH_DIR/writer-$db.out")
  wait "$rep_pid" || true  # 'run' stops by itself after the switch
  rep_pid=
  out_outage=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['outage_milliseconds']))" "$report")
  out_phases=$(python3 -c "import json,sys; print(', '.join(f\"{p['phase']} {p['milliseconds']:.0f}\" for p in json.load(open(sys.argv[1]))['phases']))" "$report")
  out_verified=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r.get('verify_scope',''), '—', ', '.join(r.get('verified_tables',[])))" "$report")
  out_final=$(grep -A12 'Cutover step sequences' "$log" | grep -Eo '(Phase [a-z]+ done after [0-9.]{1,5}|Plan of [a-z_.]+: [a-z ()0-9]+ after [0-9.]{1,5}|Hashed [0-9]+ chunks in [0-9.]{1,5})' | paste -sd';')
  out_ok=$(check_acked "$db" "$TGT_PORT" "$db")
  echo "replicator ($db): outage ${out_outage} ms; writer: $out_writer" >&2
}

replicator_cutover rep
rep_outage=$out_outage rep_phases=$out_phases rep_verified=$out_verified rep_final=$out_final rep_writer=$out_writer rep_ok=$out_ok
start_dev_kafka "${CLI[@]}"
replicator_cutover kaf --buffer kafka --kafka-bootstrap "$kafka_bootstrap" --topic-prefix kaf
kaf_outage=$out_outage kaf_phases=$out_phases kaf_writer=$out_writer kaf_ok=$out_ok
stop_pids TERM "$kafka_pid"
kafka_pid=

# ---- (2) native logical replication, scripted runbook ----
"$PG_BIN/pg_dump" -h 127.0.0.1 -p "$SRC_PORT" -U postgres --schema-only nat | psql_at "$TGT_PORT" nat >/dev/null
psql_at "$SRC_PORT" nat -c "CREATE PUBLICATION nat_pub FOR ALL TABLES"
psql_at "$TGT_PORT" nat -c "CREATE SUBSCRIPTION nat_sub CONNECTION 'host=127.0.0.1 port=$SRC_PORT user=postgres dbname=nat' PUBLICATION nat_pub WITH (slot_name = 'nat_slot')"
until [ "$(psql_at "$TGT_PORT" nat -c "SELECT count(*) FILTER (WHERE srsubstate <> 'r') FROM pg_subscription_rel")" = 0 ]; do sleep 0.2; done
echo "native: initial sync done, streaming" >&2
writer_start nat "$(src nat)" "$RATE"
sleep $(( BEFORE + 2 ))
t0=$(now)
psql_at "$SRC_PORT" nat -c "ALTER DATABASE nat SET default_transaction_read_only = on"
psql_at "$SRC_PORT" nat -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'nat' AND backend_type = 'client backend' AND pid <> pg_backend_pid()" >/dev/null
fence=$(psql_at "$SRC_PORT" nat -c "SELECT pg_current_wal_insert_lsn()")
wait_slot_caught_up "$SRC_PORT" nat nat_slot "$fence" 60
psql_at "$SRC_PORT" nat -c "SELECT format('SELECT setval(%L, %s, %L);', format('%I.%I', schemaname, sequencename), coalesce(last_value, start_value), last_value IS NOT NULL) FROM pg_sequences" \
  | psql_at "$TGT_PORT" nat >/dev/null
psql_at "$TGT_PORT" nat -c "ALTER SUBSCRIPTION nat_sub DISABLE"
printf '%s' "$(tgt nat)" >"$BENCH_DIR/endpoint-nat"
nat_outage=$(echo "($(now) - $t0) * 1000 / 1" | bc)
sleep "$AFTER"
writer_stop nat
nat_writer=$(cat "$BENCH_DIR/writer-nat.out")
nat_ok=$(check_acked nat "$TGT_PORT" nat)
echo "native: outage ${nat_outage} ms; writer: $nat_writer" >&2

gap() { echo "$1" | grep -Eo 'longest_gap_ms=[0-9]+' | cut -d= -f2; }
cat <<TABLE

Cutover benchmark — pgbench scale $SCALE plus an application writer at $RATE tps, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)
| method | write outage, measured by the tool (ms) | longest gap between acknowledged writes (ms) | every acknowledged write on the new primary, once |
|---|---|---|---|
| replicator cutover | $rep_outage | $(gap "$rep_writer") | $rep_ok |
| replicator cutover, replicating through Kafka (mock broker) | $kaf_outage | $(gap "$kaf_writer") | $kaf_ok |
| native logical replication, scripted runbook | $nat_outage | $(gap "$nat_writer") | $nat_ok |

replicator's steps (ms): $rep_phases
replicator's steps through Kafka (ms): $kaf_phases
replicator's final verification: $rep_verified
replicator's final verification, phases: $rep_final
writer, replicator run: $rep_writer
writer, replicator run through Kafka: $kaf_writer
writer, native run: $nat_writer
target: under 1000 ms. For reference (documented, not measured here): RDS Blue/Green switchover under 5 s; published logical-replication cutovers about 3 s.
TABLE
