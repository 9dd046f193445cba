#!/usr/bin/env bash
# Verifier benchmark (issue #6): a clean `replicator verify` pass and a pass that finds 10
# injected differences, against a baseline of one full sum(hashtextextended(t::text, 0)) scan of
# every pgbench table run on both sides at once — all in the same run, on the same clusters.
#
#   bench/verify.sh [SCALE]      (default 50: 5M rows in pgbench_accounts; env JOBS=2, RUNS=1)
#
# Two throwaway clusters (bench/lib/clusters.sh) are started and removed at the end. RUNS=n times
# baseline, clean pass and difference pass n times each, interleaved, and reports each run and the
# medians. Target: clean pass <= 1.2x baseline; 10 differences <= 1.5x the clean pass.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/lib/install.sh"
ensure_packages
source "$root/bench/lib/clusters.sh"
SCALE=${1:-${SCALE:-50}}
JOBS=${JOBS:-2}
RUNS=${RUNS:-1}
trap stop_clusters EXIT
CLUSTER_SETTINGS="fsync = off
synchronous_commit = off
full_page_writes = off"
start_cluster SRC
start_cluster TGT
SRC="postgres://postgres@127.0.0.1:$SRC_PORT/bench"; TGT="postgres://postgres@127.0.0.1:$TGT_PORT/bench"
psql_at "$SRC_PORT" postgres -c "CREATE DATABASE bench"; psql_at "$TGT_PORT" postgres -c "CREATE DATABASE bench"

t0=$(now)
"$PG_BIN/pgbench" -i -s "$SCALE" -q -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench 2>&1 | tail -1
"$PG_BIN/pg_dump" -h 127.0.0.1 -p "$SRC_PORT" -U postgres bench | psql_at "$TGT_PORT" bench >/dev/null
psql_at "$TGT_PORT" bench -c "VACUUM ANALYZE"
echo "loaded scale $SCALE on both sides in $(elapsed "$t0" "$(now)") s"

freeze_cli "$root"
VERIFY=("${CLI[@]}" verify --source "$SRC" --target "$TGT" --jobs "$JOBS" --log-level Warning)

BASELINE_SQL="SET extra_float_digits = 3;"
for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
  BASELINE_SQL+=" SELECT sum(hashtextextended(t::text, 0)) FROM $t t;"
done
baseline() {
  psql_at "$SRC_PORT" bench -c "$BASELINE_SQL" >/dev/null &
  local a=$!
  psql_at "$TGT_PORT" bench -c "$BASELINE_SQL" >/dev/null &
  local b=$!
  wait $a; wait $b
}
# CPU seconds used so far by both servers: each postmaster's own and its reaped children's
# (backends, parallel workers). With the client's CPU this is what a run costs independently of
# what else the (shared) machine runs; on an idle machine the wall time approaches it / cores.
HZ=$(getconf CLK_TCK)
server_cpu() {
  sleep 0.3  # let the postmasters reap the backends that just ended
  for d in SRC TGT; do awk '{print $14+$15+$16+$17}' "/proc/$(head -1 "$BENCH_DIR/$d/postmaster.pid")/stat"; done | paste -sd+ | sed "s|.*|(&)/$HZ|" | bc -l
}
# verify NAME: one pass, its time in T, exit code in RC, CPU (servers + client) in CPU
verify() {
  local t0 c0; c0=$(server_cpu); t0=$(now)
  set +e; /usr/bin/time -f "%U %S" -o "$BENCH_DIR/$1.cpu" "${VERIFY[@]}" --report-json "$BENCH_DIR/$1.json" >"$BENCH_DIR/$1.txt"; RC=$?; set -e
  T=$(elapsed "$t0" "$(now)")
  CPU=$(echo "$(server_cpu) - $c0 + $(tail -1 "$BENCH_DIR/$1.cpu" | tr ' ' '+')" | bc -l)
}
ROWS=$(psql_at "$SRC_PORT" bench -c "SELECT count(*) FROM pgbench_accounts")
DIFF_KEYS="SELECT (g * ($ROWS / 10))::int FROM generate_series(1, 10) g"
load() { cut -d' ' -f1 /proc/loadavg; }

