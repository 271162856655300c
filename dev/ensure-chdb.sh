#!/usr/bin/env bash
# Installs chdb (current ClickHouse, in process) under dev/tools/chdb for the test that compares its answers with
# 18.16's. Idempotent. Not in the project's lock file: see dev/tools/chdb/package.json.
set -euo pipefail
cd "$(dirname "$0")/tools/chdb"
if [ ! -f node_modules/chdb/package.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
