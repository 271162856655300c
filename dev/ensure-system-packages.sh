#!/usr/bin/env bash
# Installs Debian's redis-server, clickhouse-server and clickhouse-client when they are missing. Idempotent; needs
# root (or sudo).
# `--test` also installs what the test suite drives the receivers with (swaks, with STARTTLS support), ZooKeeper for
# its ClickHouse cluster, Chromium for the dashboard's browser test, Dovecot for the mailbox fetcher's, dnsmasq for
# the live checks' and pebble (an ACME test CA) for the policy host's certificates;
# `--cluster` ZooKeeper and redis-sentinel alone (npm run cluster).
set -euo pipefail
missing=()
if [ "${1:-}" = "--test" ]; then
  command -v swaks >/dev/null 2>&1 || missing+=(swaks)
  perl -MNet::SSLeay -e 1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd)
  # dnsmasq's binary alone (no system service): the live checks' test DNS.
  [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
  command -v pebble >/dev/null 2>&1 || missing+=(pebble)
fi
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--cluster" ]; then
  [ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing+=(zookeeper)
  # Three Sentinels over a Redis master and two replicas (the failover test, npm run cluster).
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
fi
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v clickhouse-server >/dev/null 2>&1 || missing+=(clickhouse-server)
# The SQL shell the analysts' examples (docs/analysts-sql.md) use.
command -v clickhouse-client >/dev/null 2>&1 || missing+=(clickhouse-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "installing ${missing[*]} with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the install small; the distro services are never started (we run our own).
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
