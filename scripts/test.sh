#!/usr/bin/env bash
# Runs every Crescendo test on a Debian machine, first installing what the tests need and
# the machine lacks: Node.js and npm (for newman, which runs the RealWorld conformance
# collection) and newman itself. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v newman >/dev/null 2>&1; then
    echo "==> installing newman (npm)"
    $SUDO npm install -g --no-audit --no-fund newman@6
fi

echo "==> cargo test"
cargo test --workspace --locked "$@"
