"""Waiting on a guest's own shutdown, for the libvirt driver's clean power-off and soft reboot.

A clean shutdown is a request (ACPI power button): the guest's OS decides whether and when to
go off. These helpers ask, then read the domain's state every `poll_interval` seconds until it
is off or the time allowed has passed; what happens then (destroy, hard reboot) is the
caller's. The clock and the sleep are injected, so tests need not wait.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

LOG = logging.getLogger(__name__)

VIR_ERR_OPERATION_INVALID = 55  # e.g. destroying a guest that is not running


def ignore_invalid(call: Callable[[], Any]) -> None:
    """Run a state change that is harmless to repeat (the guest already got there)."""
    import libvirt

    try:
        call()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != VIR_ERR_OPERATION_INVALID:
            raise


@dataclass(frozen=True)
class ShutdownWaiter:
    poll_interval: float = 0.5  # seconds between two reads of the guest's state
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

    def shutdown_and_wait(self, dom: Any, uuid: str, timeout: float, option: str) -> bool:
        """Ask the guest (a libvirt domain) to shut down; True once it is off, False after
        `timeout` seconds, with one warning naming the `option` that allowed them. libvirt
        errors other than 'already off' propagate."""
        ignore_invalid(dom.shutdown)
        deadline = self.monotonic() + timeout
        while True:
            if not dom.isActive():
                return True
            if self.monotonic() >= deadline:
                LOG.warning("Instance %s did not shut down within %.0f s (%s)", uuid, timeout,
                            option)
                return False
            self.sleep(self.poll_interval)

    def soft_reboot(self, dom: Any, uuid: str, timeout: float) -> bool:
        """nova's libvirt `_soft_reboot`: ask the running guest to shut down, wait up to
        `timeout` seconds ([libvirt] wait_soft_reboot_seconds) and start it again. True when
        it was rebooted (or found started again by someone else, under a new domain id);
        False when it stayed on or libvirt failed on the way: the caller reboots it hard."""
        import libvirt

        try:
            old_id = dom.ID()
            if not self.shutdown_and_wait(dom, uuid, timeout, "wait_soft_reboot_seconds"):
                return False
            if dom.isActive() and dom.ID() != old_id:
                return True
            dom.create()
            return True
        except libvirt.libvirtError as exc:
            LOG.debug("Soft reboot of %s failed: %s", uuid, exc.get_error_message())
            return False
