"""A driver that reads through to another and records every change instead of making it: the
hypervisor side of a dry run (`agent --once --dry-run`).

Reads (init_host, the driver info, nodes, resources, the guest listing and get_info) go to the
real driver, so a dry run plans on the hypervisor as it is. Every call that would change a
guest (spawn, rebuild, destroy, the power calls, plug_vifs, finish_revert_migration,
resume_state_on_host_boot) is logged as what would be done, kept in `calls`, and returns as if it
had succeeded; the guest is left as it was. Lifecycle and connection listeners are kept here and
never called: a dry run handles no events and changes no service row.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

from agent.virt.driver import ComputeDriver, ConnectionListener, EventListener
from agent.virt.types import (VIF, Capabilities, DriverInfo, Flavor, HostResources,
                              InstanceInfo, InstanceRef, RebootType)

LOG = logging.getLogger(__name__)


class RecordingDriver(ComputeDriver):
    """Wraps `inner`; `calls` lists (method, instance uuid, detail) of every change asked."""

    def __init__(self, inner: ComputeDriver):
        self.inner = inner
        self.name = inner.name
        self.calls: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return self.inner.capabilities

    # -- reads: the real driver -------------------------------------------------------------
    def init_host(self, host: str) -> None:
        self.inner.init_host(host)

    def cleanup_host(self) -> None:
        self.inner.cleanup_host()

    def get_driver_info(self) -> DriverInfo:
        return self.inner.get_driver_info()

    def get_available_nodes(self) -> list[str]:
        return self.inner.get_available_nodes()

    def get_available_resource(self, nodename: str) -> HostResources:
        return self.inner.get_available_resource(nodename)

    def list_instances(self) -> list[InstanceInfo]:
        return self.inner.list_instances()

    def get_info(self, instance: InstanceRef, use_cache: bool = False) -> InstanceInfo:
        return self.inner.get_info(instance, use_cache=use_cache)

    # -- changes: recorded ------------------------------------------------------------------
    def _record(self, method: str, instance: InstanceRef, detail: str = "") -> None:
        with self._lock:
            self.calls.append((method, instance.uuid, detail))
        LOG.warning("dry run: instance %s: would %s%s", instance.uuid, method,
                    f" ({detail})" if detail else "")

    def spawn(self, instance: InstanceRef, flavor: Flavor, image_ref: str | None,
              network_info: Sequence[VIF] = ()) -> None:
        self._record("spawn", instance, f"{flavor.vcpus} vCPUs, {flavor.memory_mb} MiB, "
                                        f"image {image_ref or '(none)'}")

    def rebuild(self, instance: InstanceRef, flavor: Flavor, image_ref: str | None,
                network_info: Sequence[VIF] = ()) -> None:
        self._record("rebuild", instance, f"image {image_ref or '(none)'}")

    def destroy(self, instance: InstanceRef, network_info: Sequence[VIF] = (),
                destroy_disks: bool = True) -> None:
        self._record("destroy", instance, "with its disks" if destroy_disks
                     else "keeping its disks")

    def power_off(self, instance: InstanceRef, clean_shutdown: bool = True) -> None:
        self._record("power-off", instance)

    def power_on(self, instance: InstanceRef) -> None:
        self._record("power-on", instance)

    def reboot(self, instance: InstanceRef, reboot_type: RebootType) -> None:
        self._record(f"reboot-{reboot_type.value.lower()}", instance)

    def pause(self, instance: InstanceRef) -> None:
        self._record("pause", instance)

    def unpause(self, instance: InstanceRef) -> None:
        self._record("unpause", instance)

    def resume_state_on_host_boot(self, instance: InstanceRef,
                                  network_info: Sequence[VIF] = ()) -> None:
        self._record("resume-state-on-host-boot", instance)

    def plug_vifs(self, instance: InstanceRef, network_info: Sequence[VIF]) -> None:
        # Every kept instance plugs its VIFs at start-up: recorded quietly.
        with self._lock:
            self.calls.append(("plug-vifs", instance.uuid, ""))

    def finish_revert_migration(self, instance: InstanceRef, network_info: Sequence[VIF],
                                power_on: bool = True) -> None:
        self._record("finish-revert-migration", instance,
                     "running" if power_on else "stopped")

    # -- listeners: kept, never called ------------------------------------------------------
    def register_event_listener(self, listener: EventListener | None) -> None:
        if listener is not None:
            LOG.info("dry run: lifecycle events are not handled")

    def register_connection_listener(self, listener: ConnectionListener | None) -> None:
        """A dry run marks no service row: the hypervisor's losses are not reported."""
