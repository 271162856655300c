#!/usr/bin/env bash
# npm run fuzz [-- RUNS [SEED]]: the suite's fuzz tests, long: RUNS mutated reports (20,000 by default) and a quarter
# as many e-mails through extraction, parsing, normalization and ClickHouse (test/integration/fuzz.test.ts), then
# RUNS HTTP requests against the running HTTPS receiver and API (test/e2e/http-fuzz.test.ts). The seed is SEED or a
# random one, printed here; fast-check prints the failing case.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20000}"
seed="${2:-$RANDOM}"
echo "fuzz: $runs cases, seed $seed"
export FUZZ_RUNS="$runs" FUZZ_SEED="$seed" HTTP_FUZZ_RUNS="$runs" HTTP_FUZZ_SEED="$seed"
exec bash dev/test.sh test/integration/fuzz.test.ts test/e2e/http-fuzz.test.ts