baseline   # warm both caches the same way for everyone below
RESULTS=()
for run in $(seq "$RUNS"); do
  l0=$(load)
  c0=$(server_cpu); t0=$(now); baseline; T_BASE=$(elapsed "$t0" "$(now)"); C_BASE=$(echo "$(server_cpu) - $c0" | bc -l)
  verify clean; T_CLEAN=$T; RC_CLEAN=$RC; C_CLEAN=$CPU
  psql_at "$TGT_PORT" bench -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid IN ($DIFF_KEYS)" >/dev/null
  verify diff; T_DIFF=$T; RC_DIFF=$RC; C_DIFF=$CPU
  FOUND=$(python3 -c "import json; print(json.load(open('$BENCH_DIR/diff.json'))['row_differences'])")
  psql_at "$TGT_PORT" bench -c "UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid IN ($DIFF_KEYS)" >/dev/null
  RESULTS+=("$T_BASE $T_CLEAN $RC_CLEAN $T_DIFF $RC_DIFF $FOUND $l0 $(load) $C_BASE $C_CLEAN $C_DIFF")
  echo "run $run: baseline $T_BASE s ($C_BASE s CPU), clean $T_CLEAN s ($C_CLEAN s CPU, exit $RC_CLEAN), 10 differences $T_DIFF s ($C_DIFF s CPU, exit $RC_DIFF, $FOUND found); load $l0 -> $(load)" >&2
done

tail -1 "$BENCH_DIR/clean.txt"
tail -1 "$BENCH_DIR/diff.txt"
printf '%s\n' "${RESULTS[@]}" >"$BENCH_DIR/results.txt"
python3 - "$BENCH_DIR/results.txt" "$SCALE" "$JOBS" "$ROWS" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" <<'PY'
import statistics, sys
results, scale, jobs, rows, cores, when = sys.argv[1:]
runs = [line.split() for line in open(results) if line.strip()]
ok = all(r[2] == "0" and r[4] == "1" and r[5] == "10" for r in runs)
print()
print(f"verify benchmark, pgbench scale {scale} ({int(rows):,} accounts), --jobs {jobs}, {cores} cores, {when}")
print("| run | load avg (start → end) | baseline (s) | clean pass (s) | ratio (≤ 1.2×) | 10 differences (s) | ratio to clean (≤ 1.5×) | CPU s: baseline / clean / differences | CPU ratios |")
print("|---|---|---:|---:|---:|---:|---:|---|---|")
for i, (base, clean, _, diff, _, _, l0, l1, cb, cc, cd) in enumerate(runs, 1):
    base, clean, diff, cb, cc, cd = map(float, (base, clean, diff, cb, cc, cd))
    print(f"| {i} | {l0} → {l1} | {base:.2f} | {clean:.2f} | {clean/base:.2f}× | {diff:.2f} | {diff/clean:.2f}× | {cb:.2f} / {cc:.2f} / {cd:.2f} | {cc/cb:.2f}× / {cd/cc:.2f}× |")
med = lambda xs: statistics.median(xs)
cr = med([float(r[1]) / float(r[0]) for r in runs]); dr = med([float(r[3]) / float(r[1]) for r in runs])
if len(runs) > 1:
    print(f"| median | | {med([float(r[0]) for r in runs]):.2f} | {med([float(r[1]) for r in runs]):.2f} | {cr:.2f}× | {med([float(r[3]) for r in runs]):.2f} | {dr:.2f}× | "
          f"{med([float(r[8]) for r in runs]):.2f} / {med([float(r[9]) for r in runs]):.2f} / {med([float(r[10]) for r in runs]):.2f} | "
          f"{med([float(r[9]) / float(r[8]) for r in runs]):.2f}× / {med([float(r[10]) / float(r[9]) for r in runs]):.2f}× |")
print()
print(f"clean pass ≤ 1.2× baseline: {'met' if cr <= 1.2 else 'MISSED'}; 10 differences ≤ 1.5× clean: {'met' if dr <= 1.5 else 'MISSED'}")
print("correctness: " + ("every clean pass exit 0, every difference pass exit 1 with exactly 10 found" if ok else "UNEXPECTED: " + "; ".join(f"clean exit {r[2]}, diff exit {r[4]}, found {r[5]}" for r in runs)))
sys.exit(0 if ok else 1)
PY
