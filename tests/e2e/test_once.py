"""`agent --once` end to end, as a subprocess: a fakevirt scenario (seeded with `agent db
seed`) and libvirt's test driver with 1,000 domains; the JSON inventory parsed and checked."""

from __future__ import annotations

import json
import sqlite3


from tests.agent_process import agent_command
from tests.conftest import require_tier

SCENARIO = """
[host]
hostname = "once-1"
vcpus = 8
memory_mb = 16384
local_gb = 200
cpu_arch = "x86_64"
hypervisor_version = 7002022

[[domains]]
uuid = "11111111-1111-4111-8111-111111111111"
name = "instance-00000001"
power_state = "running"
vcpus = 2
memory_mb = 2048

[[domains]]
uuid = "22222222-2222-4222-8222-222222222222"
name = "instance-00000002"
power_state = "running"

[[domains]]
uuid = "44444444-4444-4444-8444-444444444444"
name = "instance-00000004"
power_state = "running"

[[domains]]
uuid = "55555555-5555-4555-8555-555555555555"
name = "scratch"
power_state = "crashed"

[[instances]]
uuid = "11111111-1111-4111-8111-111111111111"
display_name = "web-1"
vcpus = 2
memory_mb = 2048
root_gb = 20
project_id = "demo"

[[instances]]
uuid = "22222222-2222-4222-8222-222222222222"
display_name = "worker-1"
task_state = "powering-off"
vcpus = 1
memory_mb = 1024
root_gb = 10
project_id = "demo"

[[instances]]
uuid = "44444444-4444-4444-8444-444444444444"
display_name = "app-1"
host = "once-2"
vcpus = 1
memory_mb = 512
root_gb = 5

[[migrations]]
uuid = "77777777-7777-4777-8777-777777777777"
instance_uuid = "44444444-4444-4444-8444-444444444444"
migration_type = "evacuation"
status = "done"
source_compute = "once-1"
dest_compute = "once-2"
"""


def setup_scenario(tmp_path):
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    (tmp_path / "agent.conf").write_text(f"[fakevirt]\nscenario = {path}\n", encoding="utf-8")
    state = tmp_path / "state"
    seed = agent_command("--config", str(tmp_path / "agent.conf"), "--host", "once-1",
                         "--state-path", str(state), "db", "seed", str(path))
    assert seed.returncode == 0, seed.stderr  # seeding creates the embedded schema
    return ["--config", str(tmp_path / "agent.conf"), "--host", "once-1", "--state-path",
            str(state)]


def db_rows(tmp_path, sql):
    with sqlite3.connect(tmp_path / "state" / "agent.sqlite") as conn:
        return conn.execute(sql).fetchall()


def test_once_json_on_a_fakevirt_scenario(tmp_path):
    args = setup_scenario(tmp_path)
    result = agent_command(*args, "--once", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["host"] == "once-1"
    assert report["driver"]["name"] == "fake"
    assert {"hypervisor_type", "hypervisor_version", "warnings"} <= set(report["driver"])
    (node,) = report["nodes"]
    assert node["hypervisor_hostname"] == "once-1"
    assert (node["vcpus"], node["memory_mb"], node["local_gb"]) == (8, 16384, 200)
    assert node["vcpus_used"] == 3 and node["memory_mb_used"] == 512 + 3072
    assert node["local_gb_used"] == 30 and node["free_ram_mb"] == 16384 - 3584
    assert node["running_vms"] == 2 and node["stats"]["num_proj_demo"] == "2"
    actions = {i["uuid"]: i["action"] for i in report["instances"]}
    assert actions == {"11111111-1111-4111-8111-111111111111": "none",
                       "22222222-2222-4222-8222-222222222222": "powered-off"}
    assert [(e["instance_uuid"], e["action"]) for e in report["evacuated"]] == [
        ("44444444-4444-4444-8444-444444444444", "evacuated-destroyed")]
    assert [d["uuid"] for d in report["unknown_domains"]] == [
        "55555555-5555-4555-8555-555555555555"]
    # What the database now says.
    assert db_rows(tmp_path, "SELECT status FROM migrations") == [("completed",)]
    assert db_rows(tmp_path, "SELECT vm_state, task_state FROM instances WHERE uuid = "
                             "'22222222-2222-4222-8222-222222222222'") == [("stopped", None)]
    assert db_rows(tmp_path, "SELECT uuid FROM compute_nodes") == [(node["uuid"],)]
    assert db_rows(tmp_path, "SELECT disabled FROM services") == [(0,)]
    # What `openstack hypervisor show` has with the node: its service, up and enabled.
    ((service_id, service_uuid),) = db_rows(tmp_path, "SELECT id, uuid FROM services")
    assert (node["state"], node["status"]) == ("up", "enabled")
    assert node["service"] == {"host": "once-1", "id": service_id, "uuid": service_uuid,
                               "disabled_reason": None}
    assert node["hypervisor_version"] == report["driver"]["hypervisor_version"] == 7002022


def test_once_table_lists_every_instance_and_reads_versions(tmp_path):
    args = setup_scenario(tmp_path)
    result = agent_command(*args, "--once")
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert "fake 7.2.22" in table and "7002022" not in table
    assert "instances: 2 (1 none, 1 powered-off)" in table
    rows = {line.split()[1]: line for line in table.splitlines()
            if line.startswith(("11111111-", "22222222-"))}
    assert set(rows) == {"instance-00000001", "instance-00000002"}
    assert rows["instance-00000001"].split()[-1] == "none"
    assert "service  id 1 (" in table and "), enabled, up" in table
    # One start-up, in a few lines: no line per instance at INFO.
    assert "plug-vifs" not in result.stderr
    assert "init_host done in" in result.stderr


def test_once_dry_run_changes_nothing(tmp_path):
    args = setup_scenario(tmp_path)
    result = agent_command(*args, "--once", "--dry-run", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert [e["action"] for e in report["evacuated"]] == ["evacuated-destroyed"]
    assert "would" in result.stderr
    assert db_rows(tmp_path, "SELECT status FROM migrations") == [("done",)]
    assert db_rows(tmp_path, "SELECT vm_state, task_state FROM instances WHERE uuid = "
                             "'22222222-2222-4222-8222-222222222222'") == [
        ("active", "powering-off")]
    assert db_rows(tmp_path, "SELECT count(*) FROM compute_nodes") == [(0,)]
    # The table form reads as a plan.
    table = agent_command(*args, "--once", "--dry-run")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("DRY RUN")
    assert "evacuated-destroyed" in table.stdout


def test_once_on_libvirt_test_driver_with_1000_domains(tmp_path):
    try:
        import libvirt  # noqa: F401
    except ImportError:
        libvirt = None
    require_tier("libvirt", libvirt is not None, "libvirt-python is not installed")
    from tests.libvirt_xml import write_node

    node = write_node(tmp_path, 1000)
    state = tmp_path / "state"
    common = ["--host", "lv-host", "--state-path", str(state), "--driver", "libvirt",
              "--connection-uri", node.uri]
    sync = agent_command(*common, "db", "sync")
    assert sync.returncode == 0, sync.stderr
    result = agent_command(*common, "--once", "--format", "json", timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["driver"]["name"] == "libvirt"
    (n,) = report["nodes"]
    assert n["memory_mb"] == node.memory_mb and n["vcpus"] > 0
    # No instance rows: every domain is unknown to the database, and nothing is touched.
    assert len(report["unknown_domains"]) == 1000
    assert {d["uuid"] for d in report["unknown_domains"]} == {d.uuid for d in node.domains}
    assert report["instances"] == [] and report["evacuated"] == []
    assert n["running_vms"] == 0
