#!/usr/bin/env bash
# Snapshot benchmark: the same pgbench data set copied four ways, measured in one run, on two
# throwaway PostgreSQL clusters on this machine.
#   raw pipe        psql COPY ... TO STDOUT (FORMAT binary) | psql COPY ... FROM STDIN, table by table,
#                   4 tables at once (the floor for moving the bytes), then the same post-data (indexes)
#                   restored with pg_restore -j; the largest table's pipe alone is reported too
#   pgcopydb        pgcopydb clone --table-jobs J --index-jobs J (Debian package)
#   native logical  schema restored, then CREATE SUBSCRIPTION (initial table sync) until every table is ready
#   replicator      replicator snapshot --jobs J (slot + exported snapshot, schema, chunked parallel COPY,
#                   sequences, counts, parallel post-data, hand-over)
# Usage: bench/snapshot.sh [scale] [jobs]     (scale 50 = 5M accounts, about 750 MB; jobs default 4)
set -euo pipefail
scale="${1:-50}"
jobs="${2:-4}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
work="$(mktemp -d /tmp/replicator-bench-XXXXXX)"
chmod 777 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_cluster() { # name port
  local dir="$work/$1"
  as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N >/dev/null
  cat >>"$dir/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 32
max_worker_processes = 16
max_logical_replication_workers = 8
shared_buffers = 512MB
maintenance_work_mem = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
CONF
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w start >/dev/null
}
cleanup() {
  for d in "$work"/source "$work"/target; do [ -f "$d/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP_LOG:-}" ] && trap 'cp "$work/replicator.log" "$KEEP_LOG" 2>/dev/null; cleanup' EXIT

sport=$(free_port); start_cluster source "$sport"
tport=$(free_port); start_cluster target "$tport"
src="postgres://postgres@127.0.0.1:$sport/bench"
tgt() { echo "postgres://postgres@127.0.0.1:$tport/$1"; }
psql_s() { psql -X -q -v ON_ERROR_STOP=1 "$src" "$@"; }
psql_t() { local db="$1"; shift; psql -X -q -v ON_ERROR_STOP=1 "$(tgt "$db")" "$@"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.1f}')"; }

echo "building replicator (Release)..." >&2
"$root/replicator" --help >/dev/null
echo "pgbench scale $scale on source ($bin)..." >&2
psql -X -q "postgres://postgres@127.0.0.1:$sport/postgres" -c "CREATE DATABASE bench"
"$bin/pgbench" -i -q -s "$scale" --foreign-keys "$src" >/dev/null 2>&1
# pgbench_history has no key: replication needs a replica identity (preflight refuses otherwise)
psql_s -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
psql_s -c "VACUUM ANALYZE"
size=$(psql_s -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")
rows=$(psql_s -Atc "SELECT count(*) FROM pgbench_accounts")
tables="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"
for db in raw pgcopydb native replicator; do psql_t postgres -c "CREATE DATABASE $db"; done
"$bin/pg_dump" -s -Fc -f "$work/schema.dump" "$src"

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
raw_all=$(elapsed "$t0" "$t1"); raw_total=$(elapsed "$t0" "$t2")
psql_t raw -c "TRUNCATE pgbench_accounts CASCADE" 2>/dev/null || true
psql_t postgres -c "DROP DATABASE raw" && psql_t postgres -c "CREATE DATABASE raw"
"$bin/pg_restore" --section=pre-data --no-owner -d "$(tgt raw)" "$work/schema.dump"
t0=$(now)
psql_s -c "COPY pgbench_accounts TO STDOUT (FORMAT binary)" | psql_t raw -c "COPY pgbench_accounts FROM STDIN (FORMAT binary)"
raw_largest=$(elapsed "$t0" "$(now)")

echo "pgcopydb clone..." >&2
t0=$(now)
pgcopydb clone --source "$src" --target "$(tgt pgcopydb)" --dir "$work/pgcopydb" --table-jobs "$jobs" --index-jobs "$jobs" \
  --no-owner --no-acl >"$work/pgcopydb.log" 2>&1 || { tail -20 "$work/pgcopydb.log" >&2; exit 2; }
pgcopydb_s=$(elapsed "$t0" "$(now)")

echo "native logical replication initial sync..." >&2
psql_s -c "CREATE PUBLICATION bench_pub FOR ALL TABLES"
t0=$(now)
"$bin/pg_restore" --no-owner -j "$jobs" -d "$(tgt native)" "$work/schema.dump"
psql_t native -c "CREATE SUBSCRIPTION bench_sub CONNECTION 'host=127.0.0.1 port=$sport dbname=bench user=postgres' PUBLICATION bench_pub WITH (slot_name = 'bench_native')"
until [ "$(psql_t native -Atc "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'")" = 0 ]; do sleep 0.1; done
native_s=$(elapsed "$t0" "$(now)")
psql_t native -c "ALTER SUBSCRIPTION bench_sub DISABLE" -c "ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION bench_sub"
psql_s -c "SELECT pg_drop_replication_slot('bench_native')" >/dev/null
psql_s -c "DROP PUBLICATION bench_pub"

echo "replicator snapshot..." >&2
t0=$(now)
"$root/replicator" snapshot --source "$src" --target "$(tgt replicator)" --jobs "$jobs" --slot bench_slot --publication bench_slot_pub \
  --metrics-listen 127.0.0.1:0 >"$work/replicator.out" 2>"$work/replicator.log" || { cat "$work/replicator.out" "$work/replicator.log" >&2; exit 2; }
replicator_s=$(elapsed "$t0" "$(now)")

for db in raw pgcopydb native replicator; do
  n=$(psql_t "$db" -Atc "SELECT count(*) FROM pgbench_accounts")
  [ "$db" = raw ] || [ "$n" = "$rows" ] || { echo "$db has $n accounts rows, source $rows" >&2; exit 2; }
done

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
cat <<TABLE

Snapshot benchmark: pgbench scale $scale ($rows accounts rows, database $size), $jobs jobs, $(nproc) cores, PostgreSQL $("$bin/postgres" --version | awk '{print $3}')

| method | wall time (s) | replicator ÷ method |
|---|---:|---:|
| raw binary COPY pipe, largest table only | $raw_largest | $(ratio "$replicator_s" "$raw_largest") |
| raw binary COPY pipe, all tables (4 at once) | $raw_all | $(ratio "$replicator_s" "$raw_all") |
| raw pipe + post-data (pg_restore -j $jobs) | $raw_total | $(ratio "$replicator_s" "$raw_total") |
| pgcopydb clone (--table-jobs $jobs --index-jobs $jobs) | $pgcopydb_s | $(ratio "$replicator_s" "$pgcopydb_s") |
| native logical replication initial sync (schema + CREATE SUBSCRIPTION) | $native_s | $(ratio "$replicator_s" "$native_s") |
| **replicator snapshot --jobs $jobs** | **$replicator_s** | 1.00 |
TABLE
