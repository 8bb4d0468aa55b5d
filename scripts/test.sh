#!/usr/bin/env bash
# Runs every check: lint, types, and the whole test suite against private Redis
# servers it starts itself. Sets itself up on first use (.venv). Arguments go to pytest.
source "$(dirname "$0")/_venv.sh"
ensure_redis_server
ensure_grpc_web_client
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
exec pytest "$@"
