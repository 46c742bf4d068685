#!/usr/bin/env bash
# Debian packages the tests use (real Prometheus, promtool, Pushgateway, Lua for the
# Argo CD health check). Installed only when missing; needs root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
while read -r pkg bin; do
  [ -z "$pkg" ] || [ "${pkg:0:1}" = "#" ] && continue
  case $bin in
    lib*.so*) /sbin/ldconfig -p | grep -qF "$bin" || missing+=("$pkg") ;;  # a shared library
    *) command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done <scripts/apt-packages.txt
[ ${#missing[@]} -eq 0 ] && exit 0
echo "==> apt-get install ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian prometheus packages start services; tests start their own on loopback.
for svc in prometheus prometheus-pushgateway prometheus-node-exporter; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
