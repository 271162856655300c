#!/usr/bin/env bash
# npm run cluster -- up | down: installs what is missing (ZooKeeper, ClickHouse), then dev/cluster-cli.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/ensure-node-modules.sh
bash dev/ensure-system-packages.sh --cluster
exec node --import tsx dev/cluster-cli.ts "$@"
