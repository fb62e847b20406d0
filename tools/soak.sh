#!/usr/bin/env bash
# The long soak: tests/reliability:soak_test (a tuning job, then publish /
# rollback cycles of SmolLM2 under four streaming clients, resident memory and
# inter-token gaps checked) with more cycles than CI runs. Prints the test's
# figures. Usage: tools/soak.sh [CYCLES, default 200]
# OTARO_SOAK_SERVER_LOG=FILE keeps the server's log there (timestamps to set
# beside the long gaps the test prints). OTARO_SOAK_SMAPS_DIR=DIR keeps the
# server's /proc/PID/smaps at the start, after the job, after one cycle and at
# the end; `python3 tools/soak_smaps.py DIR` says where the memory went.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-200}"
shared="${OTARO_SHARED_DIR:-$(cd .. && pwd)/shared}"
model=$(bash tools/fetch_default_model.sh)
config=()
if [ ! -x /usr/local/cuda/bin/nvcc ]; then config=(--config=cpu); fi
bazel test -c opt "${config[@]}" //tests/reliability:soak_test --nocache_test_results \
  --test_timeout=$((600 + 10 * cycles)) --test_output=streamed \
  --test_env=OTARO_SHARED_DIR="$shared" --test_env=OTARO_DEFAULT_MODEL="$model" \
  --test_env=OTARO_SOAK_CYCLES="$cycles" \
  --test_env=OTARO_SOAK_SERVER_LOG="${OTARO_SOAK_SERVER_LOG:-}" \
  --test_env=OTARO_SOAK_SMAPS_DIR="${OTARO_SOAK_SMAPS_DIR:-}" 2>&1 | grep -E '^soak:|FAIL|Failure|Expected|grew|stalled|PASSED'
