#!/usr/bin/env bash
# Installs Debian's redis-server and clickhouse-server when they are missing. Idempotent; needs root.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v clickhouse-server >/dev/null 2>&1 || missing+=(clickhouse-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "installing ${missing[*]} with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the install small; the distro services are never started (we run our own).
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
