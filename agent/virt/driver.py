"""The ComputeDriver interface: what the manager and the resource tracker need of a hypervisor,
and nothing more.

Every method says who calls it (start-up's `_init_instance`, the instance operations' RPC
handlers, the power sync), what it returns, what it raises and what a duplicate call does (an
RPC may be delivered twice, a start-up may retry what a crash interrupted). Platform objects
(libvirt domains) never cross this interface; guests are named by `InstanceRef` and described by
`InstanceInfo`. `fakevirt.FakeDriver` is the reference implementation of these semantics; one
contract test body runs against every driver.
"""

from __future__ import annotations

import abc
from typing import Callable, Sequence

from agent.virt.types import (VIF, Capabilities, DriverInfo, Flavor, HostResources,
                              InstanceInfo, InstanceRef, LifecycleEvent, RebootType)

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
    def spawn(self, instance: InstanceRef, flavor: Flavor, image_ref: str | None,
              network_info: Sequence[VIF] = ()) -> None:
        """Create the guest and start it (nova's `spawn`): `flavor`'s vCPUs and memory (MiB),
        booted from `image_ref` (None: no image), its `network_info` plugged first. Returns once
        the hypervisor runs it; RUNNING from then on, with a STARTED event.

        Callers: the build RPC (`build_and_run_instance`) on the host the scheduler chose, and
        evacuation's recreate on the destination (the guest is spawned again there, from the
        same flavor and image). A duplicate call, for a guest this hypervisor already defines,
        raises `InstanceExists` and leaves that guest as it was; the manager's lock and the
        instance's task_state keep a second build from getting this far. Raises `DriverError`
        when the guest cannot be created (nothing is left defined)."""

    def rebuild(self, instance: InstanceRef, flavor: Flavor, image_ref: str | None,
                network_info: Sequence[VIF] = ()) -> None:
        """Rebuild the guest from `image_ref` in place (nova's `rebuild`). Callers: the rebuild
        RPC (`rebuild_instance`), and evacuation when the driver can recreate in place.

        Drivers without an in-place rebuild raise NotImplementedError (this default); the
        manager then does what nova's `_rebuild_default_impl` does: `destroy` (disks kept on
        shared storage for an evacuation), then `spawn`. Each of those two is safe to repeat
        as its own docstring says, so a duplicate rebuild ends with one running guest."""
        raise NotImplementedError("rebuild")

    @abc.abstractmethod
    def destroy(self, instance: InstanceRef, network_info: Sequence[VIF] = (),
                destroy_disks: bool = True) -> None:
        """Stop the guest if it runs and undefine it (nova's `destroy`, the hypervisor side of
        terminate); keeps disks when `destroy_disks` is false (shared storage).

        Callers: the terminate RPC (`terminate_instance`), start-up finishing a partial delete
        and removing an evacuated instance's guest, and rebuild's default (destroy, then
        spawn). A duplicate call, for a guest already gone, does nothing and raises nothing."""

    @abc.abstractmethod
    def power_off(self, instance: InstanceRef, clean_shutdown: bool = True) -> None:
        """Stop the guest (clean_shutdown: ACPI shutdown first, destroyed after
        `shutdown_timeout`); SHUTDOWN, with a STOPPED event.

        Callers: the stop RPC (`stop_instance`), and start-up retrying an interrupted
        power-off. A duplicate call, for a guest already off, does nothing. Raises
        `InstanceNotFound`."""

    @abc.abstractmethod
    def power_on(self, instance: InstanceRef) -> None:
        """Start the guest; RUNNING, with a STARTED event (a paused one is resumed).

        Callers: the start RPC (`start_instance`), and start-up retrying an interrupted
        power-on. A duplicate call, for a running guest, does nothing. Raises
        `InstanceNotFound`."""

    @abc.abstractmethod
    def reboot(self, instance: InstanceRef, reboot_type: RebootType) -> None:
        """Reboot the guest. HARD: destroy and start, whatever its state (a stopped guest is
        started). SOFT: a clean shutdown and start of a running guest, falling back to HARD when
        the guest does not shut down in time; a SOFT reboot of a guest that is not running
        raises `DriverError` (the caller then asks for HARD, as nova's manager does).

        Callers: the reboot RPC (`reboot_instance`), and start-up retrying an interrupted
        reboot. A duplicate call reboots again (a reboot is never a no-op). Raises
        `InstanceNotFound`."""

    @abc.abstractmethod
    def pause(self, instance: InstanceRef) -> None:
        """Pause a running guest (its memory stays); PAUSED, with a PAUSED event.

        Callers: the pause RPC (`pause_instance`). A duplicate call, for a paused guest, does
        nothing. Raises `InstanceNotFound`, and `DriverError` for a guest that is off."""

    @abc.abstractmethod
    def unpause(self, instance: InstanceRef) -> None:
        """Resume a paused guest; RUNNING, with a RESUMED event.

        Callers: the unpause RPC (`unpause_instance`), and start-up retrying an interrupted
        unpause. A duplicate call, for a running guest, does nothing. Raises
        `InstanceNotFound`, and `DriverError` for a guest that is off."""

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
