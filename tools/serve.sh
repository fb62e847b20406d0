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
bazel build -c opt "${config[@]}" //server:otaro_server //client:otaro //tools/convert:otaro-convert \
  //tools/tune:otaro-tune //tools/eval:otaro-eval
bin=$(bazel info -c opt "${config[@]}" bazel-bin 2>/dev/null)

model_args=()
if [[ " $* " != *" --model"* ]]; then
  gguf=$(bash tools/fetch_default_model.sh)
  sefp="${gguf%.gguf}.sefp"
  if [ ! -s "$sefp" ]; then
    "$bin/tools/convert/otaro-convert" "$gguf" "$sefp"
  fi
  # Tuning jobs start from the float weights the SEFP copy came from.
  model_args=(--model "$sefp" --set "tuning.base_model_path=$gguf")
fi
# Model versions and tuning jobs persist in .cache/store; tuning jobs read
# datasets from .cache/tuning-data (the shared corpora when they are beside us).
mkdir -p .cache/store .cache/tuning-data
data_dir=.cache/tuning-data
if [ -d ../shared/data/corpora ]; then data_dir=../shared/data/corpora; fi
exec "$bin/server/otaro_server" --config deploy/config/otaro.yaml "${model_args[@]}" \
  --set store.dir=.cache/store --set "tuning.data_dir=$data_dir" "$@"
