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
from typing import Any

from agent import values
from agent.config import did_you_mean
from agent.errors import ScenarioError
from agent.network.network_info import NetworkInfoError, parse_network_info
from agent.virt.types import VIF, FixedIP, PowerState, SecurityGroupRule
from fakevirt.scenario_fields import (POWER_STATE_WORDS, Field, Invalid, choice, hostname,
                                      integer, network_info_shape, power_state, str_list, table,
                                      text, uuid_text)

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
    back is agent.db.records.InstanceRecord). host/node None: the scenario's hostname
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
    agent.db.records.MigrationRecord)."""

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


_HOST_FIELDS = {
    "hostname": Field(hostname, None), "vcpus": Field(integer(1), None),
    "memory_mb": Field(integer(1), None), "local_gb": Field(integer(1), None),
    "hypervisor_type": Field(text, "fake"),
    "hypervisor_version": Field(integer(0, values.BIGINT_MAX), 1000),
    "cpu_arch": Field(text, None), "cpu_model": Field(text, "Nehalem"),
    "cpu_vendor": Field(text, "Intel"), "cpu_sockets": Field(integer(1), 1),
    "cpu_threads": Field(integer(1), 1), "cpu_features": Field(str_list, ()),
}
_DOMAIN_FIELDS = {
    "uuid": Field(uuid_text), "name": Field(text, None),
    "power_state": Field(power_state, PowerState.RUNNING),
    "vcpus": Field(integer(1), 1), "memory_mb": Field(integer(1), 512),
    "disk_gb": Field(integer(0), 1),
}
_OPT_STR = Field(text, None)
_OPT_HOST = Field(hostname, None)
_INSTANCE_FIELDS = {
    "uuid": Field(uuid_text), "display_name": _OPT_STR, "host": _OPT_HOST, "node": _OPT_HOST,
    "vm_state": Field(choice(VM_STATES), "active"), "task_state": _OPT_STR,
    "power_state": Field(power_state, None), "vcpus": Field(integer(0), 1),
    "memory_mb": Field(integer(0), 512), "root_gb": Field(integer(0), 1),
    "ephemeral_gb": Field(integer(0), 0), "swap": Field(integer(0), 0), "project_id": _OPT_STR,
    "os_type": _OPT_STR, "old_vm_state": Field(choice(VM_STATES), None),
    "network_info": Field(network_info_shape, []),
}
_MIGRATION_FIELDS = {
    "uuid": Field(uuid_text), "instance_uuid": Field(uuid_text),
    "migration_type": Field(choice(MIGRATION_TYPES)),
    "status": Field(choice(MIGRATION_STATUSES)), "source_compute": _OPT_HOST,
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
        host = HostSpec(**{k: v for k, v in table(data.get("host", {}), _HOST_FIELDS, "")
                           .items()})
    except Invalid as exc:
        raise fail("[host]", str(exc)) from None

    def entries(section: str, fields: dict[str, Field]):
        for index, raw in enumerate(data.get(section, [])):
            label = f"{section}[{index}]"
            if isinstance(raw.get("uuid"), str):
                label += f" (uuid {raw['uuid']})"
            try:
                yield label, table(raw, fields, "")
            except Invalid as exc:
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
    _check_totals(instances, fail)

    migrations = []
    for label, f in entries("migrations", _MIGRATION_FIELDS):
        f["source_node"] = f["source_node"] or f["source_compute"]
        f["dest_node"] = f["dest_node"] or f["dest_compute"]
        migrations.append(MigrationSeed(**f))
    _check_unique(migrations, "migrations", fail)
    return Scenario(host, tuple(domains), tuple(instances), tuple(migrations), source)


def _check_totals(instances, fail) -> None:
    """The usage the audit writes for a node (vcpus_used, memory_mb_used, local_gb_used) is the
    sum over its instances, and lands in an Integer column too: refuse a scenario whose sums
    could not be stored, naming the node and the entry that goes over."""
    totals: dict[str, list[float]] = {}
    for index, record in enumerate(instances):
        node = record.node or record.host or ""
        sums = totals.setdefault(node, [0, 0, 0])
        used = (record.vcpus, record.memory_mb,
                record.root_gb + record.ephemeral_gb + record.swap / 1024)
        for column, (name, amount) in enumerate(zip(("vcpus", "memory_mb", "disk (GB)"), used)):
            sums[column] += amount
            if sums[column] > values.INT_MAX:
                raise fail(f"instances[{index}] (uuid {record.uuid})",
                           f"the instances of node {node or '(the seeding host)'} use "
                           f"{int(sums[column])} {name} in all, more than a compute node "
                           f"records (at most {values.INT_MAX})")


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
