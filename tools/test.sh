#!/usr/bin/env bash
# The README's test command: builds everything and runs every test, then prints
# "N passed, M failed" counting individual test cases (from the gtest XML that
# bazel test leaves in bazel-testlogs). Extra arguments go to `bazel test`.
#
# Tests read the shared data folder (real models, corpora, golden vectors) from
# $OTARO_SHARED_DIR, by default ../shared beside this checkout.
set -uo pipefail
cd "$(dirname "$0")/.."

bash tools/install_deps.sh || { echo "0 passed, 1 failed"; exit 1; }

shared="${OTARO_SHARED_DIR:-$(cd .. && pwd)/shared}"
if [ ! -f "$shared/design/SEFP.md" ]; then
  echo "test.sh: shared data not found at $shared (set OTARO_SHARED_DIR)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

# The quick start's default model (SmolLM2-135M-Instruct); some tests load it.
default_model=$(bash tools/fetch_default_model.sh) || { echo "0 passed, 1 failed"; exit 1; }
# Python with the test tooling's PyPI packages (the official openai client).
test_python=$(bash tools/install_test_python.sh) || { echo "0 passed, 1 failed"; exit 1; }

config=()
if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "test.sh: no CUDA toolkit at /usr/local/cuda: building with --config=cpu" >&2
  config=(--config=cpu)
fi

# Compile everything first (incl. CUDA objects and benchmarks), then test.
bazel build "${config[@]}" //...
build_rc=$?
bazel test "${config[@]}" //... --test_env=OTARO_SHARED_DIR="$shared" \
  --test_env=OTARO_DEFAULT_MODEL="$default_model" --test_env=OTARO_PYTHON="$test_python" "$@"
test_rc=$?

tests=$(bazel query 'tests(//...)' 2>/dev/null)
# Ask Bazel where the logs are: the bazel-testlogs symlink follows whichever
# output base last ran in this folder.
testlogs=$(bazel info "${config[@]}" bazel-testlogs 2>/dev/null)
python3 tools/count_test_cases.py "$testlogs" $tests
count_rc=$?

if [ $build_rc -ne 0 ] || [ $test_rc -ne 0 ] || [ $count_rc -ne 0 ]; then
  exit 1
fi
