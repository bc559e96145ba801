#!/usr/bin/env bash
# The deployment as ops apply it, checked offline:
#  - both kustomize overlays render (kubectl kustomize) and every object
#    passes validate.mjs (Kubernetes schemas, strict fields, sopflow's rules,
#    every SOPFLOW_* variable known to its binary);
#  - the validator is not blind: broken.yaml fails with each planted mistake;
#  - the Dockerfile's runtime stage installs the Debian package of every
#    shared library the service binaries link.
# Usage: check_deploy.sh <build dir> [--no-dockerfile]  (sanitizer builds link
# libasan and more directly, so their libraries say nothing of the image's)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(cd "${1:?build dir}" && pwd)"
failed=0
fail() { echo "FAIL: $*"; failed=1; }

export SOPFLOW_BINARIES="router=$build/services/router/sopflow-router,notifier=$build/services/notifier/sopflow-notifier,aggregator=$build/services/aggregator/sopflow-aggregator,archiver=$build/services/archiver/sopflow-archiver"

for overlay in dev prod; do
  rendered="$(mktemp)"
  if ! kubectl kustomize "$root/deploy/overlays/$overlay" >"$rendered" 2>"$rendered.err"; then
    fail "kustomize $overlay: $(grep -v Warning "$rendered.err")"
  else
    external=""
    [ "$overlay" = prod ] && external="sopflow-tokens"  # made by ops, never committed
    EXTERNAL_SECRETS="$external" node "$here/validate.mjs" "$rendered" && echo "ok: overlay $overlay" || fail "overlay $overlay"
  fi
  rm -f "$rendered" "$rendered.err"
done

out="$(node "$here/validate.mjs" "$here/broken.yaml" 2>&1)" && fail "broken.yaml passed validation"
for expected in \
  'Deployment/broken: /spec/replicas: must be integer' \
  'unknown field "volumeMount" in V1Container' \
  'readinessProbe: must be a gRPC probe' \
  'resources/requests/memory: is required' \
  'resources/limits/cpu: is required' \
  'ConfigMap missing-config does not exist' \
  'no PodDisruptionBudget covers it' \
  'no HorizontalPodAutoscaler scales it' \
  'Service/nothing-behind: /spec/selector: selects no pods' \
  'router reads no SOPFLOW_REDIS_ADDR'; do
  grep -qF -- "$expected" <<<"$out" || fail "validate.mjs missed: $expected"
done
[ $failed -eq 0 ] && echo "ok: broken.yaml rejected for each planted mistake"

[ "${2:-}" = --no-dockerfile ] && exit $failed
# Runtime packages of the Dockerfile vs what the binaries link.
listed="$(sed -n '/runtime-packages: begin/,/runtime-packages: end/p' "$root/deploy/Dockerfile" | grep -oE '^\s+lib[a-z0-9.+-]+' | tr -d ' ')"
for pkg in $listed; do
  apt-cache show "$pkg" >/dev/null 2>&1 || fail "deploy/Dockerfile installs $pkg, which Debian does not have"
done
for bin in "$build"/services/*/sopflow-* "$build/tools/sopctl/sopctl"; do
  for lib in $(objdump -p "$bin" | awk '/NEEDED/{print $2}'); do
    path="$(ldconfig -p | awk -v l="$lib" '$1==l{print $NF; exit}')"
    [ -n "$path" ] || { fail "$bin: $lib not found"; continue; }
    real="$(readlink -f "$path")"
    # usrmerge: dpkg may know the file by its /lib name.
    pkg="$( (dpkg -S "$real" || dpkg -S "${real#/usr}") 2>/dev/null | head -1 | cut -d: -f1)"
    case "$pkg" in libc6|libstdc++6|libgcc-s1) continue ;; esac  # in debian:bookworm-slim
    grep -qx "$pkg" <<<"$listed" || fail "deploy/Dockerfile runtime stage lacks $pkg ($lib, needed by $(basename "$bin"))"
  done
done
[ $failed -eq 0 ] && echo "ok: the Dockerfile's runtime packages cover every linked library"
exit $failed
