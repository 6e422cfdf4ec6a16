"""The service consequence of losing the hypervisor: a connection listener that disables the
compute service while the driver's connection is lost and re-enables it when it is back.

Register it with `driver.register_connection_listener(ConnectionGuard(db, service_id))`. The
re-enable only lifts the guard's own automatic reason, so a disable an operator set meanwhile
(or before) is never cleared.
"""

from __future__ import annotations

import logging

from agent import registry
from agent.failure_log import FailureLog
from agent.vocabulary import AUTO_PREFIX

LOG = logging.getLogger(__name__)

CONNECTION_LOST_REASON = AUTO_PREFIX + "connection to libvirt lost"


class ConnectionGuard:
    """Called by the driver's dispatcher thread with (available, reason); database errors are
    logged, never raised into the driver."""

    def __init__(self, db, service_id: int, *, disabled_reason: str = CONNECTION_LOST_REASON):
        self._db = db
        self._service_id = service_id
        self._disabled_reason = disabled_reason
        self._failures = FailureLog(LOG, "recording the hypervisor connection state on "
                                         f"service id {service_id}", level=logging.WARNING)

    def __call__(self, available: bool, reason: str = "") -> None:
        try:
            if available:
                registry.auto_enable(self._db, self._service_id, self._disabled_reason)
            else:
                LOG.warning("Hypervisor connection lost (%s): disabling service id %s",
                            reason or "no reason given", self._service_id)
                registry.auto_disable(self._db, self._service_id, self._disabled_reason)
        except Exception as exc:  # noqa: BLE001 - the driver's thread must outlive an outage
            self._failures.failed(exc, "the hypervisor connection is "
                                       + ("back" if available else "lost"))
        else:
            self._failures.succeeded()
