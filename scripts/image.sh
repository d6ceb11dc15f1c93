#!/usr/bin/env bash
# Builds Crescendo's container image with podman, from a Debian bookworm base made on this
# machine by debootstrap: nothing is pulled from a registry.
#
#   scripts/image.sh [--engines]      the base (when absent), `cargo build --release`, and
#                                     crescendo:VERSION; --engines adds the engine images
#   scripts/image.sh base             the base image only (kept when it exists)
#   scripts/image.sh crescendo [--binary PATH] [--tag NAME]
#                                     the Crescendo image from PATH (default: a release build)
#   scripts/image.sh postgres|redis|nats|varnish [--tag NAME]
#                                     one engine image: Debian's package on the same base
#
# Images: localhost/crescendo-base:bookworm (debootstrap --variant=minbase, plus
# ca-certificates for S3 over HTTPS), localhost/crescendo:VERSION (the binary stripped of
# debug info, user crescendo with uid/gid 10001, OCI labels), and with --engines
# localhost/crescendo-postgres:15, -redis:7.0, -nats:2.9 and -varnish:7.1.
# Needs root (debootstrap, podman's storage); installs podman, buildah, debootstrap and runc
# when missing. The cargo build honours CARGO_TARGET_DIR and, when set, runs under
# `flock "$CARGO_LOCK"` (a machine shared by several builds).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/podman-setup.sh

BASE=localhost/crescendo-base:bookworm
# the user the image runs as: crescendo_kube::APP_UID, which the manifests' securityContext names
APP_UID=10001
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# where the source is published (CRESCENDO_IMAGE_SOURCE, else the git remote; none: no label)
SOURCE=${CRESCENDO_IMAGE_SOURCE:-$(git config --get remote.origin.url 2>/dev/null || true)}
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# temporary directories (a root file system, build contexts), removed however the script ends
SCRATCH=()
trap 'rm -rf "${SCRATCH[@]}"' EXIT

# Sets variable $1 to a new temporary directory under /var/tmp, removed at exit.
scratch() {
    local dir
    dir=$(mktemp -d /var/tmp/crescendo-image.XXXXXX)
    SCRATCH+=("$dir")
    printf -v "$1" '%s' "$dir"
}

# The Debian mirror apt uses here (deb822 or one-line format), else Debian's own.
mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources \
            | grep -v security | head -n 1)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $3 ~ /^bookworm/ { print $2; exit }' /etc/apt/sources.list)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# The OCI labels of an image titled $1 with description $2, as Containerfile lines.
labels() {
    cat <<EOF
LABEL org.opencontainers.image.title="$1" \\
      org.opencontainers.image.description="$2" \\
      org.opencontainers.image.version="$VERSION" \\
      org.opencontainers.image.revision="$REVISION" \\
$([ -z "$SOURCE" ] || printf '      org.opencontainers.image.source="%s" \\\n' "$SOURCE")
      org.opencontainers.image.created="$CREATED" \\
      org.opencontainers.image.licenses="MIT" \\
      org.opencontainers.image.base.name="$BASE"
EOF
}

build_base() {
    if podman image exists "$BASE"; then
        echo "==> $BASE exists (podman rmi it to make it again)"
        return
    fi
    local root
    scratch root
    echo "==> debootstrap --variant=minbase bookworm from $(mirror)"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$(mirror)" >/dev/null
    # apt inside later builds reads the same sources as this machine (updates, security)
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
        rm -f "$root/etc/apt/sources.list"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
    echo "==> importing $BASE"
    tar -C "$root" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
}

# Builds image $1 from the Containerfile on stdin, with context directory $2.
build() {
    local before
    before=$(podman image inspect --format '{{.Id}}' "$1" 2>/dev/null || true)
    podman build --pull=never --layers=false --force-rm --format oci -q -t "$1" -f - "$2" >/dev/null
    # the image this one replaces, unless another tag or a container still uses it
    if [ -n "$before" ] && [ "$before" != "$(podman image inspect --format '{{.Id}}' "$1")" ]; then
        podman rmi "$before" >/dev/null 2>&1 || true
    fi
    echo "==> built $1 ($(podman image inspect --format '{{.Size}}' "$1") bytes)"
}

