#!/usr/bin/env bash
# Rebuilds the dashboard from web/: the TypeScript code generated from proto/
# (protoc-gen-es, into web/src/gen) and the bundle the server ships
# (jobqueue/dashboard/app.js). Run after a change to web/src or to a .proto file,
# and commit both; tests/test_dashboard_build.py fails while either is stale.
# Needs node and npm (the packages come from web/package-lock.json, by `npm ci`)
# and the dev extras (grpcio-tools' protoc).
#   scripts/build_dashboard.sh [OUT]   # OUT: write gen/ and app.js there instead
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-}"
gen="${out:+$out/gen}"
gen="${gen:-web/src/gen}"
bundle="${out:+$out/app.js}"
bundle="${bundle:-jobqueue/dashboard/app.js}"
if [ ! -x web/node_modules/.bin/esbuild ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
rm -rf "$gen"
mkdir -p "$gen" "$(dirname "$bundle")"
python -m grpc_tools.protoc -Iproto \
  --plugin=protoc-gen-es=web/node_modules/.bin/protoc-gen-es \
  --es_out="$gen" --es_opt=target=ts \
  proto/mpataki/jobqueue/v1/jobqueue.proto
# With OUT, the bundle is built from web/src as committed: a fresh one equals it
# when web/src/gen equals the fresh gen/ beside it (the test compares both).
web/node_modules/.bin/tsc --noEmit -p web
web/node_modules/.bin/esbuild web/src/main.ts --bundle --format=iife --target=es2022 --minify \
  --legal-comments=none --charset=utf8 --log-level=warning --outfile="$bundle"
