"""The heartbeat: one UPDATE of this host's service row every `report_interval`.

The beat stamps `last_seen_up` with the database server's clock (so liveness is judged with one
clock, whatever the host's clock says) and `last_seen_host_time` with the host's clock (so the
service list can show the host's clock offset). One beat is one plain method, `beat()`, that
tests drive without threads; `start()` runs it on a thread of its own so that long start-up work
or audits cannot delay it.

SQLite has no server: its "database clock" is the clock of the process that writes. That is
right for the one host an embedded database serves, but a host-clock skew test (faketime around
the agent) needs PostgreSQL or MariaDB.

Each beat also stamps `last_seen_by` with the agent's identity (agent.service_owner), and
matches only while no other identity is on the row: when another agent beats into it, the
heartbeat logs that once as an error (and once when it stops) and beats anyway.

The heartbeat never dies. A failure (database unreachable, service row deleted, anything else)
is logged once when it starts and once when it clears, and the schedule goes on. A deleted row is
not recreated: the operator deleted the service on purpose, and only a restart registers again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from agent.config import short_reason
from agent.db.models import Service, utcnow
from agent.errors import DatabaseError
from agent.log import request_context
from agent.service_owner import intruder_message, read_owner

LOG = logging.getLogger(__name__)

# is_healthy() allows two missed intervals plus this slack before calling the thread stuck.
HEALTH_SLACK_SECONDS = 1.0

_GONE = "gone"
_UNREACHABLE = "unreachable"
_ERROR = "error"


def host_utcnow() -> dt.datetime:
    """The host's clock, as naive UTC (the form every stored time takes)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


