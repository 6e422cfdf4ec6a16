"""The fleet's end report (and its progress line): what was achieved against the target, as a
table for people and JSON for tools."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from agent.display import pairs, plural


@dataclass(frozen=True)
class FleetReport:
    count: int
    instances_per_host: int
    database: str
    duration_s: float
    report_interval_s: float
    service_down_time_s: float
    agents_started: int
    agents_failed: int
    startup_s: float | None            # from the first start to the last agent running
    beats_ok: int
    beats_failed: int
    beats_per_second: float            # over the steady part of the run (all agents started)
    target_beats_per_second: float     # count / report_interval
    lateness_p50_s: float | None       # heartbeat start minus due time, steady part
    lateness_p99_s: float | None
    lateness_max_s: float | None
    lateness_all_p99_s: float | None   # the whole run, start-up ramp included
    lateness_all_max_s: float | None
    beat_overruns: int
    statements: int
    statements_per_second: float
    statements_by_activity: dict
    statements_per_beat: float | None
    statements_per_audit: float | None
    statements_per_startup: float | None
    audits: int
    audit_errors: int
    power_syncs: int
    job_lateness_p99_s: float | None
    cpu_user_s: float
    cpu_system_s: float
    cpu_percent_of_one_core: float
    rss_mb: float
    peak_rss_mb: float
    polls: int
    poll_errors: int
    false_downs: int                   # live agents shown down while beating: must be 0
    outage_downs: int                  # shown down while their own beats failed (an outage)
    max_poll_s: float | None
    errors: int
    stopped_by: str
    cleanup: str = "kept"              # what was removed at the end (agent fleet --keep: kept)
    # The compute RPC (transport_url set; 0 and None without it): broker connections that
    # consumed the hosts' compute.<host> queues, queues consumed at the end, requests run (and
    # failed), refused or dropped, and messages still in the queues once the consumers stopped.
    rpc_connections: int = 0
    rpc_queues: int = 0
    rpc_requests: int = 0
    rpc_failed: int = 0
    rpc_refused_or_dropped: int = 0
    rpc_messages_left: int | None = None

    @property
    def exit_status(self) -> int:
        """`agent fleet`'s exit status: 1 when the service list showed a live, beating agent
        down (a false down), else 0. Downs an outage explains do not fail the run."""
        return 1 if self.false_downs else 0

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n"

    def format_table(self) -> str:
        rows = [
            ("agents", f"{self.agents_started} of {self.count} started"
                       f"{f', {self.agents_failed} failed' if self.agents_failed else ''}, "
                       f"{plural(self.instances_per_host, 'instance')} each"),
            ("database", self.database),
            ("duration", f"{self.duration_s:.1f} s (start-up {_s(self.startup_s)})"),
            ("report_interval", f"{self.report_interval_s:g} s "
                                f"(service_down_time {self.service_down_time_s:g} s)"),
            ("beats/s", f"{self.beats_per_second:.1f} achieved, "
                        f"{self.target_beats_per_second:.1f} target "
                        f"({self.beats_ok} ok, {self.beats_failed} failed)"),
            ("beat lateness", f"p50 {_ms(self.lateness_p50_s)}, p99 {_ms(self.lateness_p99_s)}, "
                              f"max {_ms(self.lateness_max_s)} (steady); whole run p99 "
                              f"{_ms(self.lateness_all_p99_s)}, max "
                              f"{_ms(self.lateness_all_max_s)}"),
            ("statements", f"{self.statements} ({self.statements_per_second:.1f}/s); per beat "
                           f"{_n(self.statements_per_beat)}, per audit "
                           f"{_n(self.statements_per_audit)}, per start-up "
                           f"{_n(self.statements_per_startup)}"),
            ("audits", f"{self.audits} ({plural(self.audit_errors, 'error')}), power syncs "
                       f"{self.power_syncs}; job lateness p99 {_ms(self.job_lateness_p99_s)}"),
            ("cpu", f"{self.cpu_user_s:.1f} s user, {self.cpu_system_s:.1f} s system "
                    f"({self.cpu_percent_of_one_core:.0f} % of one core)"),
            ("memory", f"{self.rss_mb:.0f} MB resident, peak {self.peak_rss_mb:.0f} MB"),
            ("services list", f"{plural(self.polls, 'poll')} ({self.poll_errors} failed), max "
                              f"{_ms(self.max_poll_s)}; live agents seen down: "
                              f"{self.false_downs} (and {self.outage_downs} while their "
                              "beats failed)"),
            *self._rpc_rows(),
            ("errors", str(self.errors)),
            ("stopped by", self.stopped_by),
            ("cleanup", self.cleanup),
        ]
        return pairs(rows)

    def _rpc_rows(self) -> list[tuple[str, str]]:
        if not self.rpc_connections:
            return []
        left = "-" if self.rpc_messages_left is None else str(self.rpc_messages_left)
        return [("compute RPC", f"{plural(self.rpc_queues, 'queue')} consumed on "
                                f"{plural(self.rpc_connections, 'connection')}; "
                                f"{plural(self.rpc_requests, 'request')} run "
                                f"({self.rpc_failed} failed), "
                                f"{self.rpc_refused_or_dropped} refused or dropped; "
                                f"messages left in the queues: {left}")]


def _ms(seconds: float | None) -> str:
    """Seconds as whole milliseconds for the report and progress lines."""
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
