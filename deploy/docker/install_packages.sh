#!/usr/bin/env bash
# Installs the Debian 12 packages of one image stage. Idempotent: it calls
# apt-get only for what is missing, so on a machine that builds otaro (and in
# the test that runs it) it installs nothing.
#
#   runtime-cpu   the shared libraries otaro's binaries load (runtime-packages.txt;
#                 a test checks that list against `ldd` of the real binaries)
#   runtime-cuda  the same plus the CUDA runtime and cuBLAS (the CUDA backend links
#                 libcudart and libcublasLt: tools/bazel/cuda.bzl)
#   build-cuda    the CUDA 13 compiler and headers, for the build stage (the rest
#                 of the build stage is tools/install_deps.sh)
# CUDA packages come from NVIDIA's Debian 12 repository.
#
# usage: deploy/docker/install_packages.sh runtime-cpu|runtime-cuda|build-cuda
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ $# -ne 1 ]; then
  echo "usage: deploy/docker/install_packages.sh runtime-cpu|runtime-cuda|build-cuda" >&2
  exit 2
fi
stage=$1
cuda_runtime=(cuda-cudart-13-0 libcublas-13-0)
case "$stage" in
  runtime-cpu) mapfile -t packages < <(grep -v '^[[:space:]]*\(#\|$\)' "$here/runtime-packages.txt") ;;
  runtime-cuda)
    mapfile -t packages < <(grep -v '^[[:space:]]*\(#\|$\)' "$here/runtime-packages.txt")
    packages+=("${cuda_runtime[@]}")
    ;;
  build-cuda)
    # A toolkit already at /usr/local/cuda (as on the project's machines) will do.
    if [ -x /usr/local/cuda/bin/nvcc ]; then
      echo "install_packages.sh: CUDA toolkit present at /usr/local/cuda" >&2
      exit 0
    fi
    packages=(cuda-nvcc-13-0 cuda-cudart-dev-13-0 libcublas-dev-13-0)
    ;;
  *) echo "install_packages.sh: unknown stage '$stage'" >&2; exit 2 ;;
esac

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_packages.sh: all ${#packages[@]} packages of $stage are installed" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [[ "$stage" == *cuda ]] && ! dpkg-query -W cuda-keyring >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends ca-certificates curl
  curl -fsSLo /tmp/cuda-keyring.deb \
    https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb
  dpkg -i /tmp/cuda-keyring.deb
  rm /tmp/cuda-keyring.deb
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
rm -rf /var/lib/apt/lists/*
