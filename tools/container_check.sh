#!/usr/bin/env bash
# Builds the CPU container image from deploy/docker/Dockerfile and runs it the
# way deploy/docker/otaro.yaml and the README's Deployment section say it runs:
#
#   1. checks free scratch disk (OTARO_CONTAINER_NEED_GB, 10 by default) and
#      installs the container tools (Debian packages: podman, runc, buildah,
#      debootstrap, netavark);
#   2. builds the host's gRPC client (bazel build //client:otaro) and makes
#      local debian:12 / debian:12-slim base images with debootstrap (no
#      registry is used), then `podman build` of the CPU image;
#   3. converts the quick start's model (tools/fetch_default_model.sh) with the
#      image's own `otaro convert` into a scratch folder;
#   4. runs the image's ENTRYPOINT with a token file, the model and a store
#      volume, gRPC / metrics / OpenAI ports published on random loopback ports;
#   5. checks: healthy by the image's HEALTHCHECK, /readyz, gRPC generate with
#      and without the token, the OpenAI API with and without the token, a
#      drained `podman stop` exiting 0, and unhealthy without a model.
#
# Each step and check prints one "PASS ..." or "FAIL ..." line; a failed step
# prints the tail of its log on stderr and the checks it leaves unrun as FAIL.
# The last line is "container: N passed, M failed"; the exit status is 1 when
# anything failed. Everything podman stores lives in a private scratch folder
# (its own storage.conf and containers.conf), removed on exit with every
# container and image in it. Measured on 2 cores shared with a training run:
# 6 to 9 minutes in all, 5 to 8 of them the image build (always cold: nothing
# is kept), 3 to 5 GB of scratch at the peak.
#
# Environment:
#   OTARO_CONTAINER_SCRATCH  parent of the scratch folder (default /var/tmp);
#                            not inside the checkout, which is the build context
#   OTARO_CONTAINER_NEED_GB  free space required there (default 10)
#   OTARO_CONTAINER_MIRROR   Debian mirror for debootstrap (default: the one apt
#                            uses for bookworm, from /etc/apt/sources.list[.d])
#
# Needs root (rootful podman, debootstrap); re-runs itself with sudo otherwise.
#
# The packages are installed here rather than by tools/install_deps.sh: that
# script is also the image's build stage (Dockerfile: RUN bash
# tools/install_deps.sh), which has no use for a container engine, and the
# quick start does not need one either.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
checkout=$PWD

NEED_GB=${OTARO_CONTAINER_NEED_GB:-10}
SCRATCH_PARENT=${OTARO_CONTAINER_SCRATCH:-/var/tmp}
PACKAGES=(podman runc buildah debootstrap netavark iptables curl python3)
IMAGE=localhost/otaro:cpu
# The image's ports (deploy/docker/otaro.yaml).
GRPC_PORT=50051
METRICS_PORT=9464
HTTP_PORT=8000

passed=0
failed=0
scratch=""          # the private scratch folder (mktemp), removed on exit
sampler_pid=""      # the background disk sampler
start_seconds=$SECONDS

# --- reporting ---------------------------------------------------------------

pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
note() { echo "container: $*"; }

# Prints the last lines of a step's log on stderr (the reason of a FAIL).
show_log() {
  local log=$1
  [ -f "$log" ] || return 0
  echo "--- last lines of $(basename "$log") ---" >&2
  tail -n 40 "$log" >&2
  echo "---" >&2
}

# Marks the named checks as failed because an earlier step did not work, then
# ends the run (the EXIT trap cleans up and prints the count).
abort_with_unrun() {
  local reason=$1
  shift
  local check
  for check in "$@"; do fail "$check: not run ($reason)"; done
  exit 1
}

# --- clean-up (always, by the EXIT trap) ---------------------------------------

