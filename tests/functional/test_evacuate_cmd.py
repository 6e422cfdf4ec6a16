"""`agent evacuate` through the real command line, on every backend: refusals that name the
reason and change nothing, the records and moves of an evacuation, the dry run, and the source
agent's start-up completing the records."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from sqlalchemy import func, select, update

from agent.cli import main
from agent.db.models import ComputeNode, Instance, Migration, Service
from agent.heartbeat import Heartbeat
from agent.registry import register_service

LONG_AGO = dt.datetime(2020, 1, 1, 0, 0, 0)
SRC, DST = "src-host", "dst-host"


@pytest.fixture
def agent(any_db_url, capsys):
    """Run `agent ARGS --db URL`; returns (exit status, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        status = main([*args, "--db", any_db_url])
        out, err = capsys.readouterr()
        return status, out, err
    return run


def add_host(db, host: str, *, node: str | None = None) -> int:
    service = register_service(db, host, starting=False)
    assert Heartbeat(db, service.id, 10).beat()
    if node is not None:
        with db.sessions.begin() as session:
            session.add(ComputeNode(service_id=service.id, host=host, hypervisor_hostname=node))
    return service.id


def set_service(db, host: str, **values) -> None:
    with db.engine.begin() as conn:
        conn.execute(update(Service).where(Service.host == host).values(**values))


def add_instances(db, host: str, n: int, *, deleted: int = 0) -> list[str]:
    uuids = []
    with db.sessions.begin() as session:
        for i in range(n):
            row = Instance(display_name=f"{host}-vm{i}", host=host, node=f"{host}-node",
                           vm_state="active", power_state=1, deleted=0)
            session.add(row)
            session.flush()
            if deleted:
                row.deleted = row.id
            uuids.append(row.uuid)
    return uuids


def placement(db) -> dict[str, tuple[str, str]]:
    with db.sessions() as session:
        return {r.uuid: (r.host, r.node) for r in session.execute(
            select(Instance.uuid, Instance.host, Instance.node).where(Instance.deleted == 0))}


def migrations(db) -> list[Migration]:
    with db.sessions() as session:
        return list(session.scalars(select(Migration).order_by(Migration.id)))


@pytest.fixture
def hosts(any_db):
    """SRC with three live instances (and one soft-deleted), DST up with one node, and a
    bystander host with its own instance."""
    add_host(any_db, SRC, node=f"{SRC}-node")
    add_host(any_db, DST, node=f"{DST}-node")
    add_host(any_db, "other", node="other-node")
    evacuees = add_instances(any_db, SRC, 3)
    add_instances(any_db, SRC, 1, deleted=1)
    add_instances(any_db, "other", 1)
    return evacuees


def test_evacuate_refused_while_source_up_names_force_down(agent, any_db, hosts):
    before = placement(any_db)
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST)
    assert status == 1
    assert f"service compute-agent on host {SRC} is up (last seen" in err
    assert f"'agent services force-down --host {SRC}'" in err
    assert placement(any_db) == before
    assert migrations(any_db) == []


def test_evacuate_forced_down_source_moves_instances_with_one_record_each(agent, any_db, hosts):
    set_service(any_db, SRC, forced_down=True)
    untouched = {u: p for u, p in placement(any_db).items() if u not in hosts}
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST)
    assert status == 0, err
    assert f"evacuated 3 instances from host {SRC} (forced down) to host {DST}" in out
    after = placement(any_db)
    assert {u: after[u] for u in hosts} == {u: (DST, f"{DST}-node") for u in hosts}
    assert {u: p for u, p in after.items() if u not in hosts} == untouched
    records = migrations(any_db)
    assert sorted(m.instance_uuid for m in records) == sorted(hosts)
    for m in records:
        assert (m.migration_type, m.status, m.source_compute, m.dest_compute, m.source_node,
                m.dest_node) == ("evacuation", "done", SRC, DST, f"{SRC}-node", f"{DST}-node")
        assert str(m.id) in out
    # Lifting forced_down is refused until the source's agent has cleaned up.
    status, _, err = agent("services", "force-down", "--unset", "--host", SRC)
    assert status == 1 and "still in status 'done'" in err


def test_evacuate_source_down_by_age_is_allowed(agent, any_db, hosts):
    set_service(any_db, SRC, last_seen_up=LONG_AGO)
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST)
    assert status == 0, err
    assert "(down: last seen" in out
    assert len(migrations(any_db)) == 3


