#!/usr/bin/env bash
# Installs the Debian packages sopflow builds and runs with, if missing.
set -euo pipefail
# SOPFLOW_DEPS=build (the Dockerfile's build stage): only what compiles the
# services. Default: also what the tests and the demo run against.
packages=(
  cmake g++ make pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libnats-dev libhiredis-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libjemalloc-dev libspdlog-dev libfmt-dev libssl-dev libcurl4-openssl-dev libcpp-httplib-dev libxlsxwriter-dev
)
if [ "${SOPFLOW_DEPS:-all}" != build ]; then
  packages+=(ccache nats-server redis-server redis-tools libgtest-dev libgmock-dev python3-aiosmtpd openssl)
  # The manifest test renders kustomize with kubectl (any kubectl will do; Debian's
  # if none is there) and validates with node (tests/deploy).
  command -v kubectl >/dev/null || packages+=(kubernetes-client)
  command -v node >/dev/null || packages+=(nodejs)
  command -v npm >/dev/null || packages+=(npm)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The manifest validator's node packages, pinned by tests/deploy/package-lock.json.
if [ "${SOPFLOW_DEPS:-all}" != build ] && [ ! -d "$(dirname "$0")/../tests/deploy/node_modules" ]; then
  (cd "$(dirname "$0")/../tests/deploy" && npm ci --no-audit --no-fund --loglevel=error)
fi
