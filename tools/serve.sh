#!/usr/bin/env bash
# Quick start: installs what otaro needs (Debian 12), builds the server
# optimised, and runs it with deploy/config/otaro.yaml. Extra arguments go to
# otaro_server, e.g. --model /path/to/model or --set server.grpc_address=0.0.0.0:50051.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
config=()
if [ ! -x /usr/local/cuda/bin/nvcc ]; then config=(--config=cpu); fi
bazel build -c opt "${config[@]}" //server:otaro_server //client:otaro
exec bazel-bin/server/otaro_server --config deploy/config/otaro.yaml "$@"
