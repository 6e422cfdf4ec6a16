"""The ComputeDriver interface: what the manager and the resource tracker need of a hypervisor,
and nothing more.

Every method says when it is called, what it returns and what it raises. Platform objects
(libvirt domains) never cross this interface; guests are named by `InstanceRef` and described by
`InstanceInfo`. `fakevirt.FakeDriver` is the reference implementation of these semantics; one
contract test body runs against every driver.
"""

from __future__ import annotations

import abc
from typing import Callable, Sequence

from agent.virt.types import (Capabilities, DriverInfo, HostResources, InstanceInfo,
                              InstanceRef, LifecycleEvent, RebootType, VIF)

EventListener = Callable[[LifecycleEvent], None]
# Called with (available, reason) when the connection to the hypervisor is lost or restored.
ConnectionListener = Callable[[bool, str], None]


class ComputeDriver(abc.ABC):
    """Base class of the virt drivers."""

    #: Short name used in config (`compute_driver`) and the inventory.
    name: str = "base"
    capabilities: Capabilities = Capabilities()

    # -- host lifecycle ---------------------------------------------------------------------
    @abc.abstractmethod
    def init_host(self, host: str) -> None:
        """Called once at start-up, after the service row exists and the heartbeat runs, before
        any other method. Connects to the hypervisor and checks it is usable.

        Raises `HypervisorVersionError` below the supported version floor and `DriverError` when
        the hypervisor cannot be used; the agent then stops. Non-fatal findings go to
        `get_driver_info().warnings` and the log."""

    def cleanup_host(self) -> None:
        """Called once at shutdown, after the periodic jobs have stopped. Releases connections
        and threads. Never raises."""

    @abc.abstractmethod
    def get_driver_info(self) -> DriverInfo:
        """Called after `init_host` for the inventory and the logs."""

    # -- resources --------------------------------------------------------------------------
    @abc.abstractmethod
    def get_available_nodes(self) -> list[str]:
        """Called by every resource audit. Returns the node names this host manages (one for
        libvirt and fakevirt: the hypervisor's hostname)."""

    @abc.abstractmethod
    def get_available_resource(self, nodename: str) -> HostResources:
        """Called by every resource audit, once per node. Returns the node's capacity and the
        hypervisor's own view of usage. Raises `DriverError` for a node it does not manage."""

    # -- guests -----------------------------------------------------------------------------
    @abc.abstractmethod
    def list_instances(self) -> list[InstanceInfo]:
        """Called by init_host (evacuation reconciliation, unknown guests), the inventory and the
        power-state sync. Returns every guest defined on the hypervisor, running or not."""

    @abc.abstractmethod
    def get_info(self, instance: InstanceRef, use_cache: bool = False) -> InstanceInfo:
        """Called for each instance by `_init_instance`, events and the power-state sync.
        Raises `InstanceNotFound` when the hypervisor has no such guest."""

    @abc.abstractmethod
    def destroy(self, instance: InstanceRef, network_info: Sequence[VIF] = (),
                destroy_disks: bool = True) -> None:
        """Called to remove a guest: an evacuated instance at start-up, or a partial delete being
        finished. Stops it if running and undefines it; keeps disks when `destroy_disks` is
        false (shared storage). A guest that is already gone is not an error."""

    @abc.abstractmethod
    def power_off(self, instance: InstanceRef, clean_shutdown: bool = True) -> None:
        """Called to retry an interrupted power-off. Raises `InstanceNotFound`."""

    @abc.abstractmethod
    def power_on(self, instance: InstanceRef) -> None:
        """Called to retry an interrupted power-on. Raises `InstanceNotFound`."""

    @abc.abstractmethod
    def reboot(self, instance: InstanceRef, reboot_type: RebootType) -> None:
        """Called to retry an interrupted reboot. A HARD reboot starts a stopped guest; a SOFT one
        of a guest that is not running raises `DriverError`. Raises `InstanceNotFound`."""

    @abc.abstractmethod
    def pause(self, instance: InstanceRef) -> None:
        """Pauses a running guest. Raises `InstanceNotFound`."""

    @abc.abstractmethod
    def unpause(self, instance: InstanceRef) -> None:
        """Called to retry an interrupted unpause. Raises `InstanceNotFound`."""

    @abc.abstractmethod
    def resume_state_on_host_boot(self, instance: InstanceRef,
                                  network_info: Sequence[VIF] = ()) -> None:
        """Called by `_init_instance` when the database says the guest was running, the
        hypervisor says it is not, and `resume_guests_state_on_host_boot` is set. Brings the
        guest back to running (hard reboot; a guest missing from the hypervisor raises
        `InstanceNotFound`)."""

    @abc.abstractmethod
    def plug_vifs(self, instance: InstanceRef, network_info: Sequence[VIF]) -> None:
        """Called by `_init_instance` for every instance it keeps, to re-create host-side
        network plumbing. Idempotent."""

    @abc.abstractmethod
    def finish_revert_migration(self, instance: InstanceRef, network_info: Sequence[VIF],
                                power_on: bool = True) -> None:
        """Called by `_init_instance` for an instance interrupted in `resize_migrating`: puts the
        guest back as it was before the resize, running when `power_on`."""

    # -- notifications ----------------------------------------------------------------------
    def register_event_listener(self, listener: EventListener | None) -> None:
        """Called by `ComputeManager.init_host` (None to unregister). The driver calls
        `listener` from its own thread for each lifecycle event; the listener must not block."""
        self._event_listener = listener

    def register_connection_listener(self, listener: ConnectionListener | None) -> None:
        """Called at start-up. The driver calls `listener(False, reason)` when it loses the
        hypervisor and `listener(True, "")` when it is back."""
        self._connection_listener = listener

    def emit_event(self, event: LifecycleEvent) -> None:
        listener = getattr(self, "_event_listener", None)
        if listener is not None:
            listener(event)

    def emit_connection(self, available: bool, reason: str = "") -> None:
        listener = getattr(self, "_connection_listener", None)
        if listener is not None:
            listener(available, reason)
