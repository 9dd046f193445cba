#!/usr/bin/env bash
# Snapshot benchmark: the same pgbench data set copied four ways, measured in one run, on two
# throwaway PostgreSQL clusters on this machine.
#   raw pipe        psql COPY ... TO STDOUT (FORMAT binary) | psql COPY ... FROM STDIN, table by table,
#                   4 tables at once (the floor for moving the bytes), then the same post-data (indexes)
#                   restored with pg_restore -j; the largest table's pipe alone is reported too
#   pgcopydb        pgcopydb clone --table-jobs J --index-jobs J (Debian package)
#   native logical  schema restored, then CREATE SUBSCRIPTION (initial table sync) until every table is ready
#   replicator      replicator snapshot --jobs J (slot + exported snapshot, schema, chunked parallel COPY,
#                   sequences, counts, parallel post-data, hand-over); once more per run with
#                   --validate-foreign-keys (every foreign key validated by a scan after the data)
# pgcopydb and replicator run RUNS times each, alternately, each into a fresh database; the table
# shows every run and the ratio of the medians (same machine, same minutes: the load hits both).
# Usage: bench/snapshot.sh [scale] [jobs]     (scale 50 = 5M accounts, about 750 MB; jobs default 4)
#        RUNS=3 bench/snapshot.sh 50          KEEP_LOG=/tmp/x.log keeps replicator's last log
set -euo pipefail
scale="${1:-50}"
jobs="${2:-4}"
runs="${RUNS:-1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib/install.sh"
ensure_bench_packages  # pgcopydb: a fresh machine does not have it
CLUSTER_SETTINGS="max_replication_slots = 32
max_wal_senders = 32
max_logical_replication_workers = 8
maintenance_work_mem = 256MB
max_wal_size = 8GB"
source "$root/bench/lib/clusters.sh"
bin="$PG_BIN"
work="$BENCH_DIR"
cleanup() {
  [ -n "${KEEP_LOG:-}" ] && cp "$work/replicator.log" "$KEEP_LOG" 2>/dev/null
  stop_clusters
}
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
started_utc=$(date -u '+%Y-%m-%d %H:%M UTC'); load_start=$(load)

