"""A host's identity across start-ups, through the real command line: a deleted service comes
back with its node, and a start-up that is refused leaves nothing behind."""

from __future__ import annotations

import sqlite3

from tests.agent_process import agent_command


def common_args(tmp_path, host: str) -> list[str]:
    return ["--host", host, "--state-path", str(tmp_path / "state")]


def db_rows(tmp_path, sql):
    with sqlite3.connect(tmp_path / "state" / "agent.sqlite") as conn:
        return conn.execute(sql).fetchall()


def test_host_registers_again_after_services_delete(tmp_path):
    args = common_args(tmp_path, "h1")
    first = agent_command(*args, "--once")
    assert first.returncode == 0, first.stderr
    node_uuid = (tmp_path / "state" / "compute_id").read_text().strip()

    deleted = agent_command(*args, "services", "delete", "--host", "h1")
    assert deleted.returncode == 0, deleted.stderr
    assert "registers again" in deleted.stdout
    assert db_rows(tmp_path, "SELECT count(*) FROM services WHERE deleted = 0") == [(0,)]
    assert db_rows(tmp_path, "SELECT count(*) FROM compute_nodes WHERE deleted = 0") == [(0,)]

    again = agent_command(*args, "--once")
    assert again.returncode == 0, again.stderr
    assert db_rows(tmp_path, "SELECT host, disabled FROM services WHERE deleted = 0") == [
        ("h1", 0)]
    # The same node, live again (not a second row under a new uuid).
    assert db_rows(tmp_path, "SELECT uuid, host, hypervisor_hostname, deleted_at FROM "
                             "compute_nodes") == [(node_uuid, "h1", "h1", None)]
    assert (tmp_path / "state" / "compute_id").read_text().strip() == node_uuid


def test_renamed_host_is_refused_and_leaves_no_row_for_the_new_name(tmp_path):
    first = agent_command(*common_args(tmp_path, "compute-1"), "--once")
    assert first.returncode == 0, first.stderr
    node_uuid = (tmp_path / "state" / "compute_id").read_text().strip()
    before = db_rows(tmp_path, "SELECT * FROM services")

    renamed = agent_command(*common_args(tmp_path, "compute-1.example.org"), "--once")

    assert renamed.returncode == 1
    last = renamed.stderr.strip().splitlines()[-1]
    assert last.startswith("agent: error: ")
    assert f"says this node is {node_uuid}, which the database has as host 'compute-1'" in last
    assert "Start with the old name, or delete the old service first " \
           "('agent services delete --host compute-1')" in last
    # Nothing of the refused start in the registry: no row for the new name, the old one as
    # it was.
    assert db_rows(tmp_path, "SELECT * FROM services") == before
    assert db_rows(tmp_path, "SELECT uuid, host FROM compute_nodes") == [(node_uuid, "compute-1")]
