# Shared by the benchmarks: throwaway PostgreSQL clusters on free ports under $BENCH_DIR.
# Under root the server programs run as the postgres OS user (initdb refuses root).
PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
BENCH_DIR="${BENCH_DIR:-$(mktemp -d /tmp/replicator-bench.XXXXXX)}"
chmod 777 "$BENCH_DIR"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_cluster NAME -> sets ${NAME}_PORT; extra settings from $CLUSTER_SETTINGS
start_cluster() {
  local name=$1 port dir
  port=$(free_port); dir="$BENCH_DIR/$name"
  as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$dir/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_worker_processes = 16
shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 30min
log_min_messages = warning
${CLUSTER_SETTINGS:-}
CONF
  as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
  eval "${name}_PORT=$port"
}

# stop_pids SIGNAL PID... : signals the given processes, skipping empty ones and ignoring ones
# already gone. For EXIT traps: under set -e a failing 'kill' ends the trap before stop_clusters,
# and 'kill 0' would signal the whole process group, the caller included.
stop_pids() {
  local sig=$1 p; shift
  for p in "$@"; do [ -n "$p" ] && [ "$p" != 0 ] && kill "-$sig" "$p" 2>/dev/null || :; done
}

stop_clusters() {
  for d in "$BENCH_DIR"/*/; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
  done
  rm -rf "$BENCH_DIR"
}

# psql_at PORT DB SQL...
psql_at() { local port=$1 db=$2; shift 2; "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@"; }

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
# a / b to two decimals, rounded, with its leading zero (bc printed ".38" and truncated)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# wait_slot_caught_up PORT DB SLOT GOAL_LSN [TIMEOUT_S]
wait_slot_caught_up() {
  local port=$1 db=$2 slot=$3 goal=$4 timeout=${5:-1800} start
  start=$(date +%s)
  until [ "$(psql_at "$port" "$db" -c "SELECT confirmed_flush_lsn >= '$goal' FROM pg_replication_slots WHERE slot_name = '$slot'")" = t ]; do
    if [ $(( $(date +%s) - start )) -gt "$timeout" ]; then echo "timeout waiting for slot $slot to reach $goal" >&2; return 1; fi
    sleep 0.05
  done
}

# start_dev_kafka CLI... : starts 'CLI dev-kafka' (librdkafka's mock cluster) in the background,
# sets kafka_pid and kafka_bootstrap; stops the script with its error output if it exits first
# (e.g. librdkafka missing) instead of waiting for an address that never comes.
start_dev_kafka() {
  local out="$BENCH_DIR/kafka-$RANDOM"
  "$@" dev-kafka >"$out.out" 2>"$out.err" &
  kafka_pid=$!
  until [ -s "$out.out" ]; do
    if ! kill -0 "$kafka_pid" 2>/dev/null; then
      echo "dev-kafka exited before printing its address:" >&2
      cat "$out.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  kafka_bootstrap=$(head -1 "$out.out")
}

# freeze_cli ROOT : builds the CLI (ROOT/replicator) and copies the build under $BENCH_DIR, setting
# the array CLI to run that copy. Every timing then runs one frozen build: ./replicator rebuilds when
# a source file changes, and an edit during a benchmark would otherwise put a build inside a timed run.
freeze_cli() {
  local root=$1
  echo "building replicator..." >&2
  "$root/replicator" --help >/dev/null
  rm -rf "$BENCH_DIR/cli"
  cp -r "$root/artifacts/cli" "$BENCH_DIR/cli"
  source "$root/scripts/lib/cli.sh"
  cli_in "$BENCH_DIR/cli"
}
