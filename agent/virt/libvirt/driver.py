"""LibvirtDriver: the ComputeDriver on libvirt (QEMU/KVM hosts; libvirt's test hypervisor in
tests). Domain objects never leave this module; guests are named by `InstanceRef` (uuid first,
name as a fallback) and described by `InstanceInfo`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable, Iterator, Sequence

from agent.display import plural
from agent.errors import DriverError, InstanceExists, InstanceNotFound
from agent.virt.driver import ComputeDriver
from agent.virt.libvirt import checks, guests, resources
from agent.virt.libvirt.host import Host
from agent.virt.libvirt.power import ShutdownWaiter, ignore_invalid
from agent.virt.types import (ACTIVE_POWER_STATES, VIF, Capabilities, DriverInfo, Flavor,
                              HostResources, InstanceInfo, InstanceRef, PowerState, RebootType)

LOG = logging.getLogger(__name__)

VIR_ERR_NO_DOMAIN = 42
# Guest states in which resume_state_on_host_boot leaves the guest alone (as nova does).
_RESUME_LEAVES = (PowerState.RUNNING, PowerState.SUSPENDED, PowerState.NOSTATE,
                  PowerState.PAUSED)


class LibvirtDriver(ComputeDriver):
    """`shutdown_timeout` (default: the `shutdown_timeout` option) bounds a clean shutdown
    before the guest is destroyed, `wait_soft_reboot_seconds` (default: `[libvirt]
    wait_soft_reboot_seconds`) the shutdown of a soft reboot before it is done hard, in
    seconds; `poll_interval` is how often the guest's state is read while waiting."""

    name = "libvirt"
    capabilities = Capabilities(supports_evacuate=True, supports_events=True)

    def __init__(self, conf: Any, *, host: Host | None = None,
                 shutdown_timeout: float | None = None,
                 wait_soft_reboot_seconds: float | None = None,
                 poll_interval: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        self._conf = conf
        self._host = host or Host(conf.libvirt.connection_uri,
                                  keepalive=(conf.libvirt.keepalive_interval,
                                             conf.libvirt.keepalive_count))
        self._host.bind(on_event=self.emit_event, on_connection=self.emit_connection)
        self._shutdown_timeout = (conf.shutdown_timeout if shutdown_timeout is None
                                  else shutdown_timeout)
        self._wait_soft_reboot = (conf.libvirt.wait_soft_reboot_seconds
                                  if wait_soft_reboot_seconds is None
                                  else wait_soft_reboot_seconds)
        self._waiter = ShutdownWaiter(poll_interval, sleep, monotonic)
        self._info: DriverInfo | None = None
        self._arch: str | None = None
        self._hostname: str | None = None

    @property
    def libvirt_host(self) -> Host:
        """The connection to libvirtd this driver works through (its event loop, held stop
        events, keepalive): read-only, for diagnostics."""
        return self._host

    # -- host lifecycle -----------------------------------------------------------------------
    def init_host(self, host: str) -> None:
        self._host.initialize()
        conn = self._host.get_connection()
        with _errors("reading the hypervisor versions"):
            libvirt_version = checks.version_from_int(conn.getLibVersion())
            hv_type = conn.getType()
            hv_version = conn.getVersion()
            arch = resources.host_arch(conn.getCapabilities())
        libvirt_conf = self._conf.libvirt
        try:
            warnings = checks.init_host_warnings(
                virt_type=libvirt_conf.virt_type, host_arch=arch,
                uid_maps=libvirt_conf.uid_maps or (), gid_maps=libvirt_conf.gid_maps or (),
                libvirt_version=libvirt_version, hypervisor_type=hv_type,
                hypervisor_version=checks.version_from_int(hv_version))
        except DriverError:
            self._host.close()
            raise
        for warning in warnings:
            LOG.warning("%s", warning)
        self._info = DriverInfo(self.name, hv_type, hv_version, tuple(warnings))
        self._arch = arch
        LOG.info("libvirt %s, %s %s at %s (host %s)", checks.format_version(libvirt_version),
                 hv_type, checks.format_version(checks.version_from_int(hv_version)),
                 self._host.uri, host)

    def cleanup_host(self) -> None:
        try:
            self._host.close()
        except Exception:  # noqa: BLE001 - cleanup never raises
            LOG.exception("Closing the libvirt connection failed")

    def get_driver_info(self) -> DriverInfo:
        if self._info is None:
            raise DriverError("get_driver_info called before init_host")
        return self._info

    # -- resources ----------------------------------------------------------------------------
    def get_available_nodes(self) -> list[str]:
        return [self._node_name()]

    def _node_name(self) -> str:
        with _errors("reading the hostname"):
            hostname = self._host.get_connection().getHostname()
        if self._hostname is None:
            self._hostname = hostname
        elif hostname != self._hostname:
            LOG.warning("The hypervisor hostname changed from %s to %s; keeping %s as the node "
                        "name", self._hostname, hostname, self._hostname)
        return self._hostname

    def get_available_resource(self, nodename: str) -> HostResources:
        node_name = self._node_name()
        if nodename != node_name:
            raise DriverError(f"node {nodename!r} is not managed by this host (its node is "
                              f"{node_name!r})")
        conn = self._host.get_connection()
        with _errors("reading host resources"):
            node = resources.NodeInfo.from_libvirt(conn.getInfo())
            caps = conn.getCapabilities()
            hv_type = conn.getType()
            hv_version = conn.getVersion()
        active = [info for info in self._domain_infos() if info.power_state in ACTIVE_POWER_STATES]
        disk = resources.disk_usage(self._conf.instances_path)
        uptime = resources.read_uptime()
        return HostResources(
            hypervisor_hostname=node_name,
            vcpus=self._online_cpus(conn, node),
            memory_mb=node.memory_mb,
            local_gb=disk.total_gb,
            vcpus_used=sum(info.vcpus for info in active),
            memory_mb_used=self._memory_mb_used(conn, node, active),
            local_gb_used=disk.used_gb,
            hypervisor_type=hv_type,
            hypervisor_version=hv_version,
            cpu_info=resources.cpu_info_json(caps, node),
            disk_available_least=disk.available_least_gb,
            stats={"uptime": str(uptime)} if uptime is not None else {},
        )

    def _online_cpus(self, conn: Any, node: resources.NodeInfo) -> int:
        import libvirt

        try:
            _total, _cpumap, online = conn.getCPUMap()
            return int(online)
        except libvirt.libvirtError as exc:
            LOG.debug("getCPUMap unavailable on %s (%s); using the node's CPU count",
                      self._host.uri, exc.get_error_message())
            return node.cpus

    def _memory_mb_used(self, conn: Any, node: resources.NodeInfo,
                        active: Sequence[InstanceInfo]) -> int:
        import libvirt

        try:
            stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
        except libvirt.libvirtError as exc:
            LOG.debug("Node memory statistics unavailable on %s (%s); counting the memory of "
                      "active guests", self._host.uri, exc.get_error_message())
            return min(node.memory_mb, sum(info.memory_mb for info in active))
        return resources.memory_mb_used(node.memory_mb, stats)

    # -- guests -------------------------------------------------------------------------------
    def list_instances(self) -> list[InstanceInfo]:
        return self._domain_infos()

    def _domain_infos(self) -> list[InstanceInfo]:
        """Every defined guest. One bulk statistics call gives state, vCPUs and memory where the
        hypervisor reports them; a guest it says less about is asked with one info() call."""
        import libvirt

        conn = self._host.get_connection()
        wanted = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU
                  | libvirt.VIR_DOMAIN_STATS_BALLOON)
        with _errors("listing guests"):
            try:
                records = conn.getAllDomainStats(wanted)
            except libvirt.libvirtError as exc:
                LOG.debug("Bulk domain statistics unavailable on %s (%s)", self._host.uri,
                          exc.get_error_message())
                records = [(dom, {}) for dom in conn.listAllDomains(0)]
            infos = []
            for dom, stats in records:
                try:
                    infos.append(guests.info_from_stats(dom, stats)
                                 or guests.info_from_domain(dom))
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != VIR_ERR_NO_DOMAIN:
                        raise
                    # undefined while we listed: it is no longer on the hypervisor
        return infos

    def get_info(self, instance: InstanceRef, use_cache: bool = False) -> InstanceInfo:
        with self._domain(instance, "reading the state") as dom:
            return guests.info_from_domain(dom)

    def spawn(self, instance: InstanceRef, flavor: Flavor, image_ref: str | None,
              network_info: Sequence[VIF] = ()) -> None:
        """Define the guest (agent.virt.libvirt.guests: the flavor's vCPUs and memory, no
        disk) and start it. InstanceExists when a domain has its uuid or name; a guest that
        cannot be started is undefined again."""
        import libvirt

        info = self.get_driver_info()
        conn = self._host.get_connection()
        for lookup, key in ((conn.lookupByUUIDString, instance.uuid),
                            (conn.lookupByName, instance.name)):
            try:
                lookup(key)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != VIR_ERR_NO_DOMAIN:
                    raise DriverError(f"libvirt: spawning {instance.uuid} failed: "
                                      f"{exc.get_error_message()}") from None
            else:
                raise InstanceExists(instance.uuid)
        try:
            xml = guests.guest_xml(
                instance, flavor, image_ref, arch=self._arch or "x86_64",
                dom_type=guests.domain_type(info.hypervisor_type,
                                               self._conf.libvirt.virt_type))
        except ValueError as exc:
            raise DriverError(f"libvirt: spawning {instance.uuid} failed: {exc}") from None
        self.plug_vifs(instance, network_info)
        with _errors(f"defining {instance.uuid}"):
            dom = conn.defineXML(xml)
        try:
            with _errors(f"starting {instance.uuid}"):
                dom.create()
        except DriverError:
            ignore_invalid(dom.undefine)
            raise
        LOG.info("Instance %s spawned (%s vCPUs, %s MiB)", instance.uuid, flavor.vcpus,
                 flavor.memory_mb)

    def destroy(self, instance: InstanceRef, network_info: Sequence[VIF] = (),
                destroy_disks: bool = True) -> None:
        import libvirt

        try:
            with self._domain(instance, "destroying") as dom:
                disks = self._local_disks(dom)
                if dom.isActive():
                    ignore_invalid(dom.destroy)
                if dom.isPersistent():
                    flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                    try:
                        dom.undefineFlags(flags)
                    except libvirt.libvirtError as exc:
                        if exc.get_error_code() == VIR_ERR_NO_DOMAIN:
                            raise
                        dom.undefine()
        except InstanceNotFound:
            LOG.debug("Instance %s is already gone from the hypervisor", instance.uuid)
            return
        if not destroy_disks:
            if disks:
                LOG.info("Kept the disks of %s (shared storage): %s", instance.uuid,
                         ", ".join(disks))
            return
        for path in disks:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                LOG.warning("Cannot remove disk %s of %s: %s", path, instance.uuid, exc)

    def _local_disks(self, dom: Any) -> list[str]:
        """File-backed disks of the guest that live under instances_path (only those are ours
        to delete)."""
        root = os.path.join(os.path.realpath(self._conf.instances_path), "")
        paths = []
        for source in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/disk/source"):
            path = source.get("file")
            if path and os.path.realpath(path).startswith(root):
                paths.append(path)
        return paths

    def power_off(self, instance: InstanceRef, clean_shutdown: bool = True) -> None:
        with self._domain(instance, "powering off") as dom:
            if not dom.isActive():
                return
            if clean_shutdown and self._waiter.shutdown_and_wait(
                    dom, instance.uuid, self._shutdown_timeout,
                    "shutdown_timeout; destroying it"):
                return
            ignore_invalid(dom.destroy)

    def power_on(self, instance: InstanceRef) -> None:
        with self._domain(instance, "powering on") as dom:
            state = checks.power_state_from_domain_state(dom.info()[0])
            if state == PowerState.PAUSED:
                dom.resume()
            elif not dom.isActive():
                dom.create()

    def reboot(self, instance: InstanceRef, reboot_type: RebootType) -> None:
        """HARD: destroy and start. SOFT, as nova's libvirt driver: ask the running guest to
        shut down, wait up to `[libvirt] wait_soft_reboot_seconds` for it to go off and start
        it again; a guest that does not go off in time (no OS, or one that ignores ACPI), or a
        libvirt error on the way, is rebooted HARD (one warning)."""
        with self._domain(instance, f"{reboot_type.value.lower()} reboot") as dom:
            if reboot_type is RebootType.SOFT:
                state = checks.power_state_from_domain_state(dom.info()[0])
                if state != PowerState.RUNNING:
                    raise DriverError(f"soft reboot of {instance.uuid}: the guest is not "
                                      f"running ({state.name})")
                if self._waiter.soft_reboot(dom, instance.uuid, self._wait_soft_reboot):
                    LOG.info("Instance %s soft rebooted", instance.uuid)
                    return
                LOG.warning("Soft reboot of %s failed; rebooting hard", instance.uuid)
            if dom.isActive():
                ignore_invalid(dom.destroy)
            dom.create()

    def pause(self, instance: InstanceRef) -> None:
        with self._domain(instance, "pausing") as dom:
            if checks.power_state_from_domain_state(dom.info()[0]) != PowerState.PAUSED:
                dom.suspend()

    def unpause(self, instance: InstanceRef) -> None:
        with self._domain(instance, "unpausing") as dom:
            if checks.power_state_from_domain_state(dom.info()[0]) != PowerState.RUNNING:
                dom.resume()

    def resume_state_on_host_boot(self, instance: InstanceRef,
                                  network_info: Sequence[VIF] = ()) -> None:
        state = self.get_info(instance).power_state
        if state in _RESUME_LEAVES:
            LOG.debug("Instance %s is %s; nothing to resume", instance.uuid, state.name)
            return
        self.reboot(instance, RebootType.HARD)

    def plug_vifs(self, instance: InstanceRef, network_info: Sequence[VIF]) -> None:
        # Host-side VIF plumbing (bridges, taps, OVS ports) belongs to the network service on
        # this host, not to the agent; libvirt re-creates taps when it starts a guest.
        LOG.debug("plug_vifs for %s: %s left to the network service", instance.uuid,
                  plural(len(network_info), "VIF"))

    def finish_revert_migration(self, instance: InstanceRef, network_info: Sequence[VIF],
                                power_on: bool = True) -> None:
        with self._domain(instance, "reverting a resize") as dom:
            if power_on and not dom.isActive():
                dom.create()

    # -- domain lookup ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _domain(self, instance: InstanceRef, action: str) -> Iterator[Any]:
        """The guest's domain, by uuid then by name; libvirt errors inside become
        `InstanceNotFound` (the guest vanished) or `DriverError` naming the action."""
        import libvirt

        conn = self._host.get_connection()
        with _errors(f"{action} {instance.uuid}", instance):
            try:
                dom = conn.lookupByUUIDString(instance.uuid)
            except libvirt.libvirtError as exc:
                if not instance.name:
                    raise
                LOG.debug("No domain with uuid %s (%s); looking up name %s", instance.uuid,
                          exc.get_error_message(), instance.name)
                dom = conn.lookupByName(instance.name)
            yield dom


@contextlib.contextmanager
def _errors(action: str, instance: InstanceRef | None = None) -> Iterator[None]:
    import libvirt

    try:
        yield
    except libvirt.libvirtError as exc:
        if instance is not None and exc.get_error_code() == VIR_ERR_NO_DOMAIN:
            raise InstanceNotFound(instance.uuid) from None
        raise DriverError(f"libvirt: {action} failed: {exc.get_error_message()}") from None

