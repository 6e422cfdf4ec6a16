"""What `agent --once` reports when no host work is plugged in: this host's service row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.display import pairs


@dataclass(frozen=True)
class ServiceReport:
    """The service row after one pass (or, in a dry run, as it was: service_id None when the
    host has no row yet)."""

    host: str
    binary: str
    service_id: int | None
    service_uuid: str | None
    disabled: bool
    disabled_reason: str | None
    report_count: int | None
    host_work: str = "none"

    @classmethod
    def read(cls, db, host: str, record) -> "ServiceReport":
        """The report for `host` whose service row is `record` (a ServiceRecord, or None in a
        dry run for a host without a row), the row read again from the database now (one
        SELECT)."""
        from agent.db.service_queries import load_service_by_id
        from agent.vocabulary import COMPUTE_BINARY

        if record is None:
            return cls(host=host, binary=COMPUTE_BINARY, service_id=None, service_uuid=None,
                       disabled=False, disabled_reason=None, report_count=None)
        with db.sessions() as session:
            row = load_service_by_id(session, record.id) or record
        return cls(host=row.host, binary=row.binary, service_id=row.id,
                   service_uuid=row.uuid, disabled=row.disabled,
                   disabled_reason=row.disabled_reason, report_count=row.report_count)

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "host_work": self.host_work,
                "service": {"id": self.service_id, "uuid": self.service_uuid,
                            "binary": self.binary, "disabled": self.disabled,
                            "disabled_reason": self.disabled_reason,
                            "report_count": self.report_count}}

    def render(self, fmt: str) -> str:
        """JSON (`fmt` 'json') or a two-column table."""
        data = self.as_dict()
        if fmt == "json":
            return json.dumps(data, indent=2, sort_keys=True) + "\n"
        if self.service_id is None:
            status = "not registered"
        elif self.disabled:
            status = f"disabled ({self.disabled_reason or ''})"
        else:
            status = "enabled"
        rows = [("host", self.host), ("binary", self.binary),
                ("service id", self.service_id), ("service uuid", self.service_uuid),
                ("status", status), ("report_count", self.report_count),
                ("host work", "none plugged in (no driver, no init_host, no audit)")]
        return pairs(rows)
