#!/usr/bin/env bash
# Developer entry point: installs what the agent needs, then runs it or its tests.
#   ./dev.sh run [AGENT ARGS...]   run the agent on the embedded defaults (SQLite under ./state,
#                                  fakevirt driver); e.g. ./dev.sh run --once
#   ./dev.sh test [PYTEST ARGS...] run the whole test suite
#   ./dev.sh setup                 install only (Debian packages, the test environment)
# As root it installs the Debian packages it needs (libvirt-dev for libvirt-python, iptables,
# faketime, ...); as a normal user it expects them and says which are missing.
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(python3-venv python3-dev gcc pkg-config libvirt-dev iptables iproute2 faketime
                 systemd libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
                 qemu-system-x86 util-linux procps)
VENV=.venv

install_debian_packages() {
    command -v dpkg-query >/dev/null || return 0
    local missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "dev.sh: missing Debian packages (install them as root): ${missing[*]}" >&2
        return 0
    fi
    echo "dev.sh: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
    local extras=$1
    local stamp="$VENV/.installed-$extras"
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV/bin/pip" install -q -e ".[$extras]"
        touch "$stamp"
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    run)
        install_debian_packages
        install_python libvirt
        exec "$VENV/bin/agent" --state-path "${AGENT_STATE_PATH:-$PWD/state}" "$@"
        ;;
    test)
        install_debian_packages
        install_python test
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    setup)
        install_debian_packages
        install_python test
        ;;
    *)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
