#!/usr/bin/env bash
# Quick start: installs what otaro needs (Debian 12), builds the server
# optimised, fetches the default model (SmolLM2-135M-Instruct) once, converts it
# to a SEFP checkpoint once, and serves it with deploy/config/otaro.yaml.
# Extra arguments go to otaro_server, e.g. --model /path/to/your/model (any
# Hugging Face folder, GGUF file or SEFP checkpoint) or
# --set server.grpc_address=0.0.0.0:50051.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
config=()
if [ ! -x /usr/local/cuda/bin/nvcc ]; then config=(--config=cpu); fi
bazel build -c opt "${config[@]}" //server:otaro_server //client:otaro //tools/convert:otaro-convert
bin=$(bazel info -c opt "${config[@]}" bazel-bin 2>/dev/null)

model_args=()
if [[ " $* " != *" --model"* ]]; then
  gguf=$(bash tools/fetch_default_model.sh)
  sefp="${gguf%.gguf}.sefp"
  if [ ! -s "$sefp" ]; then
    "$bin/tools/convert/otaro-convert" "$gguf" "$sefp"
  fi
  model_args=(--model "$sefp")
fi
exec "$bin/server/otaro_server" --config deploy/config/otaro.yaml "${model_args[@]}" "$@"
