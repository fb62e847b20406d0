#!/usr/bin/env bash
# Builds the binaries an otaro image ships and stages them as the image's file
# tree under OUT (see stage.sh). The Dockerfiles' build stage runs exactly this;
# the binaries are the ones `tools/test.sh` builds and tests.
#
# usage: deploy/docker/build.sh cuda|cpu OUT
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ $# -ne 2 ]; then
  echo "usage: deploy/docker/build.sh cuda|cpu OUT" >&2
  exit 2
fi
variant=$1
out=$2
case "$variant" in
  cuda) config=() ;;
  cpu) config=(--config=cpu) ;;
  *) echo "build.sh: unknown variant '$variant' (cuda or cpu)" >&2; exit 2 ;;
esac

targets=(//server:otaro_server //client:otaro //tools/convert:otaro-convert)
bazel build "${config[@]}" "${targets[@]}"
bin=$(bazel info "${config[@]}" bazel-bin)
exec bash deploy/docker/stage.sh "$bin" "$out"
