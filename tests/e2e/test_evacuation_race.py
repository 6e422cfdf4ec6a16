"""The evacuation race across processes on PostgreSQL: the source host, forced down, starts
(`agent --once`) with many instances in a task that start-up acts on (`powering-off` with the
guest running, `rebooting` with the guest running, `powering-on` with the guest shut down, an
`error` instance `rebooting_hard`); `agent evacuate` commits while its start-up is under way.
Afterwards no row that is now the destination's carries the source's writes, the source has
powered off none of the guests it no longer owns, and its log says it lost the race.

Deterministic: the source's fakevirt pauses at a barrier (FAKEVIRT_PAUSE) on its first guest
read, after it has read the instances and before any guest is changed; the evacuation runs
while it waits, then the barrier is released."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from agent.db.engine import make_database
from agent.compute.decisions import Op
from agent.db.models import ComputeNode, Instance, Migration, Service
from agent.heartbeat import Heartbeat
from agent.registry import register_service
from tests.agent_process import DEADLINE, AgentProcess, agent_command, wait_for, write_config

pytestmark = [pytest.mark.postgresql]

SRC, DST = "race-src", "race-dst"
N = 300


def scenario_file(path, n: int, vm_state: str, task_state: str, power: str) -> list[str]:
    uuids = [f"5ace0000-0000-4000-8000-{i:012d}" for i in range(n)]
    lines = ["[host]", f'hostname = "{SRC}"', "vcpus = 64", "memory_mb = 262144",
             "local_gb = 2000", 'cpu_arch = "x86_64"', ""]
    for index, uuid in enumerate(uuids, start=1):
        lines += ["[[domains]]", f'uuid = "{uuid}"', f'name = "instance-{index:08x}"',
                  f'power_state = "{power}"', "",
                  "[[instances]]", f'uuid = "{uuid}"', f'vm_state = "{vm_state}"',
                  f'task_state = "{task_state}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return uuids


@pytest.mark.parametrize("vm_state, task_state, power, action", [
    ("active", "powering-off", "running", "lost-race"),
    ("active", "rebooting", "running", "lost-race"),
    ("stopped", "powering-on", "shutdown", "lost-race"),
    # nova's init_host leaves an instance in error alone: nothing to lose a race with.
    ("error", "rebooting_hard", "shutdown", "skipped"),
])
def test_evacuation_committed_during_source_start_up_wins(postgresql_url, tmp_path, vm_state,
                                                          task_state, power, action):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    uuids = scenario_file(src_dir / "scenario.toml", N, vm_state, task_state, power)
    config = write_config(src_dir, database_url=postgresql_url, host=SRC,
                          service_down_time=300, scenario=src_dir / 'scenario.toml')
    seeded = agent_command("db", "seed", str(src_dir / "scenario.toml"), "--config",
                           str(config))
    assert seeded.returncode == 0, seeded.stderr

    db = make_database(postgresql_url)
    try:
        # SRC ran before and is forced down; DST is up with its node.
        register_service(db, SRC, starting=False)
        dst = register_service(db, DST, starting=False)
        assert Heartbeat(db, dst.id, 10).beat()
        with db.sessions.begin() as session:
            session.add(ComputeNode(service_id=dst.id, host=DST, hypervisor_hostname=DST))
            session.execute(update(Service).where(Service.host == SRC)
                            .values(forced_down=True))

        with db.sessions() as session:
            before = sorted(session.execute(
                select(Instance.uuid, Instance.vm_state, Instance.task_state,
                       Instance.power_state).where(Instance.deleted == 0)).all())
        assert [row[:3] for row in before] == [(u, vm_state, task_state) for u in uuids]
        src = AgentProcess(config, tmp_path / "src.log",
                           args=["--once", "--format", "json", "--debug"],
                           env={"FAKEVIRT_PAUSE": f"get_info:{barrier}"})
        try:
            assert wait_for(lambda: (barrier / "paused").exists() or src.proc.poll() is not None)
            assert src.proc.poll() is None, src.log_text()
            evacuated = agent_command("evacuate", "--config", str(config), "--host", SRC,
                                      "--to", DST)
            assert evacuated.returncode == 0, evacuated.stderr
            assert f"evacuated {N} instances from host {SRC}" in evacuated.stdout
            (barrier / "resume").touch()
            out, _ = src.proc.communicate(timeout=DEADLINE)
        finally:
            src.stop()
        log = src.log_path.read_text(encoding="utf-8")
        assert src.proc.returncode == 0, log
        report = json.loads(out)

        # Every row is DST's, exactly as evacuate left it: none carries SRC's writes.
        with db.sessions() as session:
            rows = session.execute(select(Instance.uuid, Instance.host, Instance.vm_state,
                                          Instance.task_state, Instance.power_state)
                                   .where(Instance.deleted == 0)).all()
            statuses = set(session.scalars(select(Migration.status)))
        assert sorted(rows) == [(u, DST, *rest) for u, *rest in before]
        assert statuses == {"done"}  # for SRC's next start to destroy its copies

        # SRC changed none of the guests it no longer owns, and says so.
        assert {i["action"] for i in report["instances"]} == {action}
        assert " DEBUG " in log  # where a step taken on a guest would be logged
        for uuid in uuids:
            for op in Op:
                assert f"instance {uuid}: {op.value}" not in log
        if action == "lost-race":
            assert (f"init_host (guest left alone) on host {SRC} lost a race for {N} rows "
                    "(changed meanwhile, e.g. moved to another host); not saved") in log
            assert f"{uuids[0]} (host is now '{DST}' (read '{SRC}'))" in log
    finally:
        db.dispose()
