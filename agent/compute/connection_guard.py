"""The service consequence of losing the hypervisor: a connection listener that disables the
compute service while the driver's connection is lost and re-enables it when it is back.

Register it with `driver.register_connection_listener(ConnectionGuard(db, service_id))` and
`close()` it at shutdown. The re-enable only lifts the guard's own automatic reason, so a
disable an operator set meanwhile (or before) is never cleared.

A change the database cannot take (it is unreachable too) is retried on a thread of the guard's
own, with backoff, until the row says what the connection is: a libvirtd lost during a database
outage must not leave the service enabled once the database is back.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

from agent import registry
from agent.failure_log import FailureLog
from agent.vocabulary import AUTO_PREFIX

LOG = logging.getLogger(__name__)

CONNECTION_LOST_REASON = AUTO_PREFIX + "connection to libvirt lost"

# Seconds between attempts to record a change the database did not take; the last repeats.
RETRY_DELAYS_S: tuple[float, ...] = (1, 2, 4, 8, 15, 30)


class ConnectionGuard:
    """Called by the driver's dispatcher thread with (available, reason); database errors are
    logged, never raised into the driver."""

    def __init__(self, db, service_id: int, *, disabled_reason: str = CONNECTION_LOST_REASON,
                 retry_delays: Sequence[float] = RETRY_DELAYS_S):
        self._db = db
        self._service_id = service_id
        self._disabled_reason = disabled_reason
        self._retry_delays = tuple(retry_delays) or (1.0,)
        self._failures = FailureLog(LOG, "recording the hypervisor connection state on "
                                         f"service id {service_id}", level=logging.WARNING)
        self._lock = threading.Lock()
        self._wanted: bool | None = None  # the connection's last reported state
        self._retrying = False
        self._stop = threading.Event()

    def __call__(self, available: bool, reason: str = "") -> None:
        with self._lock:
            self._wanted = available
        if not available:
            LOG.warning("Hypervisor connection lost (%s): disabling service id %s",
                        reason or "no reason given", self._service_id)
        if not self._record(available):
            self._start_retrying()

    @property
    def failed_attempts(self) -> int:
        """Attempts to record the connection state on the service row that failed since the
        last one that succeeded (0 while the row says it)."""
        return self._failures.failures

    def close(self) -> None:
        """Stop retrying (shutdown)."""
        self._stop.set()

    def _record(self, available: bool) -> bool:
        try:
            if available:
                registry.auto_enable(self._db, self._service_id, self._disabled_reason)
            else:
                registry.auto_disable(self._db, self._service_id, self._disabled_reason)
        except Exception as exc:  # noqa: BLE001 - the driver's thread must outlive an outage
            self._failures.failed(exc, "the hypervisor connection is "
                                       + ("back" if available else "lost")
                                       + "; retrying until the database takes it")
            return False
        self._failures.succeeded()
        return True

    def _start_retrying(self) -> None:
        with self._lock:
            if self._retrying or self._stop.is_set():
                return
            self._retrying = True
        threading.Thread(target=self._retry, daemon=True,
                         name=f"connection-guard {self._service_id}").start()

    def _retry(self) -> None:
        attempt = 0
        while not self._stop.wait(self._retry_delays[min(attempt,
                                                         len(self._retry_delays) - 1)]):
            attempt += 1
            with self._lock:
                wanted = self._wanted
            if self._record(wanted):
                with self._lock:
                    if self._wanted == wanted:
                        self._retrying = False
                        return
        with self._lock:
            self._retrying = False
