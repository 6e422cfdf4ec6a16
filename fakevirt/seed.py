"""Seeding the database with a scenario's instance and migration records (`agent db seed`).

Everything is written in one transaction: all rows or none. Rows go in chunks, with a progress
line every few seconds (agent.progress) for scenarios large enough to take that long.
`network_info` is stored as JSON text, written by
`agent.network.network_info.dump_network_info` (the module that reads it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from agent.config import short_reason
from agent.db.engine import Database
from agent.db.models import Instance, Migration
from agent.display import plural
from agent.errors import DatabaseError, ScenarioError
from agent.network.network_info import dump_network_info
from agent.progress import Progress
from fakevirt.scenario import InstanceSeed, MigrationSeed, Scenario

LOG = logging.getLogger(__name__)

# Bound on the uuids in one IN (...) list, well below every backend's parameter limit.
_CHUNK = 500
# Rows per INSERT: large enough that each is one executemany batch, small enough that progress
# can be seen.
_INSERT_CHUNK = 5000


@dataclass(frozen=True)
class SeedResult:
    instances: int
    migrations: int
    replaced: int  # rows deleted first because --replace was given
    seconds: float = 0.0  # how long the transaction took


def instance_row(record: InstanceSeed, default_host: str | None) -> dict:
    host = record.host or default_host
    return {"uuid": record.uuid, "display_name": record.display_name, "host": host,
            "node": record.node or host, "vm_state": record.vm_state,
            "task_state": record.task_state, "power_state": int(record.power_state),
            "vcpus": record.vcpus, "memory_mb": record.memory_mb, "root_gb": record.root_gb,
            "ephemeral_gb": record.ephemeral_gb, "swap": record.swap,
            "project_id": record.project_id, "os_type": record.os_type,
            "old_vm_state": record.old_vm_state,
            "network_info": dump_network_info(record.network_info), "deleted": 0}


def migration_row(record: MigrationSeed) -> dict:
    return {**dataclasses.asdict(record), "deleted": 0}


def seed_database(db: Database, scenario: Scenario, *, default_host: str | None = None,
                  replace: bool = False,
                  clock: Callable[[], float] = time.monotonic) -> SeedResult:
    """Insert the scenario's instances and migrations in one transaction. Instances without a
    host (and a scenario without a hostname) get `default_host`. uuids already in the database
    raise ScenarioError naming them, unless `replace`, which deletes those rows first. Logs
    'seeding: N of TOTAL rows' every few seconds of `clock` (monotonic seconds) and one
    summary line."""
    for index, record in enumerate(scenario.instances):
        if record.host is None and default_host is None:
            raise ScenarioError(f"{scenario.source}: instances[{index}] (uuid {record.uuid}): "
                                "no host: set 'host' on the entry or 'hostname' in [host]")
    instances = [instance_row(r, default_host) for r in scenario.instances]
    migrations = [migration_row(r) for r in scenario.migrations]
    replaced = 0
    progress = Progress(LOG, "seeding", len(instances) + len(migrations), unit="rows",
                        clock=clock)
    try:
        with db.sessions.begin() as session:
            for model, rows, what in ((Instance, instances, "instance"),
                                      (Migration, migrations, "migration")):
                uuids = [row["uuid"] for row in rows]
                present = _present(session, model, uuids)
                if present and not replace:
                    shown = ", ".join(sorted(present)[:3])
                    more = f" and {len(present) - 3} more" if len(present) > 3 else ""
                    raise ScenarioError(
                        f"{scenario.source}: {plural(len(present), what + ' uuid')} already in "
                        f"the database ({shown}{more}); use --replace to overwrite them")
                for chunk in _chunks(sorted(present)):
                    replaced += session.execute(
                        delete(model).where(model.uuid.in_(chunk))).rowcount
                for start in range(0, len(rows), _INSERT_CHUNK):
                    chunk = rows[start:start + _INSERT_CHUNK]
                    session.execute(insert(model), chunk)
                    progress.advance(len(chunk))
    except SQLAlchemyError as exc:
        # The caller made sure of the schema first (`agent db seed` runs ensure_schema), so
        # this is the driver's reason, not a missing schema.
        raise DatabaseError(f"seeding {db.url} failed, nothing was written: "
                            f"{short_reason(exc)}") from None
    # The caller prints the summary; this line is for the debug log.
    LOG.debug("seeded %s and %s from %s in %.1f s (%s replaced)",
              plural(len(instances), "instance"), plural(len(migrations), "migration"),
              scenario.source, progress.elapsed(), plural(replaced, "row"))
    return SeedResult(len(instances), len(migrations), replaced, progress.elapsed())


def _present(session, model, uuids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(uuids):
        found.update(session.scalars(select(model.uuid).where(model.uuid.in_(chunk))))
    return found


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]