def test_evacuate_dry_run_writes_nothing(agent, any_db, hosts):
    set_service(any_db, SRC, forced_down=True)
    before = placement(any_db)
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST, "--dry-run")
    assert status == 0, err
    assert "would evacuate 3 instances" in out and "dry run: nothing written" in out
    for uuid in hosts:
        assert uuid in out
    assert placement(any_db) == before
    assert migrations(any_db) == []


@pytest.mark.parametrize("change, expected", [
    pytest.param({"disabled": True, "disabled_reason": "maintenance"},
                 f"destination host {DST} is disabled (maintenance): enable it with "
                 f"'agent services enable --host {DST}'", id="dest-disabled"),
    pytest.param({"forced_down": True}, f"destination host {DST} is forced down",
                 id="dest-forced-down"),
    pytest.param({"last_seen_up": LONG_AGO}, f"destination host {DST} is down (last seen",
                 id="dest-down"),
])
def test_evacuate_refused_for_unusable_destination(agent, any_db, hosts, change, expected):
    set_service(any_db, SRC, forced_down=True)
    set_service(any_db, DST, **change)
    before = placement(any_db)
    status, _, err = agent("evacuate", "--host", SRC, "--to", DST)
    assert status == 1
    assert expected in err
    assert placement(any_db) == before and migrations(any_db) == []


def test_evacuate_refused_for_unknown_hosts_and_self(agent, any_db, hosts):
    set_service(any_db, SRC, forced_down=True)
    status, _, err = agent("evacuate", "--host", SRC, "--to", "nowhere")
    assert status == 1 and "destination host 'nowhere': no service" in err
    status, _, err = agent("evacuate", "--host", "nowhere", "--to", DST)
    assert status == 1 and "source host 'nowhere': no service" in err
    status, _, err = agent("evacuate", "--host", SRC, "--to", SRC)
    assert status == 2 and "to itself" in err  # a usage error, found before the database
    assert migrations(any_db) == []


def test_evacuate_refused_when_destination_has_no_node(agent, any_db, hosts):
    add_host(any_db, "fresh")
    set_service(any_db, SRC, forced_down=True)
    status, _, err = agent("evacuate", "--host", SRC, "--to", "fresh")
    assert status == 1 and "destination host fresh has no compute node yet" in err


def test_source_agent_start_destroys_evacuated_guests_and_completes_records(
        agent, any_db, tmp_path):
    """The whole hand-over in one process: evacuate, then SRC's own start-up (ComputeHost on
    fakevirt, the hypervisor still holding the guests) destroys them and completes the
    records; forced_down can then be lifted."""
    from agent.compute.host import ComputeHost
    from agent.config import load_config
    from agent.network.firewall import NoopFirewall
    from fakevirt.driver import FakeDriver
    from fakevirt.scenario import generate_scenario
    from fakevirt.seed import seed_database

    url = any_db.engine.url.render_as_string(hide_password=False)
    scenario = generate_scenario(4, hostname=SRC)
    seed_database(any_db, scenario)
    add_host(any_db, DST, node=f"{DST}-node")
    conf = load_config(None, {}).replace(host=SRC, state_path=str(tmp_path / "state"))
    service = register_service(any_db, SRC)
    first = ComputeHost(conf, any_db, service, driver=FakeDriver(conf, scenario=scenario),
                        firewall=NoopFirewall())
    first.start()
    first.stop()
    set_service(any_db, SRC, forced_down=True)
    status, _, err = agent("evacuate", "--host", SRC, "--to", DST)
    assert status == 0, err

    driver = FakeDriver(conf, scenario=scenario)  # the restarted host still has its guests
    assert len(driver.list_instances()) == 4
    again = ComputeHost(conf, any_db, service, driver=driver, firewall=NoopFirewall())
    again.start()
    again.stop()
    assert driver.list_instances() == []
    assert {e.action for e in again.init_result.evacuated} == {"evacuated-destroyed"}
    assert {m.status for m in migrations(any_db)} == {"completed"}
    with any_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Instance)
                              .where(Instance.host == DST, Instance.deleted == 0)) == 4
    assert main(["services", "force-down", "--unset", "--host", SRC, "--db", url]) == 0


