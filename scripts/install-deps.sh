#!/usr/bin/env bash
# Installs the Debian packages sopflow builds and runs with, if missing.
set -euo pipefail
packages=(
  cmake g++ make pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libnats-dev nats-server redis-server redis-tools libhiredis-dev
  libgtest-dev libgmock-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libspdlog-dev libfmt-dev libssl-dev libcurl4-openssl-dev libcpp-httplib-dev python3-aiosmtpd libxlsxwriter-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
