"""FakeDriver: an in-memory hypervisor that implements the whole ComputeDriver interface.

It is the reference for what each driver method means. Guests live in a dict of uuid ->
`InstanceInfo` (frozen; replaced on every change), so listing 10,000 guests is one list copy.
Power operations change state and emit the lifecycle events a real hypervisor would, after the
lock is released, so a listener may call back into the driver. Fault switches are in
`driver.faults` (see fakevirt/faults.py).

With `[fakevirt] domains_file` the guests outlive the agent process, as a real hypervisor's
outlive nova-compute: the file (JSON, `{"domains": [...], "disks": [...]}`) is read at start
when it exists, in place of the scenario's domains, and rewritten (a new file renamed over the
old) after every change, before the change's method returns.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import threading
import time
from typing import Callable, Sequence

from agent.display import plural
from agent.errors import DriverError, InstanceExists, InstanceNotFound
from agent.virt.disk import nearest_existing_dir
from agent.virt.driver import ComputeDriver
from agent.virt.types import (ACTIVE_POWER_STATES, VIF, Capabilities, DriverInfo, Flavor,
                              HostResources, InstanceInfo, InstanceRef, LifecycleEvent,
                              PowerState, RebootType, Transition)
from fakevirt.faults import Faults
from fakevirt.scenario import DomainSpec, Scenario, load_scenario

LOG = logging.getLogger(__name__)

# cpu_info features of a scenario host that lists none.
_DEFAULT_FEATURES = ("sse", "sse2", "ssse3", "sse4.1", "sse4.2", "popcnt", "lm", "nx")


@dataclasses.dataclass(frozen=True)
class _Capacity:
    vcpus: int
    memory_mb: int
    local_gb: int


def host_capacity(scenario: Scenario, disk_path: str) -> _Capacity:
    """The scenario's host sizes, falling back to this machine's (psutil) for those unset."""
    spec = scenario.host
    vcpus, memory_mb, local_gb = spec.vcpus, spec.memory_mb, spec.local_gb
    if vcpus is None or memory_mb is None or local_gb is None:
        import psutil

        if vcpus is None:
            vcpus = psutil.cpu_count() or 1
        if memory_mb is None:
            memory_mb = psutil.virtual_memory().total // (1024 * 1024)
        if local_gb is None:
            local_gb = psutil.disk_usage(nearest_existing_dir(disk_path)).total // (1024 ** 3)
    return _Capacity(vcpus, memory_mb, local_gb)


class FakeDriver(ComputeDriver):
    """The fake hypervisor. Hosts the scenario's domains (`[fakevirt] scenario` when no
    `scenario` is given); its one node is named by the scenario's hostname, else `conf.host`."""

    name = "fake"
    capabilities = Capabilities(supports_evacuate=True, supports_events=True)

    def __init__(self, conf, *, scenario: Scenario | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time):
        if scenario is None:
            path = conf.fakevirt.scenario
            if path:
                LOG.info("fakevirt: reading scenario %s", path)  # seconds for a large one
            scenario = load_scenario(path) if path else Scenario()
        self.scenario = scenario
        self.nodename: str = scenario.host.hostname or conf.host
        self._clock = clock
        self._lock = threading.RLock()
        self._domains: dict[str, InstanceInfo] = {}
        self._names: dict[str, str] = {}
        self._disks: set[str] = set()
        self._vifs: dict[str, tuple[VIF, ...]] = {}
        self._host: str | None = None
        disk_path = conf.instances_path if os.path.isdir(conf.instances_path) else conf.state_path
        self._capacity = host_capacity(scenario, disk_path)
        self.faults = Faults(self.emit_connection, sleep)
        self.faults.pause_from_environment(os.environ)
        domains_file: str | None = getattr(conf.fakevirt, "domains_file", None)
        self._domains_file: str | None = None  # written once, after the initial domains
        if domains_file and os.path.exists(domains_file):
            self._load_domains(domains_file)
        else:
            for domain in scenario.domains:
                self.add_domain(_info(domain))
        self._domains_file = domains_file
        self._persist()

    # -- host lifecycle -----------------------------------------------------------------------
    def init_host(self, host: str) -> None:
        """Checks the fault switches (the only way the fake refuses to start); remembers the
        host. Emits nothing."""
        self.faults.check("init_host")
        self._host = host
        LOG.info("fakevirt: host %s, node %s, %s", host, self.nodename,
                 plural(len(self._domains), "domain"))

    def cleanup_host(self) -> None:
        """Forgets the host; never raises, even with the connection dropped."""
        self._host = None

    def get_driver_info(self) -> DriverInfo:
        """Name 'fake', hypervisor type and version from the scenario ('fake', 1000)."""
        self.faults.check("get_driver_info")
        return DriverInfo(self.name, self.scenario.host.hypervisor_type,
                          self.scenario.host.hypervisor_version)

    # -- resources ----------------------------------------------------------------------------
    def get_available_nodes(self) -> list[str]:
        """One node: the scenario's hostname, else the configured host."""
        self.faults.check("get_available_nodes")
        return [self.nodename]

    def get_available_resource(self, nodename: str) -> HostResources:
        """Capacity from the scenario or this machine; usage is the guests': vCPUs and memory of
        running guests, disk of every defined guest."""
        self.faults.check("get_available_resource")
        if nodename != self.nodename:
            raise DriverError(f"fakevirt: node {nodename!r} is not managed here (node is "
                              f"{self.nodename!r})")
        with self._lock:
            domains = list(self._domains.values())
        running = [d for d in domains if d.power_state == PowerState.RUNNING]
        local_gb_used = sum(d.disk_gb for d in domains)
        cap = self._capacity
        return HostResources(
            hypervisor_hostname=self.nodename, vcpus=cap.vcpus, memory_mb=cap.memory_mb,
            local_gb=cap.local_gb, vcpus_used=sum(d.vcpus for d in running),
            memory_mb_used=sum(d.memory_mb for d in running), local_gb_used=local_gb_used,
            hypervisor_type=self.scenario.host.hypervisor_type,
            hypervisor_version=self.scenario.host.hypervisor_version,
            cpu_info=self._cpu_info(), disk_available_least=max(0, cap.local_gb - local_gb_used))

    def _cpu_info(self) -> str:
        spec = self.scenario.host
        per_socket = max(1, self._capacity.vcpus // spec.cpu_sockets)
        return json.dumps({
            "arch": spec.cpu_arch or platform.machine() or "x86_64",
            "model": spec.cpu_model, "vendor": spec.cpu_vendor,
            "topology": {"cells": 1, "sockets": spec.cpu_sockets,
                         "cores": max(1, per_socket // spec.cpu_threads),
                         "threads": spec.cpu_threads},
            "features": sorted(spec.cpu_features or _DEFAULT_FEATURES)})

    # -- guests -------------------------------------------------------------------------------
    def list_instances(self) -> list[InstanceInfo]:
        """Every defined guest, in definition order."""
        self.faults.check("list_instances")
        with self._lock:
            return list(self._domains.values())

    def get_info(self, instance: InstanceRef, use_cache: bool = False) -> InstanceInfo:
        """The guest's current state; InstanceNotFound for an unknown uuid."""
        self.faults.check("get_info", instance.uuid)
        with self._lock:
            return self._get(instance.uuid)

    def spawn(self, instance: InstanceRef, flavor: Flavor, image_ref: str | None,
              network_info: Sequence[VIF] = ()) -> None:
        """Defines the guest with the flavor's vCPUs, memory and disks (root + ephemeral GB),
        records its VIFs and starts it: RUNNING, event STARTED. InstanceExists when the uuid or
        the name is already defined (that guest is left as it was)."""
        self.faults.check("spawn", instance.uuid)
        with self._lock:
            if instance.uuid in self._domains or instance.name in self._names:
                raise InstanceExists(instance.uuid)
            self.add_domain(InstanceInfo(instance.uuid, instance.name, PowerState.RUNNING,
                                         flavor.vcpus, flavor.memory_mb,
                                         flavor.root_gb + flavor.ephemeral_gb))
            self._vifs[instance.uuid] = tuple(network_info)
        self.faults.done("spawn", instance.uuid)
        self._emit(instance.uuid, Transition.STARTED)

    def destroy(self, instance: InstanceRef, network_info: Sequence[VIF] = (),
                destroy_disks: bool = True) -> None:
        """Undefines the guest (STOPPED first if it was on); its disks stay when
        `destroy_disks` is false. A guest already gone is a no-op."""
        self.faults.check("destroy", instance.uuid)
        with self._lock:
            info = self._domains.pop(instance.uuid, None)
            if info is not None:
                self._names.pop(info.name, None)
                self._vifs.pop(instance.uuid, None)
                if destroy_disks:
                    self._disks.discard(instance.uuid)
                self._persist()
        self.faults.done("destroy", instance.uuid)
        if info is None:
            return
        if info.power_state in ACTIVE_POWER_STATES:
            self._emit(instance.uuid, Transition.STOPPED)

    def power_off(self, instance: InstanceRef, clean_shutdown: bool = True) -> None:
        """Any state but shut down -> SHUTDOWN, emitting STOPPED. Already off: nothing."""
        self.faults.check("power_off", instance.uuid)
        self._change(instance.uuid, lambda s: (PowerState.SHUTDOWN, (Transition.STOPPED,))
                     if s != PowerState.SHUTDOWN else (s, ()), "power_off")

    def power_on(self, instance: InstanceRef) -> None:
        """-> RUNNING. From shut down/crashed: STARTED; from paused/suspended the guest is
        restarted: STOPPED then STARTED. Already running: nothing."""
        self.faults.check("power_on", instance.uuid)
        self._change(instance.uuid, _start, "power_on")

    def reboot(self, instance: InstanceRef, reboot_type: RebootType) -> None:
        """HARD: restarts whatever the state (STOPPED if it was on, then STARTED). SOFT: only a
        running guest (STOPPED, STARTED); otherwise DriverError."""
        self.faults.check("reboot", instance.uuid)

        def decide(state: PowerState):
            if reboot_type is RebootType.SOFT and state != PowerState.RUNNING:
                raise DriverError(f"fakevirt: soft reboot of instance {instance.uuid}: guest is "
                                  f"{state.name.lower()}, not running")
            return _restart(state)
        self._change(instance.uuid, decide, "reboot")

    def pause(self, instance: InstanceRef) -> None:
        """RUNNING -> PAUSED (event PAUSED); already paused: nothing; otherwise DriverError."""
        self.faults.check("pause", instance.uuid)

        def decide(state: PowerState):
            if state == PowerState.PAUSED:
                return state, ()
            if state != PowerState.RUNNING:
                raise DriverError(f"fakevirt: cannot pause instance {instance.uuid}: guest is "
                                  f"{state.name.lower()}")
            return PowerState.PAUSED, (Transition.PAUSED,)
        self._change(instance.uuid, decide, "pause")

    def unpause(self, instance: InstanceRef) -> None:
        """PAUSED -> RUNNING (event RESUMED); running: nothing; otherwise DriverError."""
        self.faults.check("unpause", instance.uuid)

        def decide(state: PowerState):
            if state == PowerState.RUNNING:
                return state, ()
            if state != PowerState.PAUSED:
                raise DriverError(f"fakevirt: cannot unpause instance {instance.uuid}: guest "
                                  f"is {state.name.lower()}")
            return PowerState.RUNNING, (Transition.RESUMED,)
        self._change(instance.uuid, decide, "unpause")

    def resume_state_on_host_boot(self, instance: InstanceRef,
                                  network_info: Sequence[VIF] = ()) -> None:
        """A running guest is left alone; any other is hard rebooted to RUNNING."""
        self.faults.check("resume_state_on_host_boot", instance.uuid)
        self._change(instance.uuid, lambda s: (s, ()) if s == PowerState.RUNNING
                     else _restart(s))

    def plug_vifs(self, instance: InstanceRef, network_info: Sequence[VIF]) -> None:
        """Records the instance's VIFs (see `plugged_vifs`); idempotent."""
        self.faults.check("plug_vifs", instance.uuid)
        with self._lock:
            self._vifs[instance.uuid] = tuple(network_info)

    def finish_revert_migration(self, instance: InstanceRef, network_info: Sequence[VIF],
                                power_on: bool = True) -> None:
        """Defines the guest again if it is gone (1 vCPU, 512 MB, 1 GB: the fake keeps no
        flavor), plugs its VIFs, and leaves it RUNNING when `power_on`, else SHUTDOWN."""
        self.faults.check("finish_revert_migration", instance.uuid)
        with self._lock:
            if instance.uuid not in self._domains:
                self.add_domain(InstanceInfo(instance.uuid, instance.name,
                                             PowerState.SHUTDOWN, 1, 512, 1))
            self._vifs[instance.uuid] = tuple(network_info)
        if power_on:
            self._change(instance.uuid, _start)
        else:
            self._change(instance.uuid, lambda s: (PowerState.SHUTDOWN, (Transition.STOPPED,))
                         if s in ACTIVE_POWER_STATES else (PowerState.SHUTDOWN, ()))

    # -- hypervisor-side changes, for tests and demos ---------------------------------------
    def add_domain(self, info: InstanceInfo) -> None:
        """Defines a guest (as if created outside the agent). Emits nothing."""
        with self._lock:
            if info.uuid in self._domains:
                raise DriverError(f"fakevirt: a domain with uuid {info.uuid} already exists")
            if info.name in self._names:
                raise DriverError(f"fakevirt: a domain named {info.name!r} already exists")
            self._domains[info.uuid] = info
            self._names[info.name] = info.uuid
            self._disks.add(info.uuid)
            self._persist()

    def set_power_state(self, instance_uuid: str, state: PowerState,
                        transition: Transition | None = None) -> None:
        """Changes a guest's state as if it happened inside the hypervisor (a guest crashed or
        shut itself down), emitting `transition` when given."""
        self._change(instance_uuid, lambda _: (state, (transition,) if transition else ()))

    def has_disks(self, instance_uuid: str) -> bool:
        """Whether the guest's disks are on this host (kept by destroy(destroy_disks=False))."""
        with self._lock:
            return instance_uuid in self._disks

    def plugged_vifs(self, instance_uuid: str) -> tuple[VIF, ...]:
        with self._lock:
            return self._vifs.get(instance_uuid, ())

    # -- internals ----------------------------------------------------------------------------
    def _get(self, instance_uuid: str) -> InstanceInfo:
        try:
            return self._domains[instance_uuid]
        except KeyError:
            raise InstanceNotFound(instance_uuid) from None

    def _change(self, instance_uuid: str, decide, method: str | None = None) -> None:
        """Under the lock: `decide(state) -> (new_state, transitions)` (the domains file
        rewritten); then, outside it, `method`'s `faults.done` and the events."""
        with self._lock:
            info = self._get(instance_uuid)
            new_state, transitions = decide(info.power_state)
            if new_state != info.power_state:
                self._domains[instance_uuid] = dataclasses.replace(info, power_state=new_state)
                self._persist()
        if method is not None:
            self.faults.done(method, instance_uuid)
        for transition in transitions:
            self._emit(instance_uuid, transition)

    def _persist(self) -> None:
        """Rewrite the domains file, if any (under the lock: a new file renamed over the old,
        so a process killed at any moment leaves the old state or the new, never half)."""
        if not self._domains_file:
            return
        with self._lock:
            state = {"domains": [{"uuid": d.uuid, "name": d.name,
                                  "power_state": int(d.power_state), "vcpus": d.vcpus,
                                  "memory_mb": d.memory_mb, "disk_gb": d.disk_gb}
                                 for d in self._domains.values()],
                     "disks": sorted(self._disks)}
            tmp = f"{self._domains_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f)
            os.replace(tmp, self._domains_file)

    def _load_domains(self, path: str) -> None:
        """The domains (and kept disks) a domains file holds; DriverError naming the file when
        it cannot be read."""
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            infos = [InstanceInfo(d["uuid"], d["name"], PowerState(d["power_state"]),
                                  d["vcpus"], d["memory_mb"], d["disk_gb"])
                     for d in state["domains"]]
            disks = set(state.get("disks", ()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DriverError(f"fakevirt: domains file {path}: cannot read it: {exc}") from None
        LOG.info("fakevirt: %s from %s", plural(len(infos), "domain"), path)
        with self._lock:
            for info in infos:
                self._domains[info.uuid] = info
                self._names[info.name] = info.uuid
            self._disks = disks

    def _emit(self, instance_uuid: str, transition: Transition) -> None:
        self.emit_event(LifecycleEvent(instance_uuid, transition, self._clock()))


def _start(state: PowerState):
    if state == PowerState.RUNNING:
        return state, ()
    return _restart(state)


def _restart(state: PowerState):
    if state in ACTIVE_POWER_STATES:
        return PowerState.RUNNING, (Transition.STOPPED, Transition.STARTED)
    return PowerState.RUNNING, (Transition.STARTED,)


def _info(domain: DomainSpec) -> InstanceInfo:
    return InstanceInfo(domain.uuid, domain.name, domain.power_state, domain.vcpus,
                        domain.memory_mb, domain.disk_gb)
