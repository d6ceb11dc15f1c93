# Sourced by scripts/image.sh and scripts/test.sh: installs what builds and runs Crescendo's
# containers on a Debian machine (podman, buildah, debootstrap, runc, catatonit) when missing, and
# writes /etc/containers/containers.conf when there is none (an operator's own is kept).
#
# The settings are those podman 4.3 needs on a machine without systemd whose root lacks
# CAP_SYS_RESOURCE: runc (crun refuses a hybrid cgroup layout), the cgroupfs manager, and
# open-file and process limits a container may actually set (podman's default of 1048576
# open files fails with "setrlimit RLIMIT_NOFILE: Operation not permitted").

podman_setup() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    local need=()
    command -v podman >/dev/null 2>&1 || need+=(podman)
    command -v buildah >/dev/null 2>&1 || need+=(buildah)
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    command -v runc >/dev/null 2>&1 || need+=(runc)
    # the init of each pod's infra container (podman builds its pause image with it)
    command -v catatonit >/dev/null 2>&1 || need+=(catatonit)
    if [ ${#need[@]} -gt 0 ]; then
        echo "==> installing Debian packages: ${need[*]}"
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    if [ ! -e /etc/containers/containers.conf ]; then
        echo "==> writing /etc/containers/containers.conf (runc, cgroupfs, capped ulimits)"
        $sudo mkdir -p /etc/containers
        $sudo tee /etc/containers/containers.conf >/dev/null <<'CONF'
# written by Crescendo's scripts/podman-setup.sh: what podman 4.3 needs where there is no
# systemd and root may not raise its own limits
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
    fi
}
