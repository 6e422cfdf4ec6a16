"""Host evacuation across two agent processes on one PostgreSQL database.

SRC and DST are real agents (`python -m agent`) on fakevirt hypervisors read from scenario
files. SRC is killed, shown down, forced down and evacuated to DST with `agent evacuate`; then it
is started again. fakevirt keeps its guests in memory, so the restarted SRC defines its guests
again from its scenario: exactly a host that comes back with the evacuated guests still on it.
Its start-up must destroy them and complete the migrations; DST owns the instances, none lost
and none duplicated.
"""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import func, select

from agent.db.engine import make_database
from agent.db.models import ComputeNode, Instance, Migration
from tests.agent_process import (AgentProcess, agent_command, listed_service, wait_for,
                                 write_config)

pytestmark = [pytest.mark.postgresql]

SRC, DST = "evac-src", "evac-dst"
GUESTS = [("0b7d3c8e-3f1a-4c39-9d7e-1a2b3c4d5e01", "web-1", "running"),
          ("0b7d3c8e-3f1a-4c39-9d7e-1a2b3c4d5e02", "web-2", "running"),
          ("0b7d3c8e-3f1a-4c39-9d7e-1a2b3c4d5e03", "batch-1", "shutdown")]


def scenario_file(path, hostname: str, guests) -> str:
    lines = ["[host]", f'hostname = "{hostname}"', "vcpus = 8", "memory_mb = 16384",
             "local_gb = 200", 'cpu_arch = "x86_64"', ""]
    for index, (uuid, name, power) in enumerate(guests, start=1):
        lines += ["[[domains]]", f'uuid = "{uuid}"', f'name = "instance-{index:08x}"',
                  f'power_state = "{power}"', "",
                  "[[instances]]", f'uuid = "{uuid}"', f'display_name = "{name}"',
                  f'vm_state = "{"active" if power == "running" else "stopped"}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def host_config(directory, url: str, host: str, guests):
    directory.mkdir()
    scenario = scenario_file(directory / "scenario.toml", host, guests)
    config = write_config(directory, database_url=url, host=host, report_interval=1,
                          service_down_time=3, update_resources_interval=1, scenario=scenario)
    return config, scenario


def state_is(config, host: str, state: str):
    def check():
        entry = listed_service(config, host)
        return entry if entry is not None and entry["state"] == state else None
    return check


class Rows:
    def __init__(self, url: str):
        self.db = make_database(url)

    def instances(self) -> list[tuple[str, str, str]]:
        with self.db.sessions() as session:
            return sorted(session.execute(select(Instance.uuid, Instance.host, Instance.node)
                                          .where(Instance.deleted == 0)).all())

    def migrations(self) -> list[tuple]:
        with self.db.sessions() as session:
            return sorted(session.execute(
                select(Migration.instance_uuid, Migration.migration_type, Migration.status,
                       Migration.source_compute, Migration.dest_compute)).all())

    def running_vms(self, host: str) -> int | None:
        with self.db.sessions() as session:
            return session.scalar(select(ComputeNode.running_vms)
                                  .where(ComputeNode.host == host, ComputeNode.deleted == 0))

    def count(self) -> tuple[int, int]:
        with self.db.sessions() as session:
            rows = session.scalar(select(func.count()).select_from(Instance)
                                  .where(Instance.deleted == 0))
            distinct = session.scalar(select(func.count(func.distinct(Instance.uuid)))
                                      .where(Instance.deleted == 0))
        return rows, distinct


def test_evacuation_of_a_dead_host_to_another_across_two_agents(postgresql_url, tmp_path):
    src_conf, src_scenario = host_config(tmp_path / "src", postgresql_url, SRC, GUESTS)
    dst_conf, _ = host_config(tmp_path / "dst", postgresql_url, DST, [])
    rows = Rows(postgresql_url)
    uuids = sorted(g[0] for g in GUESTS)
    seeded = agent_command("db", "seed", src_scenario, "--config", str(src_conf))
    assert seeded.returncode == 0, seeded.stderr

    agents = []
    try:
        src = AgentProcess(src_conf, tmp_path / "src.log")
        dst = AgentProcess(dst_conf, tmp_path / "dst.log")
        agents += [src, dst]
        assert wait_for(state_is(src_conf, SRC, "up")), src.log_text()
        assert wait_for(state_is(dst_conf, DST, "up")), dst.log_text()
        assert wait_for(lambda: rows.running_vms(SRC) == 3), src.log_text()
        assert wait_for(lambda: rows.running_vms(DST) == 0), dst.log_text()

        # While SRC is up, the evacuation is refused and nothing changes.
        refused = agent_command("evacuate", "--config", str(src_conf), "--host", SRC,
                                "--to", DST)
        assert refused.returncode == 1
        assert f"service compute-agent on host {SRC} is up" in refused.stderr
        assert rows.migrations() == []

        # SRC dies; the operator sees it down, forces it down and evacuates it.
        src.send(signal.SIGKILL)
        src.wait()
        down = wait_for(state_is(src_conf, SRC, "down"))
        assert down and down["down_reason"].startswith("last seen"), down
        forced = agent_command("services", "force-down", "--config", str(src_conf),
                               "--host", SRC)
        assert forced.returncode == 0, forced.stderr
        assert listed_service(src_conf, SRC)["down_reason"] == "forced down"
        evacuated = agent_command("evacuate", "--config", str(src_conf), "--host", SRC,
                                  "--to", DST)
        assert evacuated.returncode == 0, evacuated.stderr
        assert f"evacuated 3 instances from host {SRC} (forced down) to host {DST}" \
            in evacuated.stdout
        assert rows.instances() == [(u, DST, DST) for u in uuids]
        assert rows.migrations() == [(u, "evacuation", "done", SRC, DST) for u in uuids]
        unset = agent_command("services", "force-down", "--unset", "--config", str(src_conf),
                              "--host", SRC)
        assert unset.returncode == 1 and "still in status 'done'" in unset.stderr

        # SRC comes back with the guests still on its hypervisor: they are destroyed and the
        # migrations completed; DST's audit counts the instances as its own.
        src2 = AgentProcess(src_conf, tmp_path / "src2.log")
        agents.append(src2)
        assert wait_for(lambda: {m[2] for m in rows.migrations()} == {"completed"}), \
            src2.log_text()
        log = src2.log_text()
        for uuid in uuids:
            assert f"instance {uuid} was evacuated (migration " in log, log
        assert log.count("here is to be destroyed, with its disks") == len(uuids), log
        assert wait_for(lambda: rows.running_vms(SRC) == 0), src2.log_text()
        assert wait_for(lambda: rows.running_vms(DST) == 3), dst.log_text()
        assert rows.instances() == [(u, DST, DST) for u in uuids]
        assert rows.count() == (3, 3)  # none lost, none duplicated

        unset = agent_command("services", "force-down", "--unset", "--config", str(src_conf),
                              "--host", SRC)
        assert unset.returncode == 0, unset.stderr
        assert wait_for(state_is(src_conf, SRC, "up")), src2.log_text()
        for proc in (src2, dst):
            proc.send(signal.SIGTERM)
            assert proc.wait() == 0, proc.log_text()
    finally:
        for proc in agents:
            proc.stop()
        rows.db.dispose()
