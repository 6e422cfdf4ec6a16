"""Scenario files: a fake host, its domains, and database records to seed, read from TOML.

`load_scenario(path)` validates strictly and returns frozen dataclasses; any problem is one
`ScenarioError` line naming the file, the entry (`domains[3] (uuid ...)`, entries counted from 0)
and the problem. `generate_scenario(n)` builds large scenarios in memory for tests and
benchmarks. The format is documented in docs/scenario-format.md.
"""

from __future__ import annotations

import ipaddress
import tomllib
import uuid as uuid_lib
from dataclasses import dataclass
from typing import Any, Callable

from agent import values
from agent.config import did_you_mean
from agent.errors import ScenarioError
from agent.network.network_info import NetworkInfoError, parse_network_info
from agent.virt.types import VIF, FixedIP, PowerState, SecurityGroupRule

POWER_STATE_WORDS: dict[str, PowerState] = {
    "nostate": PowerState.NOSTATE, "running": PowerState.RUNNING, "paused": PowerState.PAUSED,
    "shutdown": PowerState.SHUTDOWN, "crashed": PowerState.CRASHED,
    "suspended": PowerState.SUSPENDED,
}
VM_STATES = ("active", "building", "paused", "suspended", "stopped", "rescued", "resized",
             "soft-delete", "deleted", "error", "shelved", "shelved_offloaded")
# The power state an instance record gets when the file does not say (what its vm_state implies).
_VM_STATE_POWER = {"active": "running", "paused": "paused", "suspended": "suspended",
                   "stopped": "shutdown", "resized": "shutdown", "rescued": "running"}
MIGRATION_TYPES = ("migration", "resize", "live-migration", "evacuation")
MIGRATION_STATUSES = ("queued", "preparing", "running", "accepted", "pre-migrating", "migrating",
                      "post-migrating", "finished", "confirmed", "reverted", "done", "completed",
                      "error", "failed", "cancelled")
# Namespace of the uuids generate_scenario derives, so a host's generated uuids are stable.
GENERATED_NAMESPACE = uuid_lib.UUID("6f1c3c2e-6d0b-5a3e-9a52-3b8f1d2c7e41")


@dataclass(frozen=True)
class HostSpec:
    """The fake hypervisor host. None for vcpus/memory_mb/local_gb means the real machine's."""

    hostname: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    local_gb: int | None = None
    hypervisor_type: str = "fake"
    hypervisor_version: int = 1000
    cpu_arch: str | None = None  # None: this machine's (platform.machine())
    cpu_model: str = "Nehalem"
    cpu_vendor: str = "Intel"
    cpu_sockets: int = 1
    cpu_threads: int = 1
    cpu_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class DomainSpec:
    """A guest defined on the fake hypervisor at start."""

    uuid: str
    name: str
    power_state: PowerState = PowerState.RUNNING
    vcpus: int = 1
    memory_mb: int = 512
    disk_gb: int = 1


@dataclass(frozen=True)
class InstanceSeed:
    """A row the scenario seeds into the `instances` table (parsed input; what the agent reads
    back is agent.db.compute_queries.InstanceRecord). host/node None: the scenario's hostname
    (or the seeding agent's host when the scenario has none)."""

    uuid: str
    display_name: str | None = None
    host: str | None = None
    node: str | None = None
    vm_state: str = "active"
    task_state: str | None = None
    power_state: PowerState = PowerState.RUNNING
    vcpus: int = 1
    memory_mb: int = 512
    root_gb: int = 1
    ephemeral_gb: int = 0
    swap: int = 0
    project_id: str | None = None
    os_type: str | None = None
    old_vm_state: str | None = None
    network_info: tuple[VIF, ...] = ()


@dataclass(frozen=True)
class MigrationSeed:
    """A row the scenario seeds into the `migrations` table (parsed input; read back as
    agent.db.compute_queries.MigrationRecord)."""

    uuid: str
    instance_uuid: str
    migration_type: str
    status: str
    source_compute: str | None = None
    dest_compute: str | None = None
    source_node: str | None = None
    dest_node: str | None = None


@dataclass(frozen=True)
class Scenario:
    host: HostSpec = HostSpec()
    domains: tuple[DomainSpec, ...] = ()
    instances: tuple[InstanceSeed, ...] = ()
    migrations: tuple[MigrationSeed, ...] = ()
    source: str = "<generated>"


