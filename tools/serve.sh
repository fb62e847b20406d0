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
# Model versions and tuning jobs persist in a store per served model (a store
# keeps serving the version last published, whatever --model says, so each
# model gets its own); tuning jobs read datasets from .cache/tuning-data (the
# shared corpora when they are beside us).
model_path=""
args=("${model_args[@]}" "$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --model) model_path="${args[$((i + 1))]:-}" ;;
    --model=*) model_path="${args[$i]#--model=}" ;;
  esac
done
store_dir=".cache/store/$(printf '%s' "$model_path" | sha1sum | cut -c1-12)"
mkdir -p "$store_dir" .cache/tuning-data
data_dir=.cache/tuning-data
zero_shot_args=()
if [ -d ../shared/data/corpora ]; then data_dir=../shared/data/corpora; fi
if [ -d ../shared/data/eval ]; then zero_shot_args=(--set "tuning.zero_shot_dir=../shared/data/eval"); fi
exec "$bin/server/otaro_server" --config deploy/config/otaro.yaml "${model_args[@]}" \
  --set "store.dir=$store_dir" --set "tuning.data_dir=$data_dir" "${zero_shot_args[@]}" "$@"
