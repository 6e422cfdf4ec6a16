"""The resource tracker on fakevirt with a real database: rows created and updated, saved only
when something changed, usage from the database, ratios, orphans and unknown guests."""

from __future__ import annotations

import json
import uuid as uuid_lib

import pytest

from sqlalchemy import select, update

from agent import vocabulary as s
from agent.db.models import ComputeNode, Instance
from fakevirt.scenario import InstanceSeed, MigrationSeed
from tests.functional.compute_helpers import (HOST, domain, in_transaction, make_host,
                                              make_scenario, seeded)
from agent.virt.types import PowerState as P


def node_row(db):
    with db.sessions() as session:
        return session.scalars(select(ComputeNode).where(ComputeNode.deleted == 0)).one()


def instances(n, **kw):
    return [InstanceSeed(str(uuid_lib.uuid4()), host=HOST, node=HOST, **kw) for _ in range(n)]


def test_first_audit_creates_the_row_with_usage(tmp_path, any_db):
    rows = (instances(2, vcpus=2, memory_mb=1024, root_gb=10, ephemeral_gb=5, swap=1024,
                      project_id="p1", os_type="linux")
            + instances(1, vm_state=s.DELETED)
            + instances(1, vm_state=s.SHELVED_OFFLOADED))
    scenario = seeded(any_db, make_scenario(rows, [domain(r.uuid, P.RUNNING) for r in rows[:2]]))
    host = make_host(tmp_path, any_db, scenario, reserved_host_memory_mb=512,
                     reserved_host_disk_mb=1024, reserved_host_cpus=1)
    host.start()
    row = node_row(any_db)
    assert (row.host, row.hypervisor_hostname, row.service_id) == (HOST, HOST, host.service.id)
    assert (row.vcpus, row.memory_mb, row.local_gb) == (16, 32768, 500)
    assert row.vcpus_used == 1 + 2 * 2
    assert row.memory_mb_used == 512 + 2 * 1024
    assert row.local_gb_used == 1 + 2 * (10 + 5 + 1)
    assert row.free_ram_mb == 32768 - row.memory_mb_used
    assert row.free_disk_gb == 500 - row.local_gb_used
    assert row.running_vms == 2
    stats = json.loads(row.stats)
    assert stats["num_instances"] == "2" and stats["num_proj_p1"] == "2"
    assert stats["num_vm_active"] == "2" and stats["num_os_type_linux"] == "2"
    assert (row.cpu_allocation_ratio, row.ram_allocation_ratio,
            row.disk_allocation_ratio) == (4.0, 1.0, 1.0)
    assert row.uuid == (tmp_path / "state" / "compute_id").read_text().strip()



def test_node_deleted_with_its_service_is_live_again_under_its_uuid(tmp_path, any_db):
    from agent.control.services import delete_service

    scenario = seeded(any_db, make_scenario())
    first = make_host(tmp_path, any_db, scenario)
    first.start()
    first.stop()
    node_uuid = node_row(any_db).uuid
    in_transaction(any_db, delete_service, HOST, first.service.binary)
    again = make_host(tmp_path, any_db, scenario)  # registers a new service row
    again.start()
    row = node_row(any_db)
    assert (row.uuid, row.service_id, row.deleted_at) == (node_uuid, again.service.id, None)
    assert again.service.id != first.service.id
    with any_db.sessions() as session:
        assert session.scalars(select(ComputeNode.uuid)).all() == [node_uuid]



def test_running_agent_does_not_bring_back_the_node_of_its_deleted_service(tmp_path, any_db):
    from agent.control.services import delete_service
    from agent.errors import ServiceError

    scenario = seeded(any_db, make_scenario())
    host = make_host(tmp_path, any_db, scenario)
    host.start()
    in_transaction(any_db, delete_service, HOST, host.service.binary)
    with pytest.raises(ServiceError, match=f"the service of host {HOST} .* was deleted from the "
                                           "service registry.*restart the agent"):
        host.update_available_resource()  # the next periodic audit
    with any_db.sessions() as session:
        assert session.scalars(select(ComputeNode.uuid)
                               .where(ComputeNode.deleted == 0)).all() == []

def test_hypervisor_registered_by_another_host_meanwhile_stops_the_first_audit(tmp_path,
                                                                             any_db):
    from agent.errors import StartupError

    scenario = seeded(any_db, make_scenario())
    host = make_host(tmp_path, any_db, scenario)
    host.prepare()  # the identity check passes: nobody has this hypervisor yet
    host.registered(host.service)  # as the lifecycle does: compute_id written
    with any_db.sessions.begin() as session:  # another host registers it meanwhile
        session.add(ComputeNode(uuid=str(uuid_lib.uuid4()), host="other-host",
                                hypervisor_hostname=HOST))
    with pytest.raises(StartupError, match=f"hypervisor '{HOST}' is already registered as "
                                           "node .* of host 'other-host'"):
        host.start()
    with any_db.sessions() as session:
        assert session.scalars(select(ComputeNode.host)
                               .where(ComputeNode.deleted == 0)).all() == ["other-host"]

