"""Evacuated instances at start-up: destroyed only with a record naming this host as source and
a matching node identity; a dry run reports and does nothing."""

from __future__ import annotations

import uuid as uuid_lib

import pytest
from sqlalchemy import func, select, update

from agent import vocabulary as s
from agent.db.models import ComputeNode
from agent.errors import StartupError
from agent.virt.types import InstanceRef, PowerState as P
from fakevirt.scenario import InstanceSeed, MigrationSeed
from tests.functional.compute_helpers import (HOST, domain, guest_exists, make_host,
                                              make_scenario, migration_row, seeded)

EVAC = "22222222-2222-4222-8222-222222222222"  # evacuated to host 'dest'
MINE = "33333333-3333-4333-8333-333333333333"  # still ours


def scenario_with(status=None, source=HOST, kind="evacuation"):
    migs = []
    mig_uuid = str(uuid_lib.uuid4())
    if status is not None:
        migs.append(MigrationSeed(mig_uuid, EVAC, kind, status, source, "dest", HOST, "dest"))
    return make_scenario(
        [InstanceSeed(EVAC, host="dest", node="dest", vm_state=s.ACTIVE, task_state=None),
         InstanceSeed(MINE, host=HOST, node=HOST, vm_state=s.ACTIVE)],
        [domain(EVAC, P.RUNNING), domain(MINE, P.RUNNING)], migs), mig_uuid


def first_start(tmp_path, db, scenario):
    """A start before the evacuation existed: creates the node row and the identity file."""
    host = make_host(tmp_path, db, scenario)
    host.start()
    host.stop()


@pytest.mark.parametrize("status", ["accepted", "pre-migrating", "done"])
def test_evacuated_guest_is_destroyed_and_record_completed(tmp_path, any_db, status):
    scenario, mig = scenario_with(status)
    seeded(any_db, scenario)
    host = make_host(tmp_path, any_db, scenario)
    host.start()
    host.stop()
    report = host.report().as_dict()
    assert report["evacuated"] == [{"instance_uuid": EVAC, "action": "evacuated-destroyed",
                                    "migration_id": migration_row(any_db, mig).id}]
    assert not guest_exists(host.driver, EVAC)
    assert not host.driver.has_disks(EVAC)  # not shared storage: disks go too
    assert guest_exists(host.driver, MINE)
    assert migration_row(any_db, mig).status == "completed"
    # The evacuated instance skipped _init_instance; ours went through it.
    assert [i["uuid"] for i in report["instances"]] == [MINE]


def test_shared_storage_keeps_disks(tmp_path, sqlite_db):
    scenario, _ = scenario_with("done")
    seeded(sqlite_db, scenario)
    host = make_host(tmp_path, sqlite_db, scenario, compute__shared_storage=True)
    host.start()
    assert not guest_exists(host.driver, EVAC)
    assert host.driver.has_disks(EVAC)


@pytest.mark.parametrize("status,source,kind", [
    (None, HOST, "evacuation"),
    ("completed", HOST, "evacuation"),
    ("done", "another-host", "evacuation"),
    ("done", HOST, "migration"),
], ids=["no-record", "already-completed", "other-source", "not-an-evacuation"])
def test_nothing_destroyed_without_a_matching_record(tmp_path, sqlite_db, status, source,
                                                     kind):
    scenario, _ = scenario_with(status, source, kind)
    seeded(sqlite_db, scenario)
    host = make_host(tmp_path, sqlite_db, scenario)
    host.start()
    assert guest_exists(host.driver, EVAC)
    report = host.report().as_dict()
    assert report["evacuated"] == []
    # The database gives it to 'dest': reported, left alone.
    assert {i["uuid"]: i["action"] for i in report["instances"]}[EVAC] == "skipped-other-host"


