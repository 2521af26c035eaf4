#!/usr/bin/env bash
# Debian packages the project needs: the PC/SC stack without hardware (pcscd + vpcd), what pyscard
# builds with, third-party card clients (scriptor, opensc-tool) and wrk for benchmarks.
# As root: installs what is missing. Otherwise: prints the exact command and fails.
set -euo pipefail
PKGS=(pcscd vsmartcard-vpcd pcsc-tools opensc swig libpcsclite-dev wrk postgresql-client docker-compose)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing Debian packages; run as root:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
