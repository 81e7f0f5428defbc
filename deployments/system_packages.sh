#!/usr/bin/env bash
# Make sure the Debian packages the platform (and the browser tests) need are installed.
# usage: system_packages.sh PACKAGE[:COMMAND] ...   e.g. haproxy redis-server:redis-server chromium
# As root, missing packages are installed with apt-get; otherwise this says what to install.
set -euo pipefail

missing=()
for spec in "$@"; do
  pkg=${spec%%:*}
  cmd=${spec#*:}
  [ "$cmd" = "$spec" ] && cmd=$pkg
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing system packages: ${missing[*]}" >&2
  echo "       install them with:  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
