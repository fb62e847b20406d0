#!/usr/bin/env bash
# Installs the Debian 12 packages otaro builds and tests with. Idempotent: it
# only calls apt-get when something is missing. Why each library is here:
# README.md, "Dependencies".
set -euo pipefail

PACKAGES=(
  # Build
  bazel-bootstrap bazel-platforms bazel-rules-java g++ clang git python3 python3-pip
  # The test tooling's venv (the official openai client, tools/install_test_python.sh)
  python3-venv
  # gRPC, Protobuf (compiler + runtime), Abseil
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libabsl-dev
  # Config, logging, metrics HTTP, JSON, Unicode regexes, BLAS
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcivetweb-dev nlohmann-json3-dev libpcre2-dev
  libopenblas-dev
  # TLS of the OpenAI HTTP API (server/http/tls_terminator.h); token hashing
  libssl-dev
  # Tuning job and model version records (embedded, transactional)
  libsqlite3-dev
  # Tests and benchmarks; promtool checks our metrics output
  libgtest-dev libgmock-dev libbenchmark-dev prometheus
  # libFuzzer + sanitizer runtimes for clang (tools/fuzz/run_all.sh); only a
  # Recommends of clang, which --no-install-recommends leaves out
  libclang-rt-14-dev
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