# Removes every container, volume and image of the private storage, unmounts
# what containers/storage left mounted under the scratch folder, deletes it.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null; fi
  if [ -n "$scratch" ] && [ -d "$scratch" ]; then
    report_disk_peak
    # Only ever the private storage: CONTAINERS_STORAGE_CONF points into $scratch.
    if [ "${CONTAINERS_STORAGE_CONF:-}" = "$scratch/storage.conf" ]; then
      podman rm --all --force --time 0 >/dev/null 2>&1
      podman volume rm --all --force >/dev/null 2>&1
      podman rmi --all --force >/dev/null 2>&1
      restore_host_network
    fi
    # Deepest mount points first (overlay layers, then the storage's own bind mount).
    local mount_point
    while read -r mount_point; do
      umount "$mount_point" 2>/dev/null || umount -l "$mount_point" 2>/dev/null
    done < <(awk -v s="$scratch/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    rm -rf --one-file-system "$scratch" 2>/dev/null
    if [ -d "$scratch" ]; then
      echo "container_check: could not remove $scratch" >&2
      failed=$((failed + 1))
      echo "FAIL clean-up: $scratch is left behind"
    fi
  fi
  # Interrupted (INT, TERM) between checks: the count must still say it failed.
  if [ $status -ne 0 ] && [ $failed -eq 0 ]; then fail "run: ended early (exit status $status)"; fi
  note "total $((SECONDS - start_seconds)) s"
  echo "container: $passed passed, $failed failed"
  if [ $failed -ne 0 ]; then exit 1; fi
  exit 0
}

# --- host network state ----------------------------------------------------------

# netavark (podman's network) adds iptables chains NETAVARK-* / NETAVARK_* with
# jumps from the built-in chains, and turns on IPv4 forwarding. What this run
# added is taken away again; what was there before it is left alone.
ip_forward_before=""
netavark_chains_before=""

record_host_network() {
  ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null)
  netavark_chains_before=$( { iptables -t nat -S; iptables -t filter -S; } 2>/dev/null \
    | grep -c '^-N NETAVARK[-_]')
}

# Deletes the jumps into netavark's chains, then the chains, in both tables.
remove_netavark_chains() {
  local table rule chain
  for table in nat filter; do
    while read -r rule; do
      # eval: a rule as iptables -S prints it (quoted comments) turned into its -D
      eval iptables -t "$table" "${rule/#-A /-D }"
    done < <(iptables -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j NETAVARK[-_]' \
      | grep -vE '^-A NETAVARK[-_]')
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N NETAVARK[-_]/ {print $2}'); do
      iptables -t "$table" -F "$chain"
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N NETAVARK[-_]/ {print $2}'); do
      iptables -t "$table" -X "$chain"
    done
  done
}

restore_host_network() {
  if [ "$netavark_chains_before" = 0 ]; then remove_netavark_chains 2>/dev/null; fi
  if [ "$ip_forward_before" = 0 ]; then echo 0 >/proc/sys/net/ipv4/ip_forward; fi
}

# --- disk ------------------------------------------------------------------------

free_gb() { df -Pk "$1" | awk 'NR == 2 {printf "%d", $4 / 1048576}'; }
used_kb() { df -Pk "$1" | awk 'NR == 2 {print $3}'; }

# Samples the scratch filesystem's used space every 5 s; the highest value lands
# in $scratch/disk_peak_kb. A filesystem delta, so other writers add to it.
start_disk_sampler() {
  local base
  base=$(used_kb "$scratch")
  echo "$base" >"$scratch/disk_base_kb"
  echo "$base" >"$scratch/disk_peak_kb"
  (
    peak=$base
    while sleep 5; do
      now=$(used_kb "$scratch") || exit 0
      if [ "$now" -gt "$peak" ]; then peak=$now; echo "$peak" >"$scratch/disk_peak_kb"; fi
    done
  ) &
  sampler_pid=$!
}

report_disk_peak() {
  [ -f "$scratch/disk_peak_kb" ] || return 0
  local base peak
  base=$(cat "$scratch/disk_base_kb")
  peak=$(cat "$scratch/disk_peak_kb")
  note "disk peak $(awk -v d=$((peak - base)) 'BEGIN {printf "%.1f", d / 1048576}') GB" \
    "above the start on $(df -P "$scratch" | awk 'NR == 2 {print $6}')" \
    "(5 s samples of the filesystem)"
}

# Fails (never skips) when the scratch filesystem has less than NEED_GB free.
check_disk() {
  local free parent
  mkdir -p "$SCRATCH_PARENT"
  parent=$(cd "$SCRATCH_PARENT" && pwd -P)
  # Inside the checkout, podman's storage would become part of the build context.
  if [[ "$parent/" == "$(pwd -P)/"* ]]; then
    fail "disk: the scratch folder $SCRATCH_PARENT is inside the checkout (the build context)"
    return 1
  fi
  free=$(free_gb "$SCRATCH_PARENT")
  if [ "$free" -lt "$NEED_GB" ]; then
    fail "disk: only $free GB free in $SCRATCH_PARENT, the image build needs $NEED_GB GB" \
      "(set OTARO_CONTAINER_SCRATCH to a larger filesystem)"
    return 1
  fi
  pass "disk: $free GB free in $SCRATCH_PARENT (need $NEED_GB GB)"
}

# --- set-up --------------------------------------------------------------------

# Re-runs the script as root: rootful podman and debootstrap need it.
ensure_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  if command -v sudo >/dev/null; then exec sudo -E bash "$checkout/tools/container_check.sh" "$@"; fi
  fail "root: rootful podman and debootstrap need root, and sudo is not installed"
  exit 1
}

