#!/usr/bin/env bash
# Lays out an otaro image's file tree under OUT from built binaries:
#   OUT/opt/otaro/bin/{otaro_server,otaro,otaro-convert}
#   OUT/etc/otaro/otaro.yaml      the container's config (deploy/docker/otaro.yaml)
#   OUT/models, OUT/var/lib/otaro  mount points of the model and job-store volumes
# BIN is a folder holding server/otaro_server, client/otaro and
# tools/convert/otaro-convert (Bazel's bazel-bin, or a test's runfiles).
# build.sh runs it in the image build; tests/... deploy_test runs it here.
#
# usage: deploy/docker/stage.sh BIN OUT
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: deploy/docker/stage.sh BIN OUT" >&2
  exit 2
fi
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)

binaries=(server/otaro_server client/otaro tools/convert/otaro-convert)
for binary in "${binaries[@]}"; do
  if [ ! -x "$bin/$binary" ]; then
    echo "stage.sh: $bin/$binary is missing or not executable (build it first)" >&2
    exit 1
  fi
done

install -d -m 0755 "$out/opt/otaro/bin" "$out/etc/otaro"
for binary in "${binaries[@]}"; do
  # -L: Bazel's outputs (and runfiles) may be symlinks; the image needs files.
  cp -L "$bin/$binary" "$out/opt/otaro/bin/"
  chmod 0755 "$out/opt/otaro/bin/$(basename "$binary")"
done
install -m 0644 "$here/otaro.yaml" "$out/etc/otaro/otaro.yaml"
# The model and the job store are volumes; the image only has empty mount points.
install -d -m 0755 "$out/models" "$out/var/lib/otaro"
echo "stage.sh: staged ${#binaries[@]} binaries and the config under $out" >&2
