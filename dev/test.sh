#!/usr/bin/env bash
# npm test: installs what is missing, runs npm run check (types, lint, format), then the three tiers. The unit tier
# runs before any system package is installed or server started (it needs only Node and the npm packages); the
# integration and end-to-end tiers start their own Redis and ClickHouse on free ports in a temporary folder, so the
# suite runs beside a local stack without touching its ports or data.
# With arguments (files, --project NAME, vitest flags) it runs just those, after the same installs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/ensure-node-modules.sh
if [ $# -eq 0 ]; then
  npm run check --silent
  npx vitest run --project unit
fi
bash dev/ensure-system-packages.sh --test
bash dev/ensure-chdb.sh
if [ $# -eq 0 ]; then exec npx vitest run --project integration --project e2e; fi
exec npx vitest run "$@"
