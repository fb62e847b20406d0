#!/usr/bin/env bash
# The small-scale OTARo experiment through the product path: a real
# otaro_server (stories260K, store and tuning worker on), tuning jobs created,
# followed and published with the `otaro` CLI over gRPC, the result evaluated
# through Generate. Prints each job's per-precision held-out perplexity (from
# its final checkpoint) and greedy outputs before and after publishing.
#
#   tools/experiments/claim_via_server.sh [STEPS] [STRATEGIES...]
# Defaults: 150 steps; otaro fp uniform fixed:3. Same data, seed and
# hyperparameters as tools/experiments/otaro_claim.py (docs/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-150}
shift || true
strategies=("$@")
[ ${#strategies[@]} -gt 0 ] || strategies=(otaro fp uniform fixed:3)
shared=${OTARO_SHARED_DIR:-$(cd .. && pwd)/shared}

config=()
if [ ! -x /usr/local/cuda/bin/nvcc ]; then config=(--config=cpu); fi
# The default build (.bazelrc: -O2) shares its cache with tools/test.sh.
bazel build "${config[@]}" //server:otaro_server //client:otaro >&2
bin=$(bazel info "${config[@]}" bazel-bin 2>/dev/null)
work=$(mktemp -d /tmp/otaro-claim-server.XXXXXX)
mkdir -p "$work/data" "$work/store"
head -c 400000 "$shared/data/corpora/wikitext-2-tokens/valid.txt" > "$work/data/train.txt"
head -c 100000 "$shared/data/corpora/wikitext-2-tokens/test.txt" > "$work/data/heldout.txt"

port=$((20000 + RANDOM % 20000))
"$bin/server/otaro_server" --model "$shared/data/models/stories260K-gguf/stories260K.gguf" \
  --set "server.grpc_address=127.0.0.1:$port" --set server.metrics_address= \
  --set "store.dir=$work/store" --set "tuning.data_dir=$work/data" --set tuning.threads=2 \
  --ready_file "$work/ready" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 300); do [ -s "$work/ready" ] && break; sleep 0.2; done
[ -s "$work/ready" ] || { cat "$work/server.log" >&2; exit 1; }
otaro() { "$bin/client/otaro" --server "127.0.0.1:$port" "$@"; }

greedy() { otaro generate --bits "$1" --max_tokens 24 --temperature 0 "Once upon a time" 2>&1 | head -2; }
echo "## untuned (version 1)"
for bits in 8 3; do echo "E5M$bits: $(greedy $bits | tr '\n' ' ')"; done

for strategy in "${strategies[@]}"; do
  id=$(otaro tune create data=train.txt heldout=heldout.txt format=text "strategy=$strategy" \
         "steps=$steps" batch=8 seq_len=128 optimizer=sgd lr=0.3 clip=1 seed=1 eval_items=16 \
         | awk '/^job /{print $2; exit}')
  echo "## $strategy: job $id"
  otaro tune events "$id" | grep -E "state|evaluation|produced" || true
  otaro tune get "$id" | grep -E "state|checkpoint|versions"
done

echo "## model versions"
otaro models list
echo "## publishing the otaro job's version"
version=$(otaro models list --json | python3 -c '
import json, sys
versions = json.load(sys.stdin).get("versions", [])
otaro = [v for v in versions if v.get("strategy") == "STRATEGY_OTARO"]
print(otaro[-1]["version"] if otaro else "")')
[ -n "$version" ] && otaro models publish "$version"
for bits in 8 3; do echo "E5M$bits: $(greedy $bits | tr '\n' ' ')"; done