def test_only_active_stopped_and_error_instances_are_evacuated(agent, any_db):
    """One instance per vm_state: nova evacuates active, stopped and error ones (whatever
    their task); the others stay on the source and are listed with their vm_state."""
    from fakevirt.scenario import VM_STATES

    add_host(any_db, SRC, node=f"{SRC}-node")
    add_host(any_db, DST, node=f"{DST}-node")
    set_service(any_db, SRC, forced_down=True)
    by_state = {}
    with any_db.sessions.begin() as session:
        for vm_state in VM_STATES:
            row = Instance(display_name=f"vm-{vm_state}", host=SRC, node=f"{SRC}-node",
                           vm_state=vm_state, deleted=0,
                           task_state="powering-off" if vm_state == "active" else None)
            session.add(row)
            session.flush()
            by_state[vm_state] = row.uuid
    evacuable = {"active", "stopped", "error"}
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST)
    assert status == 0, err
    assert f"evacuated 3 instances from host {SRC}" in out
    stay = [v for v in VM_STATES if v not in evacuable]
    assert f"{len(stay)} instances not evacuable (only active, stopped and error " \
           f"instances are), left on host {SRC}:" in out
    for vm_state in stay:
        line = next(li for li in out.splitlines() if by_state[vm_state] in li)
        assert line.split()[-1] == vm_state
    after = placement(any_db)
    assert {v: after[u][0] for v, u in by_state.items()} == {
        v: DST if v in evacuable else SRC for v in VM_STATES}
    assert sorted(m.instance_uuid for m in migrations(any_db)) == sorted(
        by_state[v] for v in evacuable)


def test_evacuate_says_the_outcome_is_unknown_when_the_commit_fails(agent, any_db, hosts,
                                                                     monkeypatch):
    """The connection drops right after the server committed: every move was made, and the
    command must not claim that nothing was changed."""
    set_service(any_db, SRC, forced_down=True)
    dialect = type(any_db.engine.dialect)
    real_commit = dialect.do_commit

    def commit_then_drop(self, dbapi_connection):
        real_commit(self, dbapi_connection)
        raise self.loaded_dbapi.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(dialect, "do_commit", commit_then_drop)
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST)
    monkeypatch.undo()
    assert status == 1
    assert "nothing was changed" not in err
    assert ("server closed the connection unexpectedly while committing the evacuation of 3 "
            f"instances from host {SRC} to host {DST}: the outcome is unknown") in err
    assert f"'agent evacuate --host {SRC} --to {DST} --dry-run'" in err
    # Here the commit went through: the dry run it points to shows nothing left to move.
    assert {placement(any_db)[u][0] for u in hosts} == {DST}
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST, "--dry-run")
    assert status == 0 and "would evacuate 0 instances" in out


def test_evacuate_with_a_broker_that_cannot_be_reached_says_the_move_is_done_but_not_asked(
        agent, any_db, hosts):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    set_service(any_db, SRC, forced_down=True)
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST,
                             "--transport-url", f"rabbit://guest:Br0kerSecret@127.0.0.1:{port}/")
    assert status == 1
    assert err.count("\n") == 1 and "Br0kerSecret" not in err, err
    assert (f"the instances were moved to host {DST}, but rebuild_instance could not be sent "
            f"(message broker rabbit://guest:***@127.0.0.1:{port}/ unreachable: ") in err
    assert "; request req-" in err
    assert {u: p for u, p in placement(any_db).items() if u in hosts} == {
        u: (DST, f"{DST}-node") for u in hosts}


def test_with_no_transport_url_sqlite_casts_the_rebuilds_on_the_broker_file(agent, any_db_url,
                                                                           any_db, hosts):
    """One machine (SQLite) needs no broker: the destination's agent finds one
    rebuild_instance(recreate=True) per moved instance on compute.<DST> in the broker file
    beside the database; with a database server and no transport_url nothing is cast."""
    import os

    import kombu

    from agent.rpc import wire
    from agent.rpc.client import exchange, topic_queue
    from agent.rpc.transport import BROKER_FILE

    set_service(any_db, SRC, forced_down=True)
    status, out, err = agent("evacuate", "--host", SRC, "--to", DST)
    assert status == 0, err
    if not any_db_url.startswith("sqlite"):
        assert f"the agent on {DST} is not asked to spawn the guests" in out
        return
    assert "not asked" not in out
    broker = os.path.join(os.path.dirname(any_db.engine.url.database), BROKER_FILE)
    received = []
    with kombu.Connection(f"sqla+sqlite:///{broker}") as conn:
        queue = kombu.Queue(topic_queue(DST), exchange=exchange(), routing_key=topic_queue(DST),
                            durable=False, auto_delete=False, channel=conn.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            received.append(wire.decode_request(message.body))
    assert sorted((r.method, r.args["instance"]["nova_object.data"]["uuid"], r.args["recreate"])
                  for r in received) == sorted(("rebuild_instance", u, True) for u in hosts)
