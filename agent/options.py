"""Every configuration option, declared once: section, name, type, default, unit and help.

The loader (`agent.config`) validates against these declarations and the sample config
(`agent config sample`, `etc/agent.conf.sample`) is generated from them. Names and defaults follow
nova's where nova has the option, so operators recognise them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

from agent import values

# The value types an option can have. "path" is a str that is expanded (~) and made absolute.
TYPES = ("str", "int", "float", "bool", "path", "list")


@dataclass(frozen=True)
class Opt:
    section: str
    name: str
    type: str
    default: Any
    help: str
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # an empty value means None ("not set")
    secret: bool = False  # never printed in full (database URLs carry passwords)
    # A default that depends on the machine or on other options: called with the resolved
    # values of the options declared before it. `default` then holds its description.
    derive: Callable[["Resolved"], Any] | None = None
    # A further rule for a set value, from `agent.values` (a host name, an IP address, a file
    # the agent will write): takes the typed value, returns it or raises values.BadValue.
    check: Callable[[Any], Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.section, self.name)


class Resolved:
    """Read access to the options resolved so far, handed to `Opt.derive`."""

    def __init__(self, values: dict[tuple[str, str], Any]):
        self._values = values

    def get(self, section: str, name: str) -> Any:
        return self._values[(section, name)]


def _default_state_path(_: Resolved) -> str:
    from agent.files import default_state_path

    return default_state_path(os.environ, os.geteuid())


def _default_my_ip(_: Resolved) -> str:
    # The address of the interface that would route to the outside; no packet is sent.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
            return sock.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _transport_url(url: str) -> str:
    """A transport_url kombu can use (agent.rpc.transport.parse), checked at load time."""
    from agent.rpc.transport import TransportURLError, parse

    try:
        parse(url)
    except TransportURLError as exc:
        raise values.BadValue(exc.expected) from None
    return url


def _default_connection_uri(values: Resolved) -> str:
    virt_type = values.get("libvirt", "virt_type")
    if virt_type in ("kvm", "qemu"):
        return "qemu:///system"
    if virt_type == "lxc":
        return "lxc:///"
    return "parallels:///system"


OPTIONS: tuple[Opt, ...] = (
    # -- identity and state -------------------------------------------------------------------
    Opt("DEFAULT", "host", "str", "the machine's hostname",
        "Name of this host in the service registry. Changing it on a host that has instances "
        "makes start-up stop: the node identity would no longer match.",
        derive=lambda _: socket.gethostname(), check=values.hostname),
    Opt("DEFAULT", "state_path", "path", "$STATE_DIRECTORY (systemd's StateDirectory=), "
        "else /var/lib/compute-agent as root, else $XDG_STATE_HOME/compute-agent or "
        "$HOME/.local/state/compute-agent",
        "Directory for the agent's state: the embedded SQLite database and the node identity "
        "file (compute_id). Created with mode 0750 (files in it 0640) if missing.",
        derive=_default_state_path, check=values.directory),
    Opt("DEFAULT", "instances_path", "path", "$state_path/instances",
        "Directory holding instance disks; its filesystem is what local_gb reports.",
        derive=lambda v: os.path.join(v.get("DEFAULT", "state_path"), "instances")),
    Opt("DEFAULT", "my_ip", "str", "the address of the interface with the default route",
        "IP address of this host, reported with its resources.", derive=_default_my_ip,
        check=values.ip_address),
    Opt("DEFAULT", "compute_driver", "str", "fake",
        "Virt driver: 'libvirt' on a real hypervisor host, 'fake' (fakevirt, in memory) for "
        "development, tests and demos.", choices=("fake", "libvirt")),
    # -- service registry and heartbeat -------------------------------------------------------
    Opt("DEFAULT", "report_interval", "int", 10,
        "Seconds between heartbeats into the service registry.", unit="seconds", min=1,
        max=3600),
    Opt("DEFAULT", "service_down_time", "int", 60,
        "A service whose last heartbeat is older than this is shown down. When it is not "
        "larger than report_interval it is raised to 2.5 x report_interval, with a warning.",
        unit="seconds", min=1, max=86400),
    Opt("DEFAULT", "enable_new_services", "bool", True,
        "When false, a service registered for the first time is created disabled."),
    # -- periodic work ------------------------------------------------------------------------
    Opt("DEFAULT", "update_resources_interval", "int", 0,
        "Seconds between resource audits (update_available_resource). 0 means the default of "
        "60 s; a negative value disables the periodic audit (start-up still runs one).",
        unit="seconds", min=-1, max=86400),
    Opt("DEFAULT", "sync_power_state_interval", "int", 600,
        "Seconds between power-state syncs of all instances; negative disables it.",
        unit="seconds", min=-1, max=86400),
    Opt("DEFAULT", "running_deleted_instance_poll_interval", "int", 1800,
        "Seconds between checks for guests still on the hypervisor whose instance was deleted "
        "(a delete done while this host was down); 0 or negative disables it.",
        unit="seconds", min=-1, max=86400),
    Opt("DEFAULT", "running_deleted_instance_action", "str", "reap",
        "What to do with such a guest: 'reap' destroys it, 'shutdown' powers it off, 'log' "
        "only logs it, 'noop' does nothing.", choices=("reap", "shutdown", "log", "noop")),
    Opt("DEFAULT", "periodic_fuzzy_delay", "int", 60,
        "Upper bound of the random delay before the first periodic job runs, so that many "
        "hosts started together do not audit in lockstep. 0 disables the delay.",
        unit="seconds", min=0, max=3600),
    Opt("DEFAULT", "shutdown_timeout", "int", 60,
        "When the agent powers a guest off cleanly (a stop, an interrupted power-off resumed "
        "at start-up), the longest wait for the guest to shut down after being asked; after it "
        "the guest is destroyed. 0 destroys it right after asking. A soft reboot waits "
        "[libvirt] wait_soft_reboot_seconds instead.",
        unit="seconds", min=0, max=3600),
    Opt("DEFAULT", "graceful_shutdown_timeout", "int", 60,
        "At SIGTERM/SIGINT, the longest wait for a running periodic job and for the host work "
        "to stop; after it the agent exits anyway. Keep it below systemd's TimeoutStopSec.",
        unit="seconds", min=1, max=3600),
    # -- resources ----------------------------------------------------------------------------
    Opt("DEFAULT", "reserved_host_memory_mb", "int", 512,
        "Memory kept for the host; counted as used.", unit="MiB", min=0,
        max=values.INT_MAX),
    Opt("DEFAULT", "reserved_host_disk_mb", "int", 0,
        "Disk kept for the host; counted as used.", unit="MiB", min=0, max=values.INT_MAX),
    Opt("DEFAULT", "reserved_host_cpus", "int", 0,
        "CPUs kept for the host; counted as used.", min=0, max=values.INT_MAX),
    Opt("DEFAULT", "cpu_allocation_ratio", "float", None,
        "Virtual CPU to physical CPU ratio of every node; unset keeps the node's stored "
        "ratio (initial_cpu_allocation_ratio for a new node).", min=0.0, max=values.FLOAT_MAX,
        optional=True),
    Opt("DEFAULT", "ram_allocation_ratio", "float", None,
        "Virtual to physical memory ratio; unset keeps the node's stored ratio.", min=0.0,
        max=values.FLOAT_MAX, optional=True),
    Opt("DEFAULT", "disk_allocation_ratio", "float", None,
        "Virtual to physical disk ratio; unset keeps the node's stored ratio.", min=0.0,
        max=values.FLOAT_MAX, optional=True),
    Opt("DEFAULT", "initial_cpu_allocation_ratio", "float", 4.0,
        "CPU allocation ratio given to a new compute node.", min=0.0,
        max=values.FLOAT_MAX),
    Opt("DEFAULT", "initial_ram_allocation_ratio", "float", 1.0,
        "RAM allocation ratio given to a new compute node.", min=0.0,
        max=values.FLOAT_MAX),
    Opt("DEFAULT", "initial_disk_allocation_ratio", "float", 1.0,
        "Disk allocation ratio given to a new compute node.", min=0.0,
        max=values.FLOAT_MAX),
    # -- instances at start-up ----------------------------------------------------------------
    Opt("DEFAULT", "resume_guests_state_on_host_boot", "bool", False,
        "At start-up, restart guests that the database says were running but the hypervisor "
        "shows stopped."),
    # -- firewall -----------------------------------------------------------------------------
    Opt("DEFAULT", "firewall_driver", "str", "noop",
        "Per-instance packet filtering: 'iptables' builds each running instance's chain and "
        "applies them all in one iptables-restore per address family (needs CAP_NET_ADMIN); "
        "'noop' does no filtering.", choices=("noop", "iptables")),
    Opt("DEFAULT", "iptables_chain_prefix", "str", "cagent",
        "Prefix of every iptables chain the agent owns; chains without it are never touched.",
        check=values.chain_prefix),
    # -- messaging ----------------------------------------------------------------------------
    Opt("DEFAULT", "transport_url", "str", None,
        "Messaging transport of nova's compute RPC: rabbit://USER:PASS@HOST:5672/VHOST (several "
        "brokers separated by commas, tried in turn). When set, the daemon consumes "
        "compute.<host> on exchange nova and performs the instance operations sent to it. "
        "Unset with a SQLite database (one machine): broker.sqlite beside it (sqla+sqlite), "
        "kombu's SQLAlchemy transport, no broker server needed; unset with a database server: "
        "no requests are taken.", optional=True, secret=True, check=_transport_url),
    # -- logging ------------------------------------------------------------------------------
    Opt("DEFAULT", "debug", "bool", False, "Log at DEBUG level."),
    Opt("DEFAULT", "log_file", "path", None,
        "Write the log to this file instead of stderr (under systemd, stderr goes to the "
        "journal). Its directory must exist and be writable.", optional=True,
        check=values.writable_file),
    # -- sections -----------------------------------------------------------------------------
    Opt("compute", "shared_storage", "bool", False,
        "instances_path is on storage shared with other hosts: when an evacuated instance is "
        "destroyed here, its disks are kept."),
    Opt("database", "connection", "str", "sqlite:///$state_path/agent.sqlite",
        "SQLAlchemy URL of the shared database: sqlite:///PATH (one host), "
        "postgresql+psycopg://USER:PASS@HOST/DB or mysql+pymysql://USER:PASS@HOST/DB.",
        secret=True,
        derive=lambda v: "sqlite:///" + os.path.join(v.get("DEFAULT", "state_path"),
                                                     "agent.sqlite")),
    Opt("database", "pool_size", "int", 5,
        "Connections kept open to a server database.", min=1, max=1000),
    Opt("database", "connect_timeout", "int", 5,
        "Seconds to wait for a database connection before the attempt counts as failed.",
        unit="seconds", min=1, max=600),
    Opt("database", "statement_timeout", "int", 10,
        "The longest one database call (a statement, a commit, a wait for a lock) may take "
        "before it counts as failed, so that a frozen or unreachable database server is a lost "
        "database, not a hung agent. PostgreSQL: the server's statement_timeout, TCP keepalives "
        "and tcp_user_timeout, and a client-side limit 2 s longer that closes the connection "
        "when the server answers nothing; MariaDB/MySQL: PyMySQL's read_timeout and "
        "write_timeout; SQLite: the busy timeout (waiting for another connection's lock). Keep "
        "it well below report_interval x 2 so that a beat stuck on the database does not make "
        "the agent look hung to the systemd watchdog. 'agent db sync' and 'agent db seed' "
        "allow an hour instead: a schema upgrade of a large database may take minutes.",
        unit="seconds", min=1, max=3600),
    Opt("libvirt", "virt_type", "str", "kvm",
        "Hypervisor type libvirt drives.", choices=("kvm", "qemu", "lxc", "parallels")),
    Opt("libvirt", "connection_uri", "str", "derived from virt_type (qemu:///system for "
        "kvm and qemu)",
        "libvirt connection URI; test:///default runs against libvirt's built-in test "
        "hypervisor.", derive=_default_connection_uri),
    Opt("libvirt", "keepalive_interval", "int", 5,
        "Seconds of silence on the libvirt connection before the agent pings libvirtd "
        "(libvirt's keepalive). After keepalive_interval x (keepalive_count + 1) seconds "
        "without an answer (30 s by default) libvirtd counts as lost, even when it keeps its "
        "socket open (hung): every call waiting on it fails, the service is disabled with "
        "'AUTO: connection to libvirt lost' and re-enabled once a reconnect succeeds. Opening a "
        "connection is bounded by the same time.", unit="seconds", min=1, max=600),
    Opt("libvirt", "keepalive_count", "int", 5,
        "Unanswered keepalive pings after which libvirtd counts as lost (see "
        "keepalive_interval).", min=1, max=100),
    Opt("libvirt", "wait_soft_reboot_seconds", "int", 120,
        "A soft reboot asks the guest to shut down (ACPI) and starts it again once it is off; "
        "this is the longest wait for it to go off. A guest that does not (no OS, or one that "
        "ignores ACPI) is then rebooted hard, as nova's libvirt driver does.",
        unit="seconds", min=0, max=3600),
    Opt("libvirt", "uid_maps", "list", [],
        "lxc user-namespace uid maps (guest:host:count, comma separated, at most 5).",
        check=values.id_maps),
    Opt("libvirt", "gid_maps", "list", [],
        "lxc user-namespace gid maps (guest:host:count, comma separated, at most 5).",
        check=values.id_maps),
    Opt("workarounds", "handle_virt_lifecycle_events", "bool", True,
        "Update instance power states from hypervisor lifecycle events."),
    Opt("api", "bind", "str", "127.0.0.1:8774",
        "Address and port `agent api` listens on, ADDR:PORT ([ADDR]:PORT for IPv6). With "
        "auth_strategy = noauth only a loopback address is accepted."),
    Opt("api", "auth_strategy", "str", "noauth",
        "How API requests are authenticated: 'noauth' trusts every request (any X-Auth-Token) "
        "and is therefore served on a loopback address only.", choices=("noauth",)),
    Opt("api", "max_request_body_size", "int", 114688,
        "Largest request body the API reads (nova's osapi_max_request_body_size); a larger one "
        "is refused with 413.", unit="bytes", min=1024, max=16 * 1024 * 1024),
    Opt("api", "max_limit", "int", 1000,
        "Most entries one list answer carries (nova's [api] max_limit): GET /servers, "
        "/flavors and, from microversion 2.33, /os-hypervisors answer at most this many (a "
        "smaller ?limit= is kept) and a 'next' link to the following page.", min=1,
        max=values.INT_MAX),
    Opt("api", "workers", "int", 4,
        "Requests the API serves at once (the WSGI server's threads; each holds at most one "
        "database connection).", min=1, max=64),
    Opt("fakevirt", "scenario", "path", None,
        "TOML scenario file describing the fake host and its domains (see the README).",
        optional=True),
    Opt("fakevirt", "domains_file", "path", None,
        "JSON file in which the fake hypervisor keeps its domains across agent restarts, as a "
        "real hypervisor outlives nova-compute: read at start when it exists (instead of the "
        "scenario's domains), rewritten after every change. Unset: domains live in memory.",
        optional=True),
)

SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(opt.section for opt in OPTIONS))


def find(section: str, name: str) -> Opt | None:
    for opt in OPTIONS:
        if opt.section == section and opt.name == name:
            return opt
    return None