build_crescendo() {
    local binary="" tag="localhost/crescendo:$VERSION"
    while [ $# -gt 0 ]; do
        case "$1" in
            --binary) binary=$2; shift 2 ;;
            --tag) tag=$2; shift 2 ;;
            *) echo "unknown option $1" >&2; exit 2 ;;
        esac
    done
    if [ -z "$binary" ]; then
        echo "==> cargo build --release -p crescendo-cli"
        local lock=()
        [ -z "${CARGO_LOCK:-}" ] || lock=(flock "$CARGO_LOCK")
        "${lock[@]}" cargo build --release --locked -q -p crescendo-cli
        binary="${CARGO_TARGET_DIR:-target}/release/crescendo"
    fi
    local ctx
    scratch ctx
    # debug info out, symbols kept: a panic's backtrace still names its functions
    objcopy --strip-debug "$binary" "$ctx/crescendo"
    build "$tag" "$ctx" <<EOF
FROM $BASE
COPY crescendo /usr/local/bin/crescendo
RUN groupadd --gid $APP_UID crescendo \\
 && useradd --uid $APP_UID --gid $APP_UID --home-dir /var/lib/crescendo --no-create-home \\
      --shell /usr/sbin/nologin crescendo \\
 && install -d -o $APP_UID -g $APP_UID -m 0750 /var/lib/crescendo
$(labels crescendo "Crescendo: the RealWorld Conduit service; the command names the role (serve, web, worker)")
USER $APP_UID:$APP_UID
WORKDIR /var/lib/crescendo
EXPOSE 8080 9090
CMD ["crescendo", "serve", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/crescendo"]
EOF
}

# The PostgreSQL image's entrypoint: a first start makes the cluster with superuser
# $POSTGRES_USER (password $POSTGRES_PASSWORD, required; SCRAM over the network, trust on the
# container's own socket) and database $POSTGRES_DB, then PostgreSQL runs as PID 1.
PG_ENTRYPOINT='#!/bin/sh
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
user=${POSTGRES_USER:-crescendo}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw=$(mktemp)
    printf "%s" "$POSTGRES_PASSWORD" > "$pw"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pw" \
        --auth-host=scram-sha-256 --auth-local=trust >/dev/null
    rm -f "$pw"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    [ "$db" = postgres ] || echo "CREATE DATABASE \"$db\" OWNER \"$user\"" \
        | postgres --single -D "$PGDATA" postgres >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses="*" "$@"'

build_engine() {
    local name=$1 tag="" packages body
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --tag) tag=$2; shift 2 ;;
            *) echo "unknown option $1" >&2; exit 2 ;;
        esac
    done
    case "$name" in
        postgres)
            tag=${tag:-localhost/crescendo-postgres:15}
            packages=postgresql-15
            body='ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint /usr/local/bin/postgres-entrypoint
RUN install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]' ;;
        redis)
            tag=${tag:-localhost/crescendo-redis:7.0}
            packages=redis-server
            body='USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "yes"]' ;;
        nats)
            tag=${tag:-localhost/crescendo-nats:2.9}
            packages=nats-server
            body='USER nobody
EXPOSE 4222 8222
CMD ["nats-server", "--jetstream", "--store_dir", "/tmp/nats", "-m", "8222"]' ;;
        varnish)
            tag=${tag:-localhost/crescendo-varnish:7.1}
            packages="varnish varnish-modules"
            # by default Debian's VCL: port 6081 in front of 127.0.0.1:8080 in the same pod
            body='USER varnish
EXPOSE 6081
CMD ["varnishd", "-F", "-a", ":6081", "-f", "/etc/varnish/default.vcl", "-n", "/tmp/varnish"]' ;;
        *) echo "unknown engine $name (postgres, redis, nats, varnish)" >&2; exit 2 ;;
    esac
    local ctx
    scratch ctx
    if [ "$name" = postgres ]; then
        printf '%s\n' "$PG_ENTRYPOINT" > "$ctx/postgres-entrypoint"
        chmod 0755 "$ctx/postgres-entrypoint"
    fi
    build "$tag" "$ctx" <<EOF
FROM $BASE
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \\
 && apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
$(labels "crescendo-$name" "Debian bookworm's $name for Crescendo's local container runs")
$body
EOF
}

[ "$(id -u)" -eq 0 ] || { echo "scripts/image.sh needs root (debootstrap, podman)" >&2; exit 1; }
podman_setup
case "${1:-}" in
    base) build_base ;;
    crescendo) shift; build_base; build_crescendo "$@" ;;
    postgres | redis | nats | varnish) build_base; build_engine "$@" ;;
    "" | --engines)
        build_base
        build_crescendo
        if [ "${1:-}" = --engines ]; then
            for engine in postgres redis nats varnish; do build_engine "$engine"; done
        fi ;;
    *) echo "usage: scripts/image.sh [--engines] | base | crescendo [--binary PATH] [--tag NAME] | postgres|redis|nats|varnish [--tag NAME]" >&2
       exit 2 ;;
esac
