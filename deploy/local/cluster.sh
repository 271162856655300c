#!/usr/bin/env bash
# npm run cluster -- up | down: installs what is missing (ZooKeeper, ClickHouse), then deploy/scripts/cluster.ts.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/ensure-node-modules.sh
bash deploy/local/ensure-system-packages.sh --cluster
exec node --import tsx deploy/scripts/cluster.ts "$@"