def test_renamed_host_stops_start_up_and_destroys_nothing(tmp_path, sqlite_db):
    scenario, mig = scenario_with(None)
    seeded(sqlite_db, scenario)
    first_start(tmp_path, sqlite_db, scenario)
    # The host is renamed; an evacuation record names the new name as source.
    renamed = "cmp1-renamed"
    with sqlite_db.sessions.begin() as session:
        from agent.db.models import Migration

        session.add(Migration(uuid=mig, instance_uuid=EVAC, migration_type="evacuation",
                              status="done", source_compute=renamed, dest_compute="dest",
                              source_node=HOST, dest_node="dest"))
    host = make_host(tmp_path, sqlite_db, scenario, host=renamed)
    with pytest.raises(StartupError, match="renamed"):
        host.start()
    assert guest_exists(host.driver, EVAC) and guest_exists(host.driver, MINE)
    assert migration_row(sqlite_db, mig).status == "done"


def test_mismatched_identity_stops_start_up(tmp_path, sqlite_db):
    scenario, mig = scenario_with("done")
    seeded(sqlite_db, scenario)
    (tmp_path / "state").mkdir()
    # The node row exists under another uuid than the identity file says.
    with sqlite_db.sessions.begin() as session:
        session.add(ComputeNode(uuid=str(uuid_lib.uuid4()), host=HOST,
                                hypervisor_hostname=HOST))
    (tmp_path / "state" / "compute_id").write_text(str(uuid_lib.uuid4()) + "\n")
    host = make_host(tmp_path, sqlite_db, scenario)
    with pytest.raises(StartupError, match="identity mismatch"):
        host.start()
    assert guest_exists(host.driver, EVAC)
    assert migration_row(sqlite_db, mig).status == "done"


def test_first_start_writes_identity_and_later_starts_match(tmp_path, sqlite_db):
    scenario, _ = scenario_with(None)
    seeded(sqlite_db, scenario)
    first_start(tmp_path, sqlite_db, scenario)
    written = (tmp_path / "state" / "compute_id").read_text().strip()
    with sqlite_db.sessions() as session:
        uuids = session.scalars(select(ComputeNode.uuid)).all()
    assert uuids == [written]
    host = make_host(tmp_path, sqlite_db, scenario)
    host.start()  # the same identity: no error
    assert host.report().nodes[0].uuid == written


def test_dry_run_reports_the_plan_and_changes_nothing(tmp_path, sqlite_db):
    scenario, mig = scenario_with("done")
    scenario = scenario.__class__(scenario.host, scenario.domains, scenario.instances + (
        InstanceSeed("44444444-4444-4444-8444-444444444444", host=HOST, node=HOST,
                       vm_state=s.ACTIVE, task_state=s.POWERING_OFF),), scenario.migrations)
    scenario = scenario.__class__(scenario.host, scenario.domains + (
        domain("44444444-4444-4444-8444-444444444444", P.RUNNING),), scenario.instances,
        scenario.migrations)
    seeded(sqlite_db, scenario)
    host = make_host(tmp_path, sqlite_db, scenario, dry_run=True)
    host.start()
    report = host.report().as_dict()
    assert [e["action"] for e in report["evacuated"]] == ["evacuated-destroyed"]
    assert {c[:2] for c in host.driver.calls if c[0] != "plug-vifs"} == {
        ("destroy", EVAC), ("power-off", "44444444-4444-4444-8444-444444444444")}
    actions = {i["uuid"]: i["action"] for i in report["instances"]}
    assert actions["44444444-4444-4444-8444-444444444444"] == "powered-off"
    assert [n["saved"] for n in report["nodes"]] == ["would-create"]
    # Nothing happened: guest, record, node row, identity file.
    assert guest_exists(host.driver, EVAC)
    assert host.driver.get_info(InstanceRef("44444444-4444-4444-8444-444444444444", "")
                                ).power_state == P.RUNNING
    assert migration_row(sqlite_db, mig).status == "done"
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ComputeNode)) == 0
    assert not (tmp_path / "state" / "compute_id").exists()