# Installs the container tools from Debian (only what is missing).
install_packages() {
  local log=$scratch/apt.log missing=() package
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
      show_log "$log"
      fail "packages: apt-get install ${missing[*]} failed"
      return 1
    fi
  fi
  pass "packages: ${PACKAGES[*]} installed ($(podman --version))"
}

# A private podman: storage (overlay) and run state in the scratch folder, runc
# (crun refuses hybrid cgroups), ulimits within this machine's hard limits.
configure_podman() {
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  # podman caps its own nproc at 32768.
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  mkdir -p "$scratch/graph" "$scratch/run" "$scratch/tmp"
  cat >"$scratch/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$scratch/graph"
runroot = "$scratch/run"
EOF
  cat >"$scratch/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$scratch/run/events.log"
tmp_dir = "$scratch/tmp"
[network]
network_backend = "netavark"
EOF
  export CONTAINERS_STORAGE_CONF=$scratch/storage.conf
  export CONTAINERS_CONF=$scratch/containers.conf
}

# The host's client: `bazel build //client:otaro` in this checkout, with the
# config tools/test.sh uses (so CI reuses the objects). Sets $client.
build_client() {
  local log=$scratch/client_build.log config=() started=$SECONDS
  [ -x /usr/local/cuda/bin/nvcc ] || config=(--config=cpu)
  if ! bazel build "${config[@]}" //client:otaro >"$log" 2>&1; then
    show_log "$log"
    fail "client: bazel build //client:otaro failed"
    return 1
  fi
  client="$(bazel info "${config[@]}" bazel-bin 2>/dev/null)/client/otaro"
  pass "client: bazel build //client:otaro in $((SECONDS - started)) s"
}

# The Debian mirror apt uses for bookworm (deb822 .sources or one-line .list).
find_mirror() {
  if [ -n "${OTARO_CONTAINER_MIRROR:-}" ]; then echo "$OTARO_CONTAINER_MIRROR"; return; fi
  python3 - /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources <<'PY'
import os, sys
for path in sys.argv[1:]:
    if not os.path.isfile(path):
        continue
    text = open(path).read()
    if path.endswith(".sources"):
        for stanza in text.split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith("#"):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and "bookworm" in fields.get("suites", []) \
                    and fields.get("uris") and fields.get("enabled", ["yes"]) != ["no"]:
                print(fields["uris"][0]); sys.exit(0)
    else:
        for line in text.splitlines():
            words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                print(words[1]); sys.exit(0)
sys.exit("no bookworm mirror in /etc/apt/sources.list[.d]")
PY
}