class Heartbeat:
    """Reports this service alive every `interval` seconds; see the module docstring."""

    def __init__(self, db, service_id: int, interval: float, *,
                 clock: Callable[[], dt.datetime] = host_utcnow, initial_delay: float = 0.0,
                 name: str = "heartbeat", host: str | None = None, binary: str | None = None,
                 agent_id: str | None = None):
        self._db = db
        self.service_id = service_id
        self.interval = float(interval)
        self.initial_delay = float(initial_delay)
        self.name = name
        self._clock = clock
        self._host = host
        self._binary = binary
        self.agent_id = agent_id
        # Built once: the one statement of every beat, which matches only while no other
        # agent's identity is on the row. updated_at follows through its onupdate.
        values = {"report_count": Service.report_count + 1, "last_seen_up": utcnow(),
                  "last_seen_host_time": bindparam("host_time")}
        if agent_id is not None:
            values["last_seen_by"] = agent_id
        ours = Service.last_seen_by.is_(None)
        if agent_id is not None:
            ours = or_(ours, Service.last_seen_by == agent_id)
        self._statement = (update(Service)
                           .where(Service.id == service_id, Service.deleted == 0, ours)
                           .values(**values))
        # After another agent beat into the row: this agent's beat goes in anyway (it still
        # runs this host), and the intrusion is logged.
        self._take_back = (update(Service)
                           .where(Service.id == service_id, Service.deleted == 0)
                           .values(**values))
        self._intruder: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._condition: str | None = None
        self._failed_beats = 0
        self._last_activity: float | None = None
        self.beats_ok = 0
        self.beats_failed = 0
        self.last_error: str | None = None
        # time.monotonic() when the last beat failed (None: never): a service row that looks
        # stale is explained by the beats that did not land.
        self.last_failed_at: float | None = None

    # -- one tick ---------------------------------------------------------------------------
    def beat(self) -> bool:
        """Send one beat: exactly one UPDATE, no read before it (while another agent beats
        into the row: that UPDATE, a read naming the other agent, and the beat). Returns
        whether the row was updated. Never raises."""
        with request_context():
            self._last_activity = time.monotonic()
            try:
                params = {"host_time": _naive_utc(self._clock())}
                with self._db.single_statement() as conn:
                    matched = conn.execute(self._statement, params).rowcount
                if matched != 1:
                    matched = self._beat_after_intruder(params)
                elif self._intruder is not None:
                    LOG.info("%s: no other agent beats into %s any more", self.name,
                             self._describe(lookup=False))
                    self._intruder = None
            except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive any error
                self._failed(self._classify(exc), exc)
                return False
            finally:
                self._last_activity = time.monotonic()
            if matched != 1:
                self._failed(_GONE, None)
                return False
            self._succeeded()
            return True

    def _beat_after_intruder(self, params) -> int:
        """The beat matched no row: gone (0), or another agent's identity is on it; then say
        so (once, until it stops) and beat anyway."""
        owner = read_owner(self._db, self.service_id)
        if owner is None:
            return 0
        if owner.last_seen_by != self._intruder:
            self._intruder = owner.last_seen_by
            self._host = self._host or owner.host
            LOG.error("%s: %s", self.name, intruder_message(self._host, self.service_id,
                                                            owner.last_seen_by, self.agent_id))
        with self._db.single_statement() as conn:
            return conn.execute(self._take_back, params).rowcount

    def _classify(self, exc: BaseException) -> str:
        # DatabaseError: the agent's own word for a database it cannot use (its SQLite file
        # deleted or damaged), said in one line that names the file.
        if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError,
                            DatabaseError)):
            return _UNREACHABLE
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return _UNREACHABLE
        return _ERROR

    def _succeeded(self) -> None:
        self.beats_ok += 1
        if self._condition is not None:
            LOG.info("%s recovered: %s reported again after %d failed beats", self.name,
                     self._describe(lookup=False), self._failed_beats)
        self._condition = None
        self._failed_beats = 0
        self.last_error = None
        LOG.debug("%s: service id %s reported (beat %d)", self.name, self.service_id,
                  self.beats_ok)

    def _failed(self, condition: str, exc: BaseException | None) -> None:
        self.last_failed_at = time.monotonic()
        self.beats_failed += 1
        self._failed_beats += 1
        if condition == _GONE:
            message = (f"the service row for {self._describe()} is gone (deleted from the "
                       "service registry, e.g. by 'agent services delete'); it is not "
                       "recreated: restart the agent to register this host again")
        elif condition == _UNREACHABLE:
            message = (f"cannot reach the database {self._db.url}: {short_reason(exc)}; "
                       f"retrying every {self.interval:g} s")
        else:
            message = f"beat failed: {type(exc).__name__}: {short_reason(exc)}"
        self.last_error = message
        if condition == self._condition:
            LOG.debug("%s: still failing (%d failed beats): %s", self.name, self._failed_beats,
                      message)
            return
        self._condition = condition
        if condition == _UNREACHABLE:
            LOG.warning("%s: %s", self.name, message)
        elif condition == _GONE:
            LOG.error("%s: %s", self.name, message)
        else:
            LOG.error("%s: %s", self.name, message, exc_info=exc)

    def _describe(self, lookup: bool = True) -> str:
        host, binary = self._host, self._binary
        if host is None and lookup:
            host, binary = self._lookup_identity()
        if host is None:
            return f"service id {self.service_id}"
        return f"host {host} binary {binary} (service id {self.service_id})"

    def _lookup_identity(self) -> tuple[str | None, str | None]:
        # Only when the row has just been found gone, to name it in the one error line.
        try:
            with self._db.connect() as conn:
                row = conn.execute(select(Service.host, Service.binary)
                                   .where(Service.id == self.service_id)).first()
        except Exception:  # noqa: BLE001 - a diagnostic only
            return None, None
        if row is None:
            return None, None
        self._host, self._binary = row.host, row.binary
        return row.host, row.binary

    # -- the thread -------------------------------------------------------------------------
    def start(self) -> None:
        """Beat on a daemon thread of its own: first after `initial_delay`, then every
        `interval` measured start to start. A beat that overruns the interval is followed at
        once by the next one, without a catch-up burst."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._last_activity = time.monotonic() + self.initial_delay
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_start = time.monotonic() + self.initial_delay
        while not self._stop.wait(max(0.0, next_start - time.monotonic())):
            started = time.monotonic()
            self.beat()
            next_start = started + self.interval

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating; returns once the thread has finished (or after `timeout`)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                LOG.warning("%s: thread still busy in a beat %g s after stop", self.name,
                            timeout)

    @property
    def is_running(self) -> bool:
        """The beating thread is alive (waiting, beating, or stuck in a beat)."""
        return self._thread is not None and self._thread.is_alive()

    def is_healthy(self) -> bool:
        """True while the thread runs and its last beat attempt (successful or not) is recent:
        a database outage keeps it healthy, a dead or stuck thread does not."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._stop.is_set():
            return False
        last = self._last_activity
        if last is None:
            return False
        return time.monotonic() - last <= 2 * self.interval + HEALTH_SLACK_SECONDS
