#!/usr/bin/env bash
# npm start: installs what is missing, then runs the whole pipeline in the foreground (deploy/local/up.ts).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/ensure-node-modules.sh
bash deploy/local/ensure-system-packages.sh
exec node --import tsx deploy/local/up.ts
