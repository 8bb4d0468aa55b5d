#!/usr/bin/env bash
# The benchmark suite in one command: jobqueue's S1-S6 and the peers' S1-S3 through
# the shared harness (../shared/bench-peers), on this machine, in one run.
#   bench/run.sh           # full: about an hour on 2 cores (the peers take ~35 min)
#   bench/run.sh --smoke   # tiny sizes, jobqueue only: proves the suite still works (the tests run it)
# Results: $BENCH_OUT (default bench/results/<timestamp>)/report.md, with the raw JSON beside it.
source "$(dirname "$0")/../scripts/_venv.sh"
ensure_redis_server
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${BENCH_OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
PEERS=${BENCH_PEERS_DIR:-$(cd .. && pwd)/shared/bench-peers}
mkdir -p "$OUT/results" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
export BENCH_PEERS_DIR=$PEERS BENCH_RESULTS_DIR=$OUT/results BENCH_LOG_DIR=$OUT/logs
if [ $SMOKE = 1 ]; then
  export BENCH_N=500 BENCH_REPEATS=1 BENCH_S2_JOBS=20 BENCH_S3_JOBS=20 BENCH_S3_DELAY=1
fi

# S1-S3 for jobqueue, on a Redis started like the harness starts its own.
PORT=$(python -c 'from jobqueue.redis_server import free_port; print(free_port())')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  >"$OUT/logs/redis-jobqueue.log" 2>&1 &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
export BENCH_REDIS_URL="redis://127.0.0.1:$PORT/0"
timeout 900 python bench/peer_jobqueue.py
# The same through the API: jobs enqueued with RPCs to a jobqueue server.
BENCH_JQ_VIA=rpc BENCH_JQ_VARIANT=rpc timeout 900 python bench/peer_jobqueue.py
if [ $SMOKE = 0 ]; then
  BENCH_JQ_CONCURRENCY=50 BENCH_JQ_VARIANT=sdk-c50 timeout 900 python bench/peer_jobqueue.py
  BENCH_JQ_PREFETCH=10 BENCH_JQ_VARIANT=sdk-prefetch10 timeout 900 python bench/peer_jobqueue.py
fi
kill $REDIS_PID; wait $REDIS_PID 2>/dev/null || true

# S4-S6: jobqueue's own scenarios.
for s in s4 s5 s6; do
  if [ $SMOKE = 1 ]; then timeout 600 python bench/suite.py $s --smoke --out "$OUT"
  else timeout 3600 python bench/suite.py $s --out "$OUT"; fi
done

# The peers, through the shared harness, into the same results folder.
if [ $SMOKE = 0 ]; then
  BENCH_PORT=$(python -c 'from jobqueue.redis_server import free_port; print(free_port())') \
    BENCH_OUT="$OUT" bash "$PEERS/run.sh"
fi
python bench/report.py "$OUT"
