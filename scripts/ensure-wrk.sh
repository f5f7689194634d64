#!/usr/bin/env bash
# The HTTP load generator for the callback benchmark (Debian's wrk).
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then echo "install Debian's 'wrk' to run the benchmarks" >&2; exit 1; fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
