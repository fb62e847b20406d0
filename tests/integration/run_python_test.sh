#!/usr/bin/env bash
# Runs a Python test with the interpreter that has the test tooling's PyPI
# packages (the official openai client): $OTARO_PYTHON, which tools/test.sh
# passes after tools/install_test_python.sh made it.
set -euo pipefail
if [ -z "${OTARO_PYTHON:-}" ] || [ ! -x "$OTARO_PYTHON" ]; then
  echo "OTARO_PYTHON is not set to a Python with the test packages: run tools/test.sh," >&2
  echo "or: bazel test --test_env=OTARO_PYTHON=\$(bash tools/install_test_python.sh) ..." >&2
  exit 1
fi
exec "$OTARO_PYTHON" "$@"