def test_unchanged_audit_does_not_touch_updated_at(tmp_path, sqlite_db):
    scenario = seeded(sqlite_db, make_scenario(instances(3), []))
    host = make_host(tmp_path, sqlite_db, scenario)
    host.start()
    # Give the row a known updated_at, far from now: an unchanged audit must keep it.
    with sqlite_db.sessions.begin() as session:
        session.execute(update(ComputeNode).values(updated_at=ComputeNode.created_at))
    before = node_row(sqlite_db).updated_at
    result = host.update_available_resource()
    assert [n.saved for n in result.nodes] == ["unchanged"]
    assert node_row(sqlite_db).updated_at == before


def test_changed_usage_is_saved(tmp_path, sqlite_db):
    rows = instances(2, memory_mb=2048)
    scenario = seeded(sqlite_db, make_scenario(rows, []))
    host = make_host(tmp_path, sqlite_db, scenario)
    host.start()
    used = node_row(sqlite_db).memory_mb_used
    with sqlite_db.sessions.begin() as session:
        session.execute(update(Instance).where(Instance.uuid == rows[0].uuid)
                        .values(vm_state=s.DELETED))
    result = host.update_available_resource()
    assert [n.saved for n in result.nodes] == ["updated"]
    assert node_row(sqlite_db).memory_mb_used == used - 2048


def test_allocation_ratios_conf_overrides_else_stored_kept(tmp_path, sqlite_db):
    scenario = seeded(sqlite_db, make_scenario([], []))
    host = make_host(tmp_path, sqlite_db, scenario)
    host.start()
    with sqlite_db.sessions.begin() as session:
        session.execute(update(ComputeNode).values(cpu_allocation_ratio=2.5))
    host.update_available_resource()
    assert node_row(sqlite_db).cpu_allocation_ratio == 2.5  # stored ratio kept
    host2 = make_host(tmp_path, sqlite_db, scenario, cpu_allocation_ratio=8.0)
    host2.start()
    assert node_row(sqlite_db).cpu_allocation_ratio == 8.0


def test_incoming_resize_counts_on_this_host(tmp_path, sqlite_db):
    moving = InstanceSeed(str(uuid_lib.uuid4()), host="src", node="src", vm_state=s.ACTIVE,
                            task_state=s.RESIZE_MIGRATED, vcpus=3, memory_mb=3072)
    mig = MigrationSeed(str(uuid_lib.uuid4()), moving.uuid, "resize", "post-migrating",
                          "src", HOST, "src", HOST)
    scenario = seeded(sqlite_db, make_scenario([moving], [], [mig]))
    host = make_host(tmp_path, sqlite_db, scenario, reserved_host_memory_mb=0)
    host.start()
    row = node_row(sqlite_db)
    assert (row.vcpus_used, row.memory_mb_used, row.running_vms) == (3, 3072, 0)


def test_orphan_node_is_kept_and_unknown_guests_listed(tmp_path, sqlite_db):
    stray = str(uuid_lib.uuid4())
    scenario = seeded(sqlite_db, make_scenario([], [domain(stray, P.RUNNING)]))
    with sqlite_db.sessions.begin() as session:
        session.add(ComputeNode(uuid=str(uuid_lib.uuid4()), host=HOST,
                                hypervisor_hostname="old-node"))
    host = make_host(tmp_path, sqlite_db, scenario)
    host.start()
    report = host.report().as_dict()
    assert report["orphan_nodes"] == ["old-node"]
    assert [d["uuid"] for d in report["unknown_domains"]] == [stray]
    with sqlite_db.sessions() as session:
        names = sorted(session.scalars(select(ComputeNode.hypervisor_hostname)))
    assert names == [HOST, "old-node"]


def test_periodic_audit_error_is_raised_to_the_scheduler_and_next_run_works(tmp_path,
                                                                           sqlite_db):
    scenario = seeded(sqlite_db, make_scenario([], []))
    host = make_host(tmp_path, sqlite_db, scenario)
    host.start()
    host.driver.faults.fail("get_available_resource")
    try:
        host.update_available_resource()
    except Exception as exc:  # noqa: BLE001
        assert "get_available_resource" in str(exc)
    else:
        raise AssertionError("the audit should have failed")
    host.driver.faults.clear()
    assert [n.saved for n in host.update_available_resource().nodes] == ["unchanged"]


def test_periodic_jobs_follow_the_options(tmp_path, sqlite_db):
    scenario = seeded(sqlite_db, make_scenario([], []))
    jobs = {j.name: j for j in make_host(tmp_path, sqlite_db, scenario,
                                         update_resources_interval=0,
                                         sync_power_state_interval=-1).periodic_jobs()}
    assert jobs["update_available_resource"].interval_seconds == 60
    assert jobs["sync_power_states"].interval_seconds < 0

