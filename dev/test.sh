#!/usr/bin/env bash
# npm test: installs what is missing, runs npm run check (types, lint, format), then every test. The suite starts
# its own Redis and ClickHouse on free ports under .data/test-*, so it runs beside a local stack without touching
# its ports or data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/ensure-node-modules.sh
bash dev/ensure-system-packages.sh --test
bash dev/ensure-chdb.sh
# The whole suite checks what a reviewer checks first: types, lint, format (npm run check).
if [ $# -eq 0 ]; then npm run check --silent; fi
exec npx vitest run "$@"
