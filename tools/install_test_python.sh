#!/usr/bin/env bash
# Makes the Python environment of the test tooling (.cache/pytools: the
# official `openai` client, pinned) and prints its interpreter's path.
# Idempotent: it only calls pip when the pinned package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/pytools
openai_version=3.63.0
if ! "$venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$openai_version')" \
    2>/dev/null; then
  echo "install_test_python: installing openai==$openai_version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "openai==$openai_version" >&2
fi
echo "$(pwd)/$venv/bin/python"
