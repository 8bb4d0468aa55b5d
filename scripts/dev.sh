#!/usr/bin/env bash
# Runs the whole system in one terminal: Redis, the server on :8080 and the example
# print worker. Sets itself up on first use (.venv, with what running needs and no
# dev tools). Ctrl-C stops everything.
venv_extras=""
source "$(dirname "$0")/_venv.sh"
if [ -z "${REDIS_URL:-}${JOBQUEUE_REDIS_URL:-}${REDIS_ADDR:-}" ]; then
  ensure_redis_server
fi
exec jobqueue dev "$@"
