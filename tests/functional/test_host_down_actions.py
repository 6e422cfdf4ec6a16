"""What the control plane does with an instance action when the instance's host is down or
missing, as nova's compute API does (server_rules: check_instance_host, _delete), through the
WSGI application on every backend with a real RabbitMQ: actions that need a host refuse an
instance without one (409, nova's words, nothing saved or cast); a down host's queue still
takes a stop; a delete on a down or unknown host is done in the database alone (nothing cast);
a second delete while an up host is deleting is ignored. And the host's side of a local
delete: the agent back on its host reaps the guest (running_deleted_instance_action)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select, update

from agent import vocabulary as states
from agent.db.models import Instance
from agent.rpc import wire
from tests.functional.compute_helpers import (GONE, HOST, guest_power, make_host, make_scenario,
                                              seeded)
from tests.functional.compute_helpers import domain as guest
from tests.functional.test_api_servers import add_server, env  # noqa: F401  (fixture)
from tests.functional.test_api_services import NEW, call
from tests.functional.test_rpc_client import get_one, host_queue
from tests.functional.test_services_cli import add_service, set_service
from tests.rabbit import rabbit_vhost, unique_host  # noqa: F401  (fixture)
from agent.virt.types import PowerState
from fakevirt.scenario import InstanceSeed

NOTHING = 0.3  # seconds to look for a message that must not be there


def down_host(db, how):
    host = unique_host("down")
    service_id = add_service(db, host)
    if how == "forced-down":
        set_service(db, service_id, forced_down=True)
    else:  # its last beat long before service_down_time (60 s) on the database clock
        set_service(db, service_id, last_seen_up=dt.datetime(2000, 1, 1))
    return host


def actions_of(api, server):
    _, listed = call(api, "GET", f"/v2.1/servers/{server.uuid}/os-instance-actions",
                     headers=NEW)
    return [a["action"] for a in listed["instanceActions"]]


def row(db, server):
    with db.sessions() as session:
        return session.execute(select(Instance.vm_state, Instance.task_state, Instance.deleted)
                               .where(Instance.uuid == server.uuid)).one()


@pytest.mark.parametrize("body", [{"os-stop": None}, {"os-start": None},
                                  {"reboot": {"type": "HARD"}}, {"pause": None},
                                  {"unpause": None}],
                         ids=["stop", "start", "reboot-hard", "pause", "unpause"])
def test_an_action_that_needs_a_host_refuses_an_instance_without_one(env, body):  # noqa: F811
    api, db, _ = env
    vm_state = {"os-start": states.STOPPED, "unpause": states.PAUSED}.get(
        next(iter(body)), states.ERROR if "reboot" in body or "os-stop" in body
        else states.ACTIVE)
    server = add_server(db, None, vm_state)
    response, fault = call(api, "POST", f"/v2.1/servers/{server.uuid}/action", body,
                           headers=NEW)
    assert response.status_code == 409
    assert fault["conflictingRequest"]["message"] == f"Instance {server.uuid} is not ready"
    assert tuple(row(db, server)) == (vm_state, None, 0)
    assert actions_of(api, server) == []


@pytest.mark.parametrize("how", ["forced-down", "stale-beat"])
def test_a_stop_for_a_down_host_is_saved_and_queued(env, how):  # noqa: F811
    api, db, conn = env
    host = down_host(db, how)
    queue = host_queue(conn, host)
    server = add_server(db, host, states.ACTIVE)
    response, _ = call(api, "POST", f"/v2.1/servers/{server.uuid}/action", {"os-stop": None},
                       headers=NEW)
    assert response.status_code == 202
    assert tuple(row(db, server)) == (states.ACTIVE, states.POWERING_OFF, 0)
    message = get_one(queue)
    assert message is not None and wire.decode_request(message.body).method == "stop_instance"


@pytest.mark.parametrize("how", ["forced-down", "stale-beat", "no-service"])
def test_a_delete_on_a_down_host_is_local(env, how):  # noqa: F811
    api, db, conn = env
    host = unique_host("gone") if how == "no-service" else down_host(db, how)
    queue = host_queue(conn, host)
    server = add_server(db, host, states.ACTIVE, states.POWERING_OFF)
    response, _ = call(api, "DELETE", f"/v2.1/servers/{server.uuid}", headers=NEW)
    assert response.status_code == 204
    vm_state, task_state, deleted = row(db, server)
    assert (vm_state, task_state) == (states.DELETED, None) and deleted != 0
    assert call(api, "GET", f"/v2.1/servers/{server.uuid}", headers=NEW)[0].status_code == 404
    assert actions_of(api, server) == ["delete"]
    assert get_one(queue, NOTHING) is None


def test_a_second_delete_while_an_up_host_deletes_is_ignored(env):  # noqa: F811
    api, db, conn = env
    host = unique_host("up")
    add_service(db, host)
    queue = host_queue(conn, host)
    server = add_server(db, host, states.ACTIVE)
    for _ in range(2):
        response, _ = call(api, "DELETE", f"/v2.1/servers/{server.uuid}", headers=NEW)
        assert response.status_code == 204
    message = get_one(queue)
    assert wire.decode_request(message.body).method == "terminate_instance"
    assert get_one(queue, NOTHING) is None  # one terminate only
    assert tuple(row(db, server)) == (states.ACTIVE, states.DELETING, 0)
    assert actions_of(api, server) == ["delete"]


@pytest.mark.parametrize("action, left", [("reap", GONE), ("shutdown", PowerState.SHUTDOWN),
                                          ("log", PowerState.RUNNING),
                                          ("noop", PowerState.RUNNING)])
def test_the_agent_back_on_its_host_handles_the_guest_of_a_local_delete(tmp_path, any_db,
                                                                       action, left):
    deleted, live = str(uuid.uuid4()), str(uuid.uuid4())
    scenario = seeded(any_db, make_scenario(
        [InstanceSeed(deleted, host=HOST, node=HOST), InstanceSeed(live, host=HOST, node=HOST)],
        [guest(deleted, PowerState.RUNNING), guest(live, PowerState.RUNNING)]))
    compute = make_host(tmp_path, any_db, scenario, running_deleted_instance_action=action)
    compute.start()
    try:
        with any_db.sessions.begin() as session:  # the control plane's local delete
            session.execute(update(Instance).where(Instance.uuid == deleted).values(
                vm_state=states.DELETED, deleted=Instance.id))
        found = compute.cleanup_running_deleted_instances()
        assert found == ([] if action == "noop" else [deleted])
        assert guest_power(compute.driver, deleted) == left
        assert guest_power(compute.driver, live) == PowerState.RUNNING
    finally:
        compute.stop()