start_cluster SOURCE
start_cluster TARGET
sport=$SOURCE_PORT; tport=$TARGET_PORT
src="postgres://postgres@127.0.0.1:$sport/bench"
tgt() { echo "postgres://postgres@127.0.0.1:$tport/$1"; }
psql_s() { psql -X -q -v ON_ERROR_STOP=1 "$src" "$@"; }
psql_t() { local db="$1"; shift; psql -X -q -v ON_ERROR_STOP=1 "$(tgt "$db")" "$@"; }
secs() { printf '%.1f' "$(elapsed "$1" "$2")"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f", m}'; }

freeze_cli "$root"
replicator() { "${CLI[@]}" "$@"; }
echo "pgbench scale $scale on source ($bin)..." >&2
psql -X -q "postgres://postgres@127.0.0.1:$sport/postgres" -c "CREATE DATABASE bench"
"$bin/pgbench" -i -q -s "$scale" --foreign-keys "$src" >/dev/null 2>&1
# pgbench_history has no key: replication needs a replica identity (preflight refuses otherwise)
psql_s -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
psql_s -c "VACUUM ANALYZE"
size=$(psql_s -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")
rows=$(psql_s -Atc "SELECT count(*) FROM pgbench_accounts")
tables="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"
psql_t postgres -c "CREATE DATABASE raw" -c "CREATE DATABASE native"
"$bin/pg_dump" -s -Fc -f "$work/schema.dump" "$src"
psql_t postgres -c "CHECKPOINT"

echo "raw binary COPY pipe..." >&2
"$bin/pg_restore" --section=pre-data --no-owner -d "$(tgt raw)" "$work/schema.dump"
t0=$(now)
for t in $tables; do
  ( psql_s -c "COPY $t TO STDOUT (FORMAT binary)" | psql_t raw -c "COPY $t FROM STDIN (FORMAT binary)" ) &
done
wait
t1=$(now)
"$bin/pg_restore" --section=post-data --no-owner -j "$jobs" -d "$(tgt raw)" "$work/schema.dump"
t2=$(now)
raw_all=$(secs "$t0" "$t1"); raw_total=$(secs "$t0" "$t2")
psql_t postgres -c "DROP DATABASE raw" -c "CREATE DATABASE raw"
"$bin/pg_restore" --section=pre-data --no-owner -d "$(tgt raw)" "$work/schema.dump"
t0=$(now)
psql_s -c "COPY pgbench_accounts TO STDOUT (FORMAT binary)" | psql_t raw -c "COPY pgbench_accounts FROM STDIN (FORMAT binary)"
raw_largest=$(secs "$t0" "$(now)")
psql_t postgres -c "DROP DATABASE raw"

echo "native logical replication initial sync..." >&2
psql_s -c "CREATE PUBLICATION bench_pub FOR ALL TABLES"
psql_t postgres -c "CHECKPOINT"
t0=$(now)
"$bin/pg_restore" --no-owner -j "$jobs" -d "$(tgt native)" "$work/schema.dump"
psql_t native -c "CREATE SUBSCRIPTION bench_sub CONNECTION 'host=127.0.0.1 port=$sport dbname=bench user=postgres' PUBLICATION bench_pub WITH (slot_name = 'bench_native')"
until [ "$(psql_t native -Atc "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]; do sleep 0.1; done
native_s=$(secs "$t0" "$(now)")
psql_t native -c "ALTER SUBSCRIPTION bench_sub DISABLE" -c "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION bench_sub"
psql_s -c "SELECT pg_drop_replication_slot('bench_native')" >/dev/null
psql_s -c "DROP PUBLICATION bench_pub"
psql_t postgres -c "DROP DATABASE native"

# What a copy must hold besides the rows: the same indexes and constraints, each as valid as on the source.
objects_sql="SELECT string_agg(conname || ':' || contype::text || ':' || convalidated::text, ',' ORDER BY conname) || ' / ' || (SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'public') FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
source_objects=$(psql_s -Atc "$objects_sql")
check_rows() { # db
  local n; n=$(psql_t "$1" -Atc "SELECT count(*) FROM pgbench_accounts")
  [ "$n" = "$rows" ] || { echo "$1 has $n accounts rows, source $rows" >&2; exit 2; }
  n=$(psql_t "$1" -Atc "$objects_sql")
  [ "$n" = "$source_objects" ] || { echo "$1's indexes and constraints differ from the source's: $n (source: $source_objects)" >&2; exit 2; }
}
# replicator_run LABEL ARGS... : one timed 'replicator snapshot' into a fresh database; prints its seconds.
replicator_run() {
  local label=$1; shift
  echo "replicator snapshot $label(run $i/$runs, load $(load))..." >&2
  psql_t postgres -c "CREATE DATABASE replicator" -c "CHECKPOINT" >&2
  local t0; t0=$(now)
  replicator snapshot --source "$src" --target "$(tgt replicator)" --jobs "$jobs" --slot bench_slot --publication bench_slot_pub \
    --metrics-listen 127.0.0.1:0 "$@" >"$work/replicator.out" 2>"$work/replicator.log" || { cat "$work/replicator.out" "$work/replicator.log" >&2; exit 2; }
  secs "$t0" "$(now)"
  check_rows replicator
  psql_t postgres -c "DROP DATABASE replicator" >&2
  psql_s -c "SELECT pg_drop_replication_slot('bench_slot')" -c "DROP PUBLICATION bench_slot_pub" >/dev/null
}
pgcopydb_runs=(); replicator_runs=(); validating_runs=(); phases=()
for i in $(seq 1 "$runs"); do
  echo "pgcopydb clone (run $i/$runs, load $(load))..." >&2
  psql_t postgres -c "CREATE DATABASE pgcopydb" -c "CHECKPOINT"
  rm -rf "$work/pgcopydb"
  t0=$(now)
  pgcopydb clone --source "$src" --target "$(tgt pgcopydb)" --dir "$work/pgcopydb" --table-jobs "$jobs" --index-jobs "$jobs" \
    --no-owner --no-acl >"$work/pgcopydb.log" 2>&1 || { tail -20 "$work/pgcopydb.log" >&2; exit 2; }
  pgcopydb_runs+=("$(secs "$t0" "$(now)")")
  check_rows pgcopydb
  psql_t postgres -c "DROP DATABASE pgcopydb"

  t=$(replicator_run "")
  replicator_runs+=("$t")
  phases+=("$(grep -o 'Snapshot phases: .*' "$work/replicator.log" || true)")
  # pg_restore's way for foreign keys (each validated by a scan after the data), for comparison.
  t=$(replicator_run "--validate-foreign-keys " --validate-foreign-keys)
  validating_runs+=("$t")
done

pgcopydb_s=$(median "${pgcopydb_runs[@]}")
replicator_s=$(median "${replicator_runs[@]}")
validating_s=$(median "${validating_runs[@]}")
ratio2() { python3 -c "print(f'{$1 / $2:.2f}')"; }
cat <<TABLE

Snapshot benchmark: pgbench scale $scale ($rows accounts rows, database $size), $jobs jobs, $(nproc) cores, PostgreSQL $("$bin/postgres" --version | awk '{print $3}')
Started $started_utc, commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src bench || echo " (with uncommitted changes)")
Load average (1/5/15 min): $load_start at the start, $(load) at the end
pgcopydb runs (s): ${pgcopydb_runs[*]}; replicator runs (s): ${replicator_runs[*]}; with --validate-foreign-keys (s): ${validating_runs[*]}; the table shows their medians

| method | wall time (s) | replicator ÷ method |
|---|---:|---:|
| raw binary COPY pipe, largest table only | $raw_largest | $(ratio2 "$replicator_s" "$raw_largest") |
| raw binary COPY pipe, all tables (4 at once) | $raw_all | $(ratio2 "$replicator_s" "$raw_all") |
| raw pipe + post-data (pg_restore -j $jobs) | $raw_total | $(ratio2 "$replicator_s" "$raw_total") |
| pgcopydb clone (--table-jobs $jobs --index-jobs $jobs) | $pgcopydb_s | **$(ratio2 "$replicator_s" "$pgcopydb_s")** |
| native logical replication initial sync (schema + CREATE SUBSCRIPTION) | $native_s | $(ratio2 "$replicator_s" "$native_s") |
| replicator snapshot --jobs $jobs --validate-foreign-keys (every foreign key validated by a scan after the data, as pg_restore and pgcopydb do) | $validating_s | $(ratio2 "$replicator_s" "$validating_s") |
| **replicator snapshot --jobs $jobs** | **$replicator_s** | 1.00 |

Replicator's phases (from its completion log line), per run:
TABLE
printf '  %s\n' "${phases[@]}"