# debian:12 and debian:12-slim as local images: a minbase debootstrap of
# bookworm from the host's mirror, with the host's apt sources for that mirror
# (bookworm-updates, security) and no Valid-Until check (a snapshot mirror may
# serve Release files past it).
make_base_images() {
  local log=$scratch/debootstrap.log rootfs=$scratch/rootfs mirror started=$SECONDS source
  if ! mirror=$(find_mirror 2>"$log"); then
    show_log "$log"
    fail "base images: no Debian mirror found for debootstrap (set OTARO_CONTAINER_MIRROR)"
    return 1
  fi
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >>"$log" 2>&1; then
    show_log "$log"
    fail "base images: debootstrap bookworm from $mirror failed"
    return 1
  fi
  for source in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$source" ] && grep -qF "$mirror" "$source"; then
      cp "$source" "$rootfs/etc/apt/sources.list.d/host-$(basename "$source")"
      rm -f "$rootfs/etc/apt/sources.list"   # debootstrap's own line for the same mirror
    fi
  done
  echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99no-valid-until"
  if ! { tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - docker.io/library/debian:12 \
      && podman tag docker.io/library/debian:12 docker.io/library/debian:12-slim; } >>"$log" 2>&1; then
    show_log "$log"
    fail "base images: podman import of the debootstrap tree failed"
    return 1
  fi
  rm -rf "$rootfs"
  pass "base images: debian:12, debian:12-slim from debootstrap of $mirror in $((SECONDS - started)) s"
}

