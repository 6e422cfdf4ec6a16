#!/usr/bin/env bash
# Developer entry point: installs what the agent needs, then runs it or its tests.
#   ./dev.sh run [AGENT ARGS...]   run the agent on the embedded defaults (SQLite under ./state,
#                                  fakevirt driver); e.g. ./dev.sh run --once. ./state is only a
#                                  default: --state-path, or a --config file that sets
#                                  state_path, wins
#   ./dev.sh test [PYTEST ARGS...] run the whole test suite
#   ./dev.sh setup                 install only (Debian packages, the test environment, the
#                                  compute clients in .venv-clients)
# As root it installs the Debian packages it needs (libvirt-dev for libvirt-python, iptables,
# faketime, ...; `setup` and `test` also the PostgreSQL, MariaDB and RabbitMQ servers of the
# test tiers); as a normal user it expects them and says which are missing.
set -euo pipefail
cd "$(dirname "$0")"

DEBIAN_PACKAGES=(python3-venv python3-dev gcc pkg-config libvirt-dev iptables iproute2 faketime
                 systemd libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
                 qemu-system-x86 util-linux procps)
# The servers of the test tiers (PostgreSQL, MariaDB, RabbitMQ): installed by `setup` and `test`
# only; `run` needs none of them (SQLite and the embedded broker).
SERVER_PACKAGES=(postgresql mariadb-server rabbitmq-server)
VENV=.venv

install_debian_packages() {  # [EXTRA PACKAGES...]
    command -v dpkg-query >/dev/null || return 0
    local missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}" "$@"; do
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

# Extras per purpose; the test environment holds everything the run environment needs.
RUN_EXTRAS=libvirt,postgresql,mysql
TEST_EXTRAS=test

install_python() {
    local purpose=$1 extras=$2
    local stamp="$VENV/.installed-$purpose"
    if [ "$purpose" = run ] && is_current "$VENV/.installed-test"; then
        return 0
    fi
    is_current "$stamp" && return 0
    if [ ! -x "$VENV/bin/python" ]; then
        echo "dev.sh: creating the virtual environment $VENV (first run only)" >&2
        python3 -m venv "$VENV"
        quietly "$VENV/bin/pip" install --upgrade pip
    fi
    echo "dev.sh: installing compute-agent[$extras] into $VENV (up to a minute the first" \
         "time)" >&2
    quietly "$VENV/bin/pip" install -e ".[$extras]"
    touch "$stamp"
    echo "dev.sh: installed" >&2
}

# The compute clients the API's tests drive (openstackclient, novaclient, openstacksdk), in a
# virtual environment of their own: they are not the agent's dependencies. Versions as measured
# in the interface reference.
CLIENTS_VENV=.venv-clients
CLIENTS=(python-openstackclient==10.5.0 python-novaclient==18.13.1 openstacksdk==4.22.0)

install_clients() {
    local stamp="$CLIENTS_VENV/.installed"
    [ "$(cat "$stamp" 2>/dev/null)" = "${CLIENTS[*]}" ] && return 0
    echo "dev.sh: installing the compute clients into $CLIENTS_VENV (about half a minute the" \
         "first time)" >&2
    [ -x "$CLIENTS_VENV/bin/python" ] || python3 -m venv "$CLIENTS_VENV"
    quietly "$CLIENTS_VENV/bin/pip" install "${CLIENTS[@]}"
    echo "${CLIENTS[*]}" > "$stamp"
}

quietly() {  # run a command with its output in $VENV/install.log, shown only if it fails
    if ! "$@" >"$VENV/install.log" 2>&1; then
        cat "$VENV/install.log" >&2
        echo "dev.sh: failed: $* (output above and in $VENV/install.log)" >&2
        exit 1
    fi
}

is_current() {  # the stamp exists and pyproject.toml did not change since
    [ -f "$1" ] && ! [ pyproject.toml -nt "$1" ]
}

# True when the agent's arguments choose the state directory themselves: --state-path, or a
# configuration file (--config FILE, else /etc/compute-agent/agent.conf when it exists) that
# sets [DEFAULT] state_path. The file is read with the agent's own parser; a file it cannot
# read counts as not setting it (the agent then reports the problem itself).
sets_state_path() {
    local config="" previous="" arg
    for arg in "$@"; do
        case "$arg" in
            --state-path|--state-path=*) return 0 ;;
            --config=*) config=${arg#--config=} ;;
        esac
        [ "$previous" = --config ] && config=$arg
        previous=$arg
    done
    if [ -z "$config" ] && [ -f /etc/compute-agent/agent.conf ]; then
        config=/etc/compute-agent/agent.conf
    fi
    [ -n "$config" ] && [ -f "$config" ] || return 1
    "$VENV/bin/python" - "$config" <<'PY' 2>/dev/null
import sys
from agent.config import read_ini
sys.exit(0 if ("DEFAULT", "state_path") in read_ini(sys.argv[1]) else 1)
PY
}

cmd=${1:-}
shift || true
case "$cmd" in
    run)
        install_debian_packages
        install_python run "$RUN_EXTRAS"
        if sets_state_path "$@"; then
            exec "$VENV/bin/agent" "$@"
        fi
        exec "$VENV/bin/agent" --state-path "${AGENT_STATE_PATH:-$PWD/state}" "$@"
        ;;
    test)
        install_debian_packages "${SERVER_PACKAGES[@]}"
        install_python test "$TEST_EXTRAS"
        install_clients
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    setup)
        install_debian_packages "${SERVER_PACKAGES[@]}"
        install_python test "$TEST_EXTRAS"
        install_clients
        ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
