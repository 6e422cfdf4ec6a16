"""Instance rows for a whole fleet, written in batches: one transaction, one executemany per
chunk, rows already present (a fleet started again on the same database) left as they are."""

from __future__ import annotations

import logging
from typing import Sequence

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from agent.db.models import Instance
from agent.errors import DatabaseError
from fakevirt.scenario import Scenario
from fakevirt.seed import instance_row

LOG = logging.getLogger(__name__)

CHUNK = 1000


def seed_fleet_instances(db, scenarios: Sequence[Scenario]) -> int:
    """Insert every scenario's instance rows that are not there yet. Returns how many were
    inserted. All or nothing."""
    rows = [instance_row(record, scenario.host.hostname)
            for scenario in scenarios for record in scenario.instances]
    inserted = 0
    try:
        with db.sessions.begin() as session:
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start:start + CHUNK]
                present = set(session.scalars(
                    select(Instance.uuid).where(Instance.uuid.in_([r["uuid"] for r in chunk]))))
                new = [r for r in chunk if r["uuid"] not in present]
                if new:
                    session.execute(insert(Instance), new)
                    inserted += len(new)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise DatabaseError(f"seeding the fleet's instances into {db.url} failed, nothing was "
                            f"written: {detail[0] if detail else type(exc).__name__}") from None
    LOG.info("fleet: %d instance rows seeded (%d already there)", inserted,
             len(rows) - inserted)
    return inserted
