#!/usr/bin/env bash
# Runs every Crescendo test on a Debian machine, first installing what the tests need and
# the machine lacks: PostgreSQL 15 (the tests start private servers from its binaries),
# HAProxy (the load-balancer tier), Redis (shared state and the cache tier), NATS with
# JetStream (the message queue), Varnish, its xkey module and hitch (the CDN edge),
# Prometheus with the node, PostgreSQL, Redis and Varnish exporters and Alertmanager (every
# topology's monitoring and alerting), gdnsd (the geo DNS of rung 8),
# Node.js and npm (for newman, which runs the RealWorld conformance collection), newman
# itself, and Chromium with its WebDriver (the end-to-end browser tests), s3s-fs (an
# S3-compatible server, built with cargo), the PyPI validators of the Kubernetes manifests
# (kubernetes-validate, check-jsonschema) in a Python virtual environment, and podman with
# what it needs to build and run the container images. Safe to run again: it installs only
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/sbin/nats-server ] || missing+=(nats-server)
[ -x /usr/sbin/varnishd ] || missing+=(varnish)
[ -x /usr/sbin/hitch ] || missing+=(hitch)
dpkg -s varnish-modules >/dev/null 2>&1 || missing+=(varnish-modules)
# rung 8: the geo DNS, and the network namespaces (`ip`, offloads turned off on their links)
[ -x /usr/sbin/gdnsd ] || missing+=(gdnsd)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
[ -x /usr/sbin/ethtool ] || missing+=(ethtool)
monitoring=(prometheus prometheus-node-exporter prometheus-postgres-exporter
    prometheus-redis-exporter prometheus-varnish-exporter prometheus-alertmanager)
for pkg in "${monitoring[@]}"; do
    [ -x "/usr/bin/$pkg" ] || missing+=("$pkg")
done
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Debian keeps venv's pip bootstrap in a package of its own
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    # install only: no service may start by itself (the tests start their own servers)
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # where a service manager ran the packages' services in spite of policy-rc.d, stop them
    # by name: each topology starts its own Prometheus, exporters and geo DNS (a system
    # gdnsd would hold port 53) on private addresses
    for svc in "${monitoring[@]}" gdnsd; do
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
            $SUDO systemctl disable --now "$svc"
        elif [ -x "/etc/init.d/$svc" ] && "/etc/init.d/$svc" status >/dev/null 2>&1; then
            $SUDO "/etc/init.d/$svc" stop
        fi
    done
fi
if ! command -v newman >/dev/null 2>&1; then
    echo "==> installing newman (npm)"
    $SUDO npm install -g --no-audit --no-fund newman@6
fi

# One build, never rebuilt piecemeal: incremental state would only take disk.
export CARGO_INCREMENTAL=0

# the S3-compatible server for the blob tests and rung 9 is a cargo binary (about 4 min)
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "==> installing s3s-fs 0.14.1 (cargo install)"
    cargo install --quiet --locked s3s-fs@0.14.1 --features binary
fi

# `crescendo kube`'s manifests are checked offline (crates/kube/tests/kube.rs) by
# kubernetes-validate (the Kubernetes API's schemas, bundled) and check-jsonschema (the CRDs'
# schemas in deploy/schemas/), kept in a virtual environment under the target directory,
# where the test looks for them
KUBE_PY="${CARGO_TARGET_DIR:-target}/py-kube"
if ! "$KUBE_PY/bin/kubernetes-validate" --version >/dev/null 2>&1 \
    || ! "$KUBE_PY/bin/check-jsonschema" --version >/dev/null 2>&1; then
    echo "==> installing kubernetes-validate and check-jsonschema (PyPI) into $KUBE_PY"
    python3 -m venv --clear "$KUBE_PY"
    "$KUBE_PY/bin/pip" install --quiet --disable-pip-version-check \
        kubernetes-validate==1.37.0 check-jsonschema==0.39.0
fi

# the podman test (crates/cli/tests/podman.rs) runs the rendered web Deployment under
# `podman play kube`: podman, buildah, debootstrap, runc and catatonit, and a containers.conf
# that works without systemd (scripts/podman-setup.sh); its images come from scripts/image.sh
. scripts/podman-setup.sh
podman_setup

echo "==> cargo fmt --check and cargo clippy (warnings are errors; no function over 100 lines)"
cargo fmt --all --check
cargo clippy --workspace --locked --quiet -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked "$@"

echo "==> the HTTP tests and the RealWorld collection again, on PostgreSQL"
# (--workspace keeps the build of the first pass: a narrower selection would re-resolve features)
# (tests that bring their own PostgreSQL servers ran in the first pass)
TEST_STORE=postgres cargo test --workspace --locked --test http --test conformance "$@" -- --skip replicas --skip tour --skip failover --skip web_refuses

echo "==> the HTTP tests again on a sharded store (a catalogue and three clusters)"
TEST_STORE=sharded cargo test --workspace --locked --test http "$@"

echo "==> the HTTP tests again with no cache (the read paths of several web nodes)"
TEST_CACHE=none cargo test --workspace --locked --test http "$@"

echo "==> the HTTP tests again on a ring of two Redis cache servers (the cache tier's read paths),"
echo "    with uploads kept on a private S3 server"
TEST_CACHE=redis TEST_BLOBS=s3 cargo test --workspace --locked --test http "$@"