# -- the real tier: libvirtd + QEMU ------------------------------------------------------------
QEMU_URI = "qemu:///system"


@pytest.fixture
def qemu_guests():
    """Two tiny running QEMU guests (evacuated one, ours); destroyed and undefined afterwards."""
    import os

    from tests.conftest import import_libvirt, require_tier

    libvirt = import_libvirt()

    try:
        conn = libvirt.open(QEMU_URI)
    except libvirt.libvirtError as exc:
        require_tier("libvirtd", False, f"cannot open {QEMU_URI}: {exc}")
    kvm = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.W_OK)
    refs = {}
    try:
        for role in ("evac", "mine"):
            uuid = str(uuid_lib.uuid4())
            name = f"cagent-evac-test-{role}-{uuid[:8]}"
            dom = conn.defineXML(
                f"<domain type='{'kvm' if kvm else 'qemu'}'><name>{name}</name><uuid>{uuid}"
                "</uuid><memory unit='MiB'>32</memory><vcpu>1</vcpu><os><type arch='x86_64' "
                "machine='pc'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64"
                "</emulator></devices></domain>")
            dom.create()
            refs[role] = (uuid, name)
        yield conn, refs
    finally:
        for uuid, _ in refs.values():
            try:
                dom = conn.lookupByUUIDString(uuid)
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass
        conn.close()


def _qemu_state(conn, uuid):
    import libvirt

    try:
        return conn.lookupByUUIDString(uuid).state()[0]
    except libvirt.libvirtError:
        return None


@pytest.mark.libvirtd
@pytest.mark.parametrize("resume", [False, True], ids=["no-resume", "resume-guests"])
def test_evacuated_qemu_guest_destroyed_ours_kept(tmp_path, sqlite_db, qemu_guests, resume):
    import libvirt

    from agent.compute.host import ComputeHost
    from agent.network.firewall import NoopFirewall
    from agent.registry import register_service
    from tests.functional.compute_helpers import make_conf

    conn, refs = qemu_guests
    (evac_uuid, _), (mine_uuid, _) = refs["evac"], refs["mine"]
    mig = str(uuid_lib.uuid4())
    seeded(sqlite_db, make_scenario(
        [InstanceSeed(evac_uuid, host="dest", node="dest", vm_state=s.ACTIVE),
         InstanceSeed(mine_uuid, host=HOST, node=HOST, vm_state=s.ACTIVE,
                        power_state=P.RUNNING)], [],
        [MigrationSeed(mig, evac_uuid, "evacuation", "done", HOST, "dest", HOST, "dest")]))
    # Our guest went down with the host; the database still says it runs.
    conn.lookupByUUIDString(mine_uuid).destroy()
    conf = make_conf(tmp_path, sqlite_db, compute_driver="libvirt",
                     libvirt__connection_uri=QEMU_URI, libvirt__virt_type="qemu",
                     resume_guests_state_on_host_boot=resume)
    host = ComputeHost(conf, sqlite_db, register_service(sqlite_db, HOST),
                       firewall=NoopFirewall())
    try:
        host.start()
    finally:
        host.stop()
    assert _qemu_state(conn, evac_uuid) is None  # destroyed and undefined
    assert migration_row(sqlite_db, mig).status == "completed"
    expected = libvirt.VIR_DOMAIN_RUNNING if resume else libvirt.VIR_DOMAIN_SHUTOFF
    assert _qemu_state(conn, mine_uuid) == expected
    actions = {i.uuid: i.action for i in host.report().instances}
    assert actions == {mine_uuid: "resumed" if resume else "none"}


# -- a lost identity: the whole start-up, refused before anything is destroyed or written -------
NODE = "hv-node"  # the hypervisor's own name: the same whatever `host` the agent runs as