# -- validation -------------------------------------------------------------------------------
_REQUIRED = object()


class _Invalid(Exception):
    """A problem with one field; turned into a ScenarioError naming file and entry. `located`:
    the message already names the field's path within the entry."""

    def __init__(self, message: str, located: bool = False):
        super().__init__(message)
        self.located = located


@dataclass(frozen=True)
class _Field:
    parse: Callable[[Any], Any]
    default: Any = _REQUIRED


def _checked(rule: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A rule of `agent.values` as a field parser: a refusal names the value and what was
    expected."""
    def parse(value: Any) -> Any:
        try:
            return rule(value)
        except values.BadValue as exc:
            raise _Invalid(f"{exc}, got {values.shown(value)}") from None
    return parse


# Strings land in String(255) columns (display_name, project_id, ...) or in log lines and
# libvirt names: no control characters, at most 255 characters, the same on every backend.
_str = _checked(values.text)
_hostname = _checked(values.hostname)


def _int(minimum: int, maximum: int = values.INT_MAX) -> Callable[[Any], int]:
    """An integer from `minimum` to what its column holds (Integer unless said otherwise)."""
    return _checked(lambda value: values.integer(value, minimum, maximum))


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if _str(value) not in choices:
            raise _Invalid(f"{value!r} is not one of {', '.join(choices)}"
                           f"{did_you_mean(value, choices)}")
        return value
    return parse


def _uuid(value: Any) -> str:
    try:
        if isinstance(value, str) and len(value) == 36:
            return str(uuid_lib.UUID(value))
    except ValueError:
        pass
    raise _Invalid(f"{value!r} is not a uuid (expected 8-4-4-4-12 hex digits)")


def _power(value: Any) -> PowerState:
    if isinstance(value, str) and value in POWER_STATE_WORDS:
        return POWER_STATE_WORDS[value]
    raise _Invalid(f"{value!r} is not one of {', '.join(POWER_STATE_WORDS)}"
                   f"{did_you_mean(str(value), POWER_STATE_WORDS)}")


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of strings, got {values.shown(value)}")
    return tuple(_str(item) for item in value)


def _table(value: Any, fields: dict[str, _Field], what: str) -> dict[str, Any]:
    """Check a TOML table against `fields`; `what` is its path inside the entry ("" or
    "network_info[0].")."""
    if not isinstance(value, dict):
        raise _Invalid(f"{what.rstrip('.') or 'entry'}: expected a table, got {value!r}", True)
    for key in value:
        if key not in fields:
            raise _Invalid(f"unknown key '{what}{key}'{did_you_mean(key, fields)}; known keys: "
                           f"{', '.join(fields)}", True)
    out = {}
    for key, spec in fields.items():
        if key in value:
            try:
                out[key] = spec.parse(value[key])
            except _Invalid as exc:
                if exc.located:
                    raise
                raise _Invalid(f"{what}{key}: {exc}", True) from None
        elif spec.default is _REQUIRED:
            raise _Invalid(f"missing required key '{what}{key}'", True)
        else:
            out[key] = spec.default
    return out


def _array(value: Any, parse_item: Callable[[Any, str], Any], what: str) -> tuple:
    if not isinstance(value, list):
        raise _Invalid(f"{what}: expected an array of tables, got {value!r}", True)
    return tuple(parse_item(item, f"{what}[{i}].") for i, item in enumerate(value))


# Keys of the network_info tables; the values are checked by agent.network.network_info, the
# same code that reads them back from the database.
_VIF_KEYS = ("id", "address", "fixed_ips", "rules", "devname")
_NESTED_KEYS = {"fixed_ips": ("address", "version"),
                "rules": ("protocol", "port_min", "port_max", "source_cidr", "ethertype")}


def _check_keys(value: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(value, dict):
        raise _Invalid(f"{what}: expected a table, got {value!r}", True)
    for key in value:
        if key not in keys:
            raise _Invalid(f"unknown key '{what}.{key}'{did_you_mean(key, keys)}; known keys: "
                           f"{', '.join(keys)}", True)


def _network_info(value: Any) -> list:
    """The shape of network_info (arrays of tables with known keys); returned as is."""
    if not isinstance(value, list):
        raise _Invalid(f"network_info: expected an array of tables, got {value!r}", True)
    for index, vif in enumerate(value):
        where = f"network_info[{index}]"
        _check_keys(vif, _VIF_KEYS, where)
        for sub, keys in _NESTED_KEYS.items():
            items = vif.get(sub, [])
            if not isinstance(items, list):
                raise _Invalid(f"{where}.{sub}: expected an array of tables, got {items!r}", True)
            for sub_index, item in enumerate(items):
                _check_keys(item, keys, f"{where}.{sub}[{sub_index}]")
    return value


_HOST_FIELDS = {
    "hostname": _Field(_hostname, None), "vcpus": _Field(_int(1), None),
    "memory_mb": _Field(_int(1), None), "local_gb": _Field(_int(1), None),
    "hypervisor_type": _Field(_str, "fake"),
    "hypervisor_version": _Field(_int(0, values.BIGINT_MAX), 1000),
    "cpu_arch": _Field(_str, None), "cpu_model": _Field(_str, "Nehalem"),
    "cpu_vendor": _Field(_str, "Intel"), "cpu_sockets": _Field(_int(1), 1),
    "cpu_threads": _Field(_int(1), 1), "cpu_features": _Field(_str_list, ()),
}
_DOMAIN_FIELDS = {
    "uuid": _Field(_uuid), "name": _Field(_str, None),
    "power_state": _Field(_power, PowerState.RUNNING),
    "vcpus": _Field(_int(1), 1), "memory_mb": _Field(_int(1), 512), "disk_gb": _Field(_int(0), 1),
}
_OPT_STR = _Field(_str, None)
_OPT_HOST = _Field(_hostname, None)
_INSTANCE_FIELDS = {
    "uuid": _Field(_uuid), "display_name": _OPT_STR, "host": _OPT_HOST, "node": _OPT_HOST,
    "vm_state": _Field(_choice(VM_STATES), "active"), "task_state": _OPT_STR,
    "power_state": _Field(_power, None), "vcpus": _Field(_int(0), 1),
    "memory_mb": _Field(_int(0), 512), "root_gb": _Field(_int(0), 1),
    "ephemeral_gb": _Field(_int(0), 0), "swap": _Field(_int(0), 0), "project_id": _OPT_STR,
    "os_type": _OPT_STR, "old_vm_state": _Field(_choice(VM_STATES), None),
    "network_info": _Field(_network_info, []),
}
_MIGRATION_FIELDS = {
    "uuid": _Field(_uuid), "instance_uuid": _Field(_uuid),
    "migration_type": _Field(_choice(MIGRATION_TYPES)),
    "status": _Field(_choice(MIGRATION_STATUSES)), "source_compute": _OPT_HOST,
    "dest_compute": _OPT_HOST, "source_node": _OPT_HOST, "dest_node": _OPT_HOST,
}
SECTIONS = ("host", "domains", "instances", "migrations")


def load_scenario(path: str) -> Scenario:
    """Read and validate the scenario file at `path`. Raises ScenarioError (one line)."""
    try:
        with open(path, "rb") as fh:
            # A byte order mark at the top (as some editors write) is not part of the TOML.
            data = tomllib.loads(fh.read().decode("utf-8").removeprefix("\ufeff"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: scenario file not found") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(data, path)


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate an already-parsed TOML document; `source` names it in errors."""
    def fail(where: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{source}: {where}: {problem}")

    for key, value in data.items():
        if key not in SECTIONS:
            raise fail(key, f"unknown section{did_you_mean(key, SECTIONS)}; known sections: "
                            f"[host], [[domains]], [[instances]], [[migrations]]")
        if key != "host" and not (isinstance(value, list)
                                  and all(isinstance(v, dict) for v in value)):
            raise fail(key, f"expected an array of tables: write each entry under [[{key}]]")
    try:
        host = HostSpec(**{k: v for k, v in _table(data.get("host", {}), _HOST_FIELDS, "")
                           .items()})
    except _Invalid as exc:
        raise fail("[host]", str(exc)) from None

    def entries(section: str, fields: dict[str, _Field]):
        for index, raw in enumerate(data.get(section, [])):
            label = f"{section}[{index}]"
            if isinstance(raw.get("uuid"), str):
                label += f" (uuid {raw['uuid']})"
            try:
                yield label, _table(raw, fields, "")
            except _Invalid as exc:
                raise fail(label, str(exc)) from None

    domains, names = [], {}
    for label, f in entries("domains", _DOMAIN_FIELDS):
        if f["name"] is None:
            f["name"] = f"instance-{len(domains) + 1:08x}"
        if f["name"] in names:
            raise fail(label, f"duplicate name {f['name']!r} (also {names[f['name']]})")
        names[f["name"]] = label
        domains.append(DomainSpec(**f))
    _check_unique(domains, "domains", fail)

    instances = []
    for label, f in entries("instances", _INSTANCE_FIELDS):
        if f["power_state"] is None:
            f["power_state"] = POWER_STATE_WORDS[_VM_STATE_POWER.get(f["vm_state"], "nostate")]
        f["host"] = f["host"] or host.hostname
        f["node"] = f["node"] or f["host"]
        try:
            f["network_info"] = parse_network_info(f["uuid"], f["network_info"])
        except NetworkInfoError as exc:
            raise fail(label, str(exc).removeprefix(f"instance {f['uuid']}: ")) from None
        instances.append(InstanceSeed(**f))
    _check_unique(instances, "instances", fail)

    migrations = []
    for label, f in entries("migrations", _MIGRATION_FIELDS):
        f["source_node"] = f["source_node"] or f["source_compute"]
        f["dest_node"] = f["dest_node"] or f["dest_compute"]
        migrations.append(MigrationSeed(**f))
    _check_unique(migrations, "migrations", fail)
    return Scenario(host, tuple(domains), tuple(instances), tuple(migrations), source)


def _check_unique(items, section: str, fail) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.uuid in seen:
            raise fail(f"{section}[{index}] (uuid {item.uuid})",
                       f"duplicate uuid (also {section}[{seen[item.uuid]}])")
        seen[item.uuid] = index


# -- generated scenarios ------------------------------------------------------------------------
_GENERATED_STATES = ((PowerState.RUNNING, "active"),) * 7 + (
    (PowerState.PAUSED, "paused"), (PowerState.SHUTDOWN, "stopped"),
    (PowerState.SHUTDOWN, "stopped"))


def generate_scenario(n_domains: int, *, hostname: str = "fake-host",
                      n_instances: int | None = None, vcpus: int = 1, memory_mb: int = 512,
                      disk_gb: int = 1, with_network: bool = True) -> Scenario:
    """A host with `n_domains` guests in mixed states (7 in 10 running, 1 paused, 2 shut down)
    and, for the first `n_instances` of them (default all), matching database records that
    live on `hostname`. uuids are derived from hostname and index, so the same call gives the
    same scenario and different hosts never share uuids. Host capacity fits every guest."""
    n_instances = n_domains if n_instances is None else min(n_instances, n_domains)
    host = HostSpec(hostname=hostname, vcpus=max(8, -(-n_domains * vcpus // 4)),
                    memory_mb=n_domains * memory_mb + 8192, local_gb=n_domains * disk_gb + 100,
                    cpu_arch="x86_64")
    domains, instances = [], []
    for i in range(n_domains):
        uuid = str(uuid_lib.uuid5(GENERATED_NAMESPACE, f"{hostname}/{i}"))
        power_state, vm_state = _GENERATED_STATES[i % len(_GENERATED_STATES)]
        name = f"instance-{i + 1:08x}"
        domains.append(DomainSpec(uuid, name, power_state, vcpus, memory_mb, disk_gb))
        if i < n_instances:
            vifs = (_generated_vif(hostname, i),) if with_network else ()
            instances.append(InstanceSeed(
                uuid, display_name=f"vm-{i}", host=hostname, node=hostname, vm_state=vm_state,
                power_state=power_state, vcpus=vcpus, memory_mb=memory_mb, root_gb=disk_gb,
                project_id="demo", os_type="linux", network_info=vifs))
    return Scenario(host, tuple(domains), tuple(instances), (), f"<generated {n_domains}>")


def _generated_vif(hostname: str, index: int) -> VIF:
    ip = ipaddress.ip_address("10.0.0.2") + index
    mac = "fa:16:3e:%02x:%02x:%02x" % ((index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)
    rules = (SecurityGroupRule("tcp", 22, 22, "0.0.0.0/0"), SecurityGroupRule("icmp"))
    return VIF(str(uuid_lib.uuid5(GENERATED_NAMESPACE, f"{hostname}/{index}/vif")), mac,
               (FixedIP(str(ip), 4),), rules)
