#!/usr/bin/env bash
# Regenerates README.md's configuration table from the config schema.
set -euo pipefail
cd "$(dirname "$0")/.."
bazel build --config=cpu //server:otaro_server >&2
table=$(bazel-bin/server/otaro_server --print_config_reference)
python3 - "$table" <<'PY'
import sys
table = sys.argv[1] + "\n"
text = open("README.md").read()
begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
a, b = text.index(begin) + len(begin), text.index(end)
open("README.md", "w").write(text[:a] + table + text[b:])
PY
