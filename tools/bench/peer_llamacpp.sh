#!/usr/bin/env bash
# otaro beside llama.cpp on this machine, in one run (tools/bench/peer_llamacpp.py
# says what is measured). Prints one Markdown table with ratios.
#   bash tools/bench/peer_llamacpp.sh [--threads 1,2] [--batches 8,16] [--rounds 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 tools/bench/peer_llamacpp.py "$@"