def run_once_as(tmp_path, db, scenario, host):
    """`agent --once` in-process as `host` on fakevirt; returns (outcome, driver): the report,
    or the error that stopped it."""
    from agent.compute.host import ComputeHost
    from agent.network.firewall import NoopFirewall
    from agent.service import AgentService
    from agent.systemd import Notifier
    from fakevirt.driver import FakeDriver
    from tests.functional.compute_helpers import make_conf

    conf = make_conf(tmp_path, db).replace(host=host)
    driver = FakeDriver(conf, scenario=scenario)
    service = AgentService(conf, notifier=Notifier(None), host_work_factory=(
        lambda conf, db, record, _dry_run: ComputeHost(conf, db, record, driver=driver,
                                                       firewall=NoopFirewall())))
    try:
        return service.run_once(), driver
    except StartupError as exc:
        return exc, driver


@pytest.mark.parametrize("hv_b_row", [False, True], ids=["hv-b-new", "hv-b-forced-down"])
@pytest.mark.parametrize("identity", ["deleted", "another-node"])
def test_lost_identity_under_another_host_is_refused_before_anything_happens(
        tmp_path, any_db, identity, hv_b_row):
    from agent.db.models import Service
    from agent.registry import register_service

    mig = str(uuid_lib.uuid4())
    scenario = seeded(any_db, make_scenario(
        [InstanceSeed(EVAC, host="dest", node="dest", vm_state=s.ACTIVE),
         InstanceSeed(MINE, host="hv-a", node=NODE, vm_state=s.ACTIVE)],
        [domain(EVAC, P.RUNNING), domain(MINE, P.RUNNING)],
        [MigrationSeed(mig, EVAC, "evacuation", "done", "hv-b", "dest", NODE, "dest")],
        hostname=NODE))
    report, _ = run_once_as(tmp_path, any_db, scenario, "hv-a")
    assert report.evacuated == ()  # the record names hv-b, not hv-a
    id_file = tmp_path / "state" / "compute_id"
    node_uuid = id_file.read_text().strip()
    if identity == "deleted":
        id_file.unlink()
        expected = (f"compute_id is missing, but the database has node {node_uuid} for "
                    f"hypervisor '{NODE}' under host 'hv-a' (this agent runs as host 'hv-b')")
    else:  # another installation's identity file, never registered
        id_file.write_text(str(uuid_lib.uuid4()) + "\n")
        expected = (f"hypervisor '{NODE}' is already registered as node {node_uuid} of host "
                    "'hv-a', and this agent runs as host 'hv-b'")
    file_before = id_file.read_bytes() if id_file.exists() else None
    if hv_b_row:  # hv-b was a host whose instances were evacuated: forced down
        hv_b = register_service(any_db, "hv-b", starting=False)
        with any_db.engine.begin() as conn:
            conn.execute(update(Service).where(Service.id == hv_b.id).values(forced_down=True))
    with any_db.sessions() as session:
        hv_b_before = [(r.disabled, r.disabled_reason, r.report_count, r.last_seen_up)
                       for r in session.scalars(select(Service).where(Service.host == "hv-b"))]

    error, driver = run_once_as(tmp_path, any_db, scenario, "hv-b")

    assert isinstance(error, StartupError) and expected in str(error)
    assert "nothing was destroyed or written" in str(error)
    assert "agent services delete --host hv-a" in str(error)
    assert guest_exists(driver, EVAC) and driver.has_disks(EVAC)
    assert migration_row(any_db, mig).status == "done"
    with any_db.sessions() as session:
        nodes = session.execute(select(ComputeNode.uuid, ComputeNode.host)
                                .where(ComputeNode.deleted == 0)).all()
        hv_b_after = [(r.disabled, r.disabled_reason, r.report_count, r.last_seen_up)
                      for r in session.scalars(select(Service).where(Service.host == "hv-b"))]
    assert nodes == [(node_uuid, "hv-a")]
    assert hv_b_after == hv_b_before  # no row created for hv-b, nor its row touched
    assert (id_file.read_bytes() if id_file.exists() else None) == file_before
