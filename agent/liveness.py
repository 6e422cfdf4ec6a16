"""Is a service up? Pure functions over one service row and the database's current time.

Both times in the verdict come from the database server's clock (`last_seen_up` is written with
it, `db_now` is read with it), so a host whose own clock is off cannot change the verdict. The
host's clock offset is measured anyway, from `last_seen_host_time`, and shown to the operator.
SQLite has no server: there "the database's clock" is the clock of whichever process runs the
statement, so a process whose clock is off can be judged down, and no offset can be measured.

A last beat ahead of `db_now` (the database server's clock was set back after it was written) is
no proof of life: nothing says when that beat really happened. Beyond a small tolerance the
service is down, with a reason saying so; nova's servicegroup compares the absolute elapsed time
with service_down_time for the same reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from agent.vocabulary import AUTO_STARTING

# An offset beyond this is worth a warning: logs and certificates on that host are misleading,
# even though liveness is unaffected.
CLOCK_OFFSET_WARNING_SECONDS = 30.0

# How far a beat may be ahead of the database's clock and still count. A beat committed while a
# reader's statement ran is a little ahead of the `db_now` that statement read (PostgreSQL's
# now() is the transaction's start), and the stored times are rounded to the second on some
# backends; anything further ahead means the clock was stepped back.
FUTURE_TOLERANCE_SECONDS = 5.0


@dataclass(frozen=True)
class ServiceState:
    up: bool
    reason: str | None  # why the service is down, in words; None when up
    age_seconds: float | None  # db_now - (last_seen_up or created_at)
    clock_offset_seconds: float | None  # host clock minus database clock at the last beat


class Liveness:
    """The verdicts at one reading of the database's clock: the window a service's last beat
    (or, never reported, its creation) must fall in to be up is worked out once, so judging a
    row is two datetime comparisons. Every verdict of the agent goes through this class
    (service_state, state_of, `agent services list`, the API), so there is one rule.

    `db_now` naive UTC from the database's clock; `service_down_time` in seconds."""

    __slots__ = ("db_now", "earliest", "latest", "service_down_time")

    def __init__(self, db_now: dt.datetime, service_down_time: float):
        self.db_now = db_now
        self.service_down_time = service_down_time
        self.earliest = db_now - dt.timedelta(seconds=service_down_time)
        self.latest = db_now + dt.timedelta(seconds=FUTURE_TOLERANCE_SECONDS)

    def is_up(self, forced_down: bool, last_seen_up: dt.datetime | None,
              created_at: dt.datetime | None) -> bool:
        """Up iff not forced down and db_now - service_down_time <= (last_seen_up or
        created_at) <= db_now + FUTURE_TOLERANCE_SECONDS."""
        reference = last_seen_up or created_at
        return (not forced_down and reference is not None
                and self.earliest <= reference <= self.latest)

    def state(self, forced_down: bool, last_seen_up: dt.datetime | None,
              created_at: dt.datetime | None, last_seen_host_time: dt.datetime | None, *,
              starting: bool = False) -> ServiceState:
        """The verdict of is_up with its age, clock offset and, when down, the reason: "forced
        down"; "last beat N s in the future" (a beat, or a creation never followed by a beat,
        beyond the tolerance ahead of db_now); "never reported (registered N s ago)"; "last
        seen N s ago". `starting`: the row still carries the agent's 'AUTO: starting', so a
        down service whose beats stopped died before its start-up finished, and its reason
        says so."""
        offset = clock_offset(last_seen_up, last_seen_host_time)
        reference = last_seen_up or created_at
        age = (self.db_now - reference).total_seconds() if reference is not None else None
        if forced_down:
            return ServiceState(False, "forced down", age, offset)
        if reference is not None and reference > self.latest:
            what = "last beat" if last_seen_up is not None else "never reported; registered"
            return ServiceState(False, f"{what} {-age:.0f} s in the future (database clock "
                                       f"set back?; tolerance {FUTURE_TOLERANCE_SECONDS:g} s)",
                                age, offset)
        if self.is_up(forced_down, last_seen_up, created_at):
            return ServiceState(True, None, age, offset)
        died = "died in start-up, " if starting else ""
        if last_seen_up is None:
            registered = f"registered {age:.0f} s ago" if age is not None else "no creation time"
            return ServiceState(False, f"{died}never reported ({registered})", age, offset)
        return ServiceState(False, f"{died}last seen {age:.0f} s ago (service_down_time "
                                   f"{self.service_down_time:g} s)", age, offset)

    def state_of(self, row) -> ServiceState:
        """state() for a service row (anything with its forced_down, last_seen_up,
        created_at, last_seen_host_time and disabled_reason)."""
        return self.state(row.forced_down, row.last_seen_up, row.created_at,
                          row.last_seen_host_time, starting=row.disabled_reason == AUTO_STARTING)


def state_of(row, db_now: dt.datetime, service_down_time: float) -> ServiceState:
    """service_state for a service row (anything with its forced_down, last_seen_up,
    created_at, last_seen_host_time and disabled_reason)."""
    return Liveness(db_now, service_down_time).state_of(row)


def service_state(forced_down: bool, last_seen_up: dt.datetime | None,
                  created_at: dt.datetime | None, last_seen_host_time: dt.datetime | None,
                  db_now: dt.datetime, service_down_time: float, *,
                  starting: bool = False) -> ServiceState:
    """The verdict for one service (Liveness.state at `db_now`): up iff not forced down and
    -FUTURE_TOLERANCE_SECONDS <= (db_now - (last_seen_up or created_at)) <= service_down_time
    (times naive UTC, both from the database's clock; service_down_time in seconds)."""
    return Liveness(db_now, service_down_time).state(forced_down, last_seen_up, created_at,
                                                     last_seen_host_time, starting=starting)


def clock_offset(last_seen_up: dt.datetime | None,
                 last_seen_host_time: dt.datetime | None) -> float | None:
    """Host clock minus database clock at the last beat, in seconds (positive: host ahead)."""
    if last_seen_up is None or last_seen_host_time is None:
        return None
    return (last_seen_host_time - last_seen_up).total_seconds()


def clock_warning(host: str, offset: float | None,
                  threshold: float = CLOCK_OFFSET_WARNING_SECONDS) -> str | None:
    """A sentence for the operator when a host's clock is far from the database's."""
    if offset is None or abs(offset) <= threshold:
        return None
    direction = "ahead of" if offset > 0 else "behind"
    return (f"host {host}: clock is {abs(offset):.0f} s {direction} the database clock "
            "(liveness is unaffected; check NTP on that host)")
