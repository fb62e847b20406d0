#!/usr/bin/env bash
# Clang's thread-safety analysis (-Wthread-safety, as errors) over the code
# that shares state between threads: every ABSL_GUARDED_BY /
# ABSL_EXCLUSIVE_LOCKS_REQUIRED on an otaro::Mutex (common/mutex.h) or
# absl::Mutex is checked. GCC, which builds everything else, ignores these
# annotations. Compiles only (no linking, no tests) in an output base of its
# own, so the GCC build's cache is untouched. About 2 minutes cold on 2 cores.
# Prints "thread-safety: OK (clang -Wthread-safety, PACKAGES)" or the errors; exit 1 on any.
set -uo pipefail
cd "$(dirname "$0")/.."
packages=(//common/... //engine/runtime/... //engine/serving/... //server/...)
output_base="${XDG_CACHE_HOME:-$HOME/.cache}/otaro-clang-thread-safety"
log=$(mktemp)
# --symlink_prefix=/: no bazel-* links, which would otherwise point the
# workspace's bazel-bin/bazel-out at this output base (scripts that run
# bazel-out/k8-opt/bin/... would then find nothing, and `//...` would descend
# into the foreign bazel-<workspace> link).
if bazel --output_base="$output_base" build --symlink_prefix=/ --repo_env=CC=clang --config=cpu \
    --copt=-Wthread-safety --copt=-Werror=thread-safety \
    --output_groups=compilation_outputs "${packages[@]}" >"$log" 2>&1; then
  echo "thread-safety: OK (clang -Wthread-safety as errors over ${packages[*]})"
  rc=0
else
  grep -E "error:|warning:.*thread-safety" "$log" || tail -n 30 "$log"
  echo "thread-safety: FAILED (clang -Wthread-safety over ${packages[*]})"
  rc=1
fi
rm -f "$log"
# The second Bazel server is not needed once this is done.
bazel --output_base="$output_base" shutdown >/dev/null 2>&1 || true
exit $rc
