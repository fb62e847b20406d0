#!/usr/bin/env bash
# The architecture's one-way dependencies (README "Architecture"), checked on
# Bazel's build graph: common -> sefp -> engine -> eval -> trainer -> server,
# client -> proto (+ common). For each layer, no non-test target may reach a layer
# above it, gRPC (except server/ and client/), server/, client/, tests/ or
# tools/ (Bazel's own macros and config settings in tools/bazel excepted).
# `bazel query` sees every select() branch, so CUDA-only edges count too.
# Prints one line per violation with the path, then "layering: N rules, V violations";
# exits 1 on any violation.
set -uo pipefail
cd "$(dirname "$0")/.."

tools='(//tools/... - //tools/bazel/...)'
grpc='("@system//:grpc++" + "@system//:grpc++_reflection")'
outside="//server/... + //client/... + //tests/... + $tools"
# layer: what it must never reach
declare -A forbidden=(
  [common]="//sefp/... + //engine/... + //eval/... + //trainer/... + $outside + $grpc"
  [sefp]="//engine/... + //eval/... + //trainer/... + $outside + $grpc"
  [engine]="//eval/... + //trainer/... + $outside + $grpc"
  [eval]="//trainer/... + $outside + $grpc"
  [trainer]="$outside + $grpc"
  # The client speaks the proto; of the house it may use only common/'s small
  # pieces (it reads tuning recipes with common/recipe).
  [client]="//sefp/... + //engine/... + //eval/... + //trainer/... + //server/... + //tests/... + $tools"
)
rules=0
violations=0
for layer in common sefp engine eval trainer client; do
  rules=$((rules + 1))
  path=$(bazel query --noshow_progress \
    "somepath(attr(testonly, 0, //$layer/...), ${forbidden[$layer]})" 2>/tmp/layering.err)
  if [ $? -ne 0 ]; then
    echo "layering: bazel query failed for $layer:" >&2
    cat /tmp/layering.err >&2
    violations=$((violations + 1))
    continue
  fi
  if [ -n "$path" ]; then
    echo "layering: $layer reaches what it must not: $(tr '\n' ' ' <<<"$path")"
    violations=$((violations + 1))
  fi
done
echo "layering: $rules rules, $violations violations"
[ "$violations" -eq 0 ]
