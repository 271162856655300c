#!/usr/bin/env bash
# npm run fuzz [-- --runs N --seed S]: the report and e-mail properties in process (bench/fuzz.ts), then the HTTP
# request fuzzer against the running HTTPS receiver and API (test/e2e/http-fuzz.test.ts, HTTP_FUZZ_RUNS requests,
# 20,000 by default, seed HTTP_FUZZ_SEED or a random one, printed by fast-check on a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
node --import tsx bench/fuzz.ts "$@"
export HTTP_FUZZ_RUNS="${HTTP_FUZZ_RUNS:-20000}" HTTP_FUZZ_SEED="${HTTP_FUZZ_SEED:-$RANDOM}"
echo "http fuzz: $HTTP_FUZZ_RUNS requests, seed $HTTP_FUZZ_SEED"
exec bash dev/test.sh test/e2e/http-fuzz.test.ts
