#!/usr/bin/env bash
# npm start: installs what is missing, then runs the whole pipeline in the foreground (dev/up.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash dev/ensure-node-modules.sh
bash dev/ensure-system-packages.sh
exec node --import tsx dev/up.ts