# The CPU image, as the Dockerfile's header says. --format docker keeps
# HEALTHCHECK (OCI drops it); the ignore file is the one BuildKit reads beside
# the Dockerfile; --layers=false commits each stage once instead of every step
# (no layer cache survives this script anyway), which saves writing the 2.5 GB
# build stage again and again.
build_image() {
  local log=$scratch/build.log started=$SECONDS size
  if ! podman build --pull=never --format docker --layers=false -f deploy/docker/Dockerfile \
      --ignorefile deploy/docker/Dockerfile.dockerignore --build-arg VARIANT=cpu \
      -t "$IMAGE" "$checkout" >"$log" 2>&1; then
    show_log "$log"
    fail "image build: podman build of deploy/docker/Dockerfile (VARIANT=cpu) failed"
    return 1
  fi
  size=$(podman image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d", $1 / 1048576}')
  pass "image build: $IMAGE, $size MB, in $((SECONDS - started)) s"
}

# model.sefp in $scratch/models (owned by the image's uid 10001), converted from
# the quick start's GGUF by the image's own `otaro convert`.
convert_model() {
  local log=$scratch/convert.log gguf started=$SECONDS
  if ! gguf=$(bash tools/fetch_default_model.sh 2>"$log"); then
    show_log "$log"
    fail "convert: tools/fetch_default_model.sh failed"
    return 1
  fi
  install -d -o 10001 -g 10001 -m 0755 "$scratch/models"
  if ! podman run --rm --network none --entrypoint /opt/otaro/bin/otaro \
      -v "$gguf:/in/model.gguf:ro" -v "$scratch/models:/models" \
      "$IMAGE" convert /in/model.gguf /models/model.sefp >>"$log" 2>&1 \
      || [ ! -s "$scratch/models/model.sefp" ]; then
    show_log "$log"
    fail "convert: otaro convert in the image did not write model.sefp"
    return 1
  fi
  pass "convert: $(basename "$gguf") -> model.sefp" \
    "($(du -m "$scratch/models/model.sefp" | cut -f1) MB) by the image's otaro convert in $((SECONDS - started)) s"
}

# A token file as otaro.yaml expects it: `<token> <role> <name>`, uid 10001, 0400.
make_token_file() {
  token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
  install -d -m 0755 "$scratch/secrets"
  printf '%s generate container-check\n' "$token" >"$scratch/secrets/tokens"
  chown 10001:10001 "$scratch/secrets/tokens"
  chmod 0400 "$scratch/secrets/tokens"
}

# --- the running container ------------------------------------------------------

# The host port podman published for a container port (127.0.0.1:PORT -> PORT).
host_port() { podman port "$1" "$2/tcp" | head -n 1 | sed 's/.*://'; }

is_running() { [ "$(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# Starts the ENTRYPOINT with the model (read-only), the token file and a store
# volume, every port published on a random loopback port.
start_server() {
  local log=$scratch/run.log
  if ! podman run -d --name otaro-check -p "127.0.0.1::$GRPC_PORT" \
      -p "127.0.0.1::$METRICS_PORT" -p "127.0.0.1::$HTTP_PORT" \
      -v "$scratch/models:/models:ro" -v otaro-check-store:/var/lib/otaro \
      -v "$scratch/secrets/tokens:/etc/otaro/secrets/tokens:ro" "$IMAGE" >"$log" 2>&1; then
    show_log "$log"
    fail "run: podman run of the image's ENTRYPOINT failed"
    return 1
  fi
  grpc=127.0.0.1:$(host_port otaro-check $GRPC_PORT)
  metrics=127.0.0.1:$(host_port otaro-check $METRICS_PORT)
  http=127.0.0.1:$(host_port otaro-check $HTTP_PORT)
  note "server container up: gRPC $grpc, metrics $metrics, OpenAI API $http"
}

# Healthy by the image's own HEALTHCHECK (otaro health on Inference), polled
# every 2 s for up to 120 s (the HEALTHCHECK's start period).
check_healthy() {
  local started=$SECONDS
  while [ $((SECONDS - started)) -lt 120 ]; do
    if podman healthcheck run otaro-check >/dev/null 2>&1; then
      pass "healthcheck: healthy after $((SECONDS - started)) s (podman healthcheck run)"
      return 0
    fi
    if ! is_running otaro-check; then break; fi
    sleep 2
  done
  podman logs otaro-check 2>&1 | tail -n 40 >&2
  fail "healthcheck: not healthy within 120 s (running: $(is_running otaro-check && echo yes || echo no))"
  return 1
}

# HTTP status of a URL (000 when unreachable); extra arguments go to curl.
http_status() { curl -s -o "$scratch/body" -w '%{http_code}' --max-time 60 "$@"; }

check_readyz() {
  local code
  code=$(http_status "http://$metrics/readyz")
  if [ "$code" = 200 ]; then pass "readyz: 200 on the published metrics port"
  else fail "readyz: HTTP $code on http://$metrics/readyz (want 200)"; fi
}

check_grpc_with_token() {
  local out rc=0
  out=$("$client" generate --server "$grpc" --token "$token" --max_tokens 8 \
    --timeout_seconds 60 "Hello" 2>"$scratch/grpc.err") || rc=$?
  if [ $rc -eq 0 ] && [ -n "$out" ]; then
    pass "grpc generate with the token: \"$(tr '\n' ' ' <<<"$out" | cut -c1-60)\""
  else
    fail "grpc generate with the token: exit $rc, $(tail -n 1 "$scratch/grpc.err")"
  fi
}

# Refused with UNAUTHENTICATED (the client's words for it: "wants a valid
# token", client/connection.cc), and counted by the server as a missing token.
check_grpc_without_token() {
  local rc=0 denied
  "$client" generate --server "$grpc" --max_tokens 8 --timeout_seconds 30 "Hello" \
    >/dev/null 2>"$scratch/grpc.err" || rc=$?
  curl -s --max-time 10 "http://$metrics/metrics" >"$scratch/metrics.txt"
  denied=$(awk '/^otaro_auth_denied_total\{reason="missing_token"\}/ {print $2}' "$scratch/metrics.txt")
  if [ $rc -ne 0 ] && grep -q "wants a valid token" "$scratch/grpc.err" && [ "${denied:-0}" != 0 ]; then
    pass "grpc generate without a token: refused (UNAUTHENTICATED;" \
      "otaro_auth_denied_total{reason=\"missing_token\"} $denied)"
  else
    fail "grpc generate without a token: exit $rc, $(tail -n 1 "$scratch/grpc.err")," \
      "missing_token count ${denied:-none} (want UNAUTHENTICATED)"
  fi
}

CHAT_BODY='{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"precision":"E5M4"}'

# choices[0].message.content of a chat completion in $scratch/body (a string).
chat_content() {
  python3 -c 'import json, sys
content = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
assert isinstance(content, str)
print(content.replace("\n", " ")[:60])' "$scratch/body" 2>/dev/null
}

check_openai_with_token() {
  local code content
  code=$(http_status "http://$http/v1/chat/completions" -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $token" -d "$CHAT_BODY")
  if [ "$code" = 200 ] && content=$(chat_content); then
    pass "openai chat with the token: 200, choices[0].message.content \"$content\""
  else
    fail "openai chat with the token: HTTP $code, body $(head -c 200 "$scratch/body")"
  fi
}

check_openai_without_token() {
  local code
  code=$(http_status "http://$http/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "$CHAT_BODY")
  if [ "$code" = 401 ]; then pass "openai chat without a token: 401"
  else fail "openai chat without a token: HTTP $code (want 401), body $(head -c 200 "$scratch/body")"; fi
}

# SIGTERM drains (drain_delay 5 s + shutdown_timeout 30 s < 40 s), exit code 0.
check_stop() {
  local started=$SECONDS exit_code
  podman stop -t 40 otaro-check >/dev/null 2>&1
  exit_code=$(podman inspect -f '{{.State.ExitCode}}' otaro-check 2>/dev/null)
  if [ "$exit_code" = 0 ]; then
    pass "stop: podman stop -t 40 drained, exit code 0 after $((SECONDS - started)) s"
  else
    podman logs otaro-check 2>&1 | tail -n 20 >&2
    fail "stop: exit code ${exit_code:-unknown} after $((SECONDS - started)) s (want 0)"
  fi
}

# Polls a container for up to 60 s until its server answers /healthz on the
# published metrics port or it exits; prints the last /healthz status.
wait_alive() {
  local name=$1 port started=$SECONDS code=000
  port=$(host_port "$name" $METRICS_PORT)
  while [ $((SECONDS - started)) -lt 60 ] && is_running "$name"; do
    code=$(http_status "http://127.0.0.1:$port/healthz")
    [ "$code" = 200 ] && break
    sleep 1
  done
  echo "$code"
}

# A container that has no model to serve must never be reported healthy.
# Started like the server container but with nothing mounted at /models (and a
# fresh store volume): otaro.yaml's model.path does not exist, so the server
# refuses to start (it records /models/model.sefp as version 1 of the empty
# store, cannot load it, exits 1 naming the path). Should it ever stay up
# instead, it must be alive but unhealthy.
check_missing_model() {
  local name=otaro-check-nomodel code rc=0 exit_code
  if ! podman run -d --name $name -p "127.0.0.1::$METRICS_PORT" \
      -v "$scratch/secrets/tokens:/etc/otaro/secrets/tokens:ro" "$IMAGE" >"$scratch/nomodel.log" 2>&1; then
    show_log "$scratch/nomodel.log"
    fail "missing model: podman run failed"
    return 1
  fi
  code=$(wait_alive $name)
  podman healthcheck run $name >/dev/null 2>&1 || rc=$?
  if is_running $name; then
    if [ "$code" = 200 ] && [ $rc -eq 1 ]; then
      pass "missing model: alive (/healthz 200) but unhealthy (podman healthcheck run exit 1)"
    else
      fail "missing model: running, /healthz $code, healthcheck exit $rc (want 200 and 1)"
    fi
  else
    exit_code=$(podman inspect -f '{{.State.ExitCode}}' $name 2>/dev/null)
    if [ "${exit_code:-0}" != 0 ] && [ $rc -ne 0 ] \
        && podman logs $name 2>&1 | grep -q "/models/model.sefp does not exist"; then
      pass "missing model: never healthy: the server refused to start, exit code $exit_code," \
        "\"model path /models/model.sefp does not exist\""
    else
      podman logs $name 2>&1 | tail -n 20 >&2
      fail "missing model: exited with code ${exit_code:-unknown}, healthcheck exit $rc" \
        "(want a non-zero exit naming /models/model.sefp)"
    fi
  fi
  podman rm --force --volumes --time 0 $name >/dev/null 2>&1
}

# No model configured at all (--set model.path=, a fresh store), as
# deploy_test does on the staged tree: the server runs, /healthz 200, /readyz
# not 200, and the image's HEALTHCHECK exits 1.
check_unhealthy_without_model() {
  local name=otaro-check-nomodel code rc=0 ready port
  if ! podman run -d --name $name -p "127.0.0.1::$METRICS_PORT" \
      -v "$scratch/secrets/tokens:/etc/otaro/secrets/tokens:ro" "$IMAGE" \
      --set model.path= >"$scratch/nomodel.log" 2>&1; then
    show_log "$scratch/nomodel.log"
    fail "no model: podman run failed"
    return 1
  fi
  code=$(wait_alive $name)
  port=$(host_port $name $METRICS_PORT)
  ready=$(http_status "http://127.0.0.1:$port/readyz")
  podman healthcheck run $name >/dev/null 2>&1 || rc=$?
  if is_running $name && [ "$code" = 200 ] && [ "$ready" != 200 ] && [ $rc -eq 1 ]; then
    pass "no model: alive (/healthz 200, /readyz $ready) but unhealthy (podman healthcheck run exit 1)"
  else
    podman logs $name 2>&1 | tail -n 20 >&2
    fail "no model: /healthz $code, /readyz $ready, healthcheck exit $rc (want 200, not 200, 1)"
  fi
  podman rm --force --volumes --time 0 $name >/dev/null 2>&1
}

# --- main -------------------------------------------------------------------------

RUN_CHECKS=(healthcheck readyz "grpc generate with the token" "grpc generate without a token"
  "openai chat with the token" "openai chat without a token" stop "missing model" "no model")

main() {
  # Set first, so that every way out prints the count (exec to sudo replaces it).
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  ensure_root "$@"
  check_disk || abort_with_unrun "no usable scratch folder" packages client "base images" "image build" \
    convert "${RUN_CHECKS[@]}"
  scratch=$(mktemp -d "$SCRATCH_PARENT/otaro-container.XXXXXX")
  note "scratch folder $scratch"
  record_host_network
  start_disk_sampler
  install_packages || abort_with_unrun "packages missing" client "base images" "image build" \
    convert "${RUN_CHECKS[@]}"
  configure_podman
  build_client || abort_with_unrun "no client" "base images" "image build" convert "${RUN_CHECKS[@]}"
  make_base_images || abort_with_unrun "no base image" "image build" convert "${RUN_CHECKS[@]}"
  build_image || abort_with_unrun "no image" convert "${RUN_CHECKS[@]}"
  convert_model || abort_with_unrun "no model" "${RUN_CHECKS[@]}"
  make_token_file
  start_server || abort_with_unrun "no server container" "${RUN_CHECKS[@]}"
  if check_healthy; then
    check_readyz
    check_grpc_with_token
    check_grpc_without_token
    check_openai_with_token
    check_openai_without_token
  else
    local check
    for check in "${RUN_CHECKS[@]:1:5}"; do fail "$check: not run (the server never became healthy)"; done
  fi
  check_stop
  check_missing_model
  check_unhealthy_without_model
}

main "$@"
