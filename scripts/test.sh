#!/usr/bin/env bash
# Runs every check: lint, types, and the whole test suite against private Redis
# servers it starts itself. Sets itself up on first use (.venv). Arguments go to pytest.
# The tests run in JOBQUEUE_TEST_PROCESSES processes (pytest-xdist, default 2), a test
# file per process at a time: most tests wait on servers and workers of their own, and
# each process starts its own Redis servers and cluster. 0 runs them in this process.
source "$(dirname "$0")/_venv.sh"
ensure_redis_server
ensure_grpc_web_client
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
processes="${JOBQUEUE_TEST_PROCESSES:-2}"
if [ "$processes" = 0 ]; then
  exec pytest "$@"
fi
exec pytest -n "$processes" --dist loadfile "$@"
