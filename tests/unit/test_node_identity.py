"""The node identity check (compute_id file against the database) and the power-sync
decisions, as pure functions."""

import os

import pytest

from agent import vocabulary as s
from agent.compute.node_identity import KnownNode, NodeIdentityStore, check_identity
from agent.compute.power_sync import decide_power_sync
from agent.db.records import InstanceRecord
from agent.errors import StartupError
from agent.virt.types import PowerState as P

A, B, NEW = ("aaaaaaaa-0000-4000-8000-000000000000", "bbbbbbbb-0000-4000-8000-000000000000",
             "cccccccc-0000-4000-8000-000000000000")


def check(file_uuid, rows, host="h1", node="n1"):
    return check_identity(host=host, nodename=node, file_uuid=file_uuid, file_path="/s/compute_id",
                          rows=rows, new_uuid=NEW)


@pytest.mark.parametrize("file_uuid,rows,expected", [
    (None, [], (NEW, False, True)),
    (None, [KnownNode(B, "h9", "n9")], (NEW, False, True)),
    (A, [KnownNode(A, "h1", "n1")], (A, True, False)),
    (A, [], (A, False, False)),
    (A, [KnownNode(B, "h9", "n9")], (A, False, False)),
], ids=["first-start", "first-start-among-others", "same-node", "new-database",
        "unrelated-rows"])
def test_identity_accepted(file_uuid, rows, expected):
    ident = check(file_uuid, rows)
    assert (ident.uuid, ident.row_exists, ident.write_file) == expected


@pytest.mark.parametrize("file_uuid,rows,message", [
    (A, [KnownNode(B, "h1", "n1")], "identity mismatch"),
    (A, [KnownNode(A, "old-name", "n1")], "host was renamed"),
    (A, [KnownNode(A, "h1", "old-node")], "hypervisor hostname changed"),
    (None, [KnownNode(A, "h1", "n1")], "compute_id is missing, but the database has node " + A),
    (None, [KnownNode(A, "h0", "n1")], "compute_id is missing, but the database has node " + A),
], ids=["other-uuid-here", "renamed-host", "renamed-hypervisor", "lost-file-here",
        "lost-file-other-host"])
def test_identity_refused(file_uuid, rows, message):
    with pytest.raises(StartupError, match=message) as err:
        check(file_uuid, rows)
    assert "/s/compute_id" in str(err.value) and "nothing was destroyed" in str(err.value)


@pytest.mark.parametrize("file_uuid,rows,how", [
    (None, [KnownNode(A, "h1", "n1")], f"printf '%s\\n' {A} > /s/compute_id) and then start "
                                       "again"),
    (None, [KnownNode(A, "h0", "n1")], "then start it as host 'h0'"),
    (B, [KnownNode(A, "h0", "n1")], "Run the agent as host 'h0'"),
], ids=["lost-file-here", "lost-file-other-host", "hypervisor-of-other-host"])
def test_refusal_says_how_to_proceed(file_uuid, rows, how):
    with pytest.raises(StartupError) as err:
        check(file_uuid, rows)
    assert how in str(err.value)
    assert "agent services delete --host h" in str(err.value)


def test_identity_file_round_trip_and_bad_content(tmp_path):
    store = NodeIdentityStore(str(tmp_path / "state"))
    assert store.read() is None
    store.write(A)
    assert store.read() == A
    (tmp_path / "state" / "compute_id").write_text("not-a-uuid\n")
    with pytest.raises(StartupError, match="compute_id: not a uuid"):
        store.read()


def rec(vm, power, task=None, host="h1"):
    return InstanceRecord(
        id=1, uuid=A, display_name="vm", host=host, node="n1", vm_state=vm, task_state=task,
        power_state=int(power), vcpus=1, memory_mb=512, root_gb=1, ephemeral_gb=0, swap=0)


@pytest.mark.parametrize("row,live,new,mismatch", [
    (rec(s.ACTIVE, P.RUNNING), P.RUNNING, None, False),
    (rec(s.ACTIVE, P.RUNNING), P.SHUTDOWN, P.SHUTDOWN, True),
    (rec(s.ACTIVE, P.RUNNING), P.CRASHED, P.CRASHED, True),
    (rec(s.STOPPED, P.SHUTDOWN), P.RUNNING, P.RUNNING, True),
    (rec(s.STOPPED, P.RUNNING), P.SHUTDOWN, P.SHUTDOWN, False),
    (rec(s.ACTIVE, P.RUNNING, task=s.POWERING_OFF), P.SHUTDOWN, None, False),
    (rec(s.ACTIVE, P.RUNNING, host="h2"), P.SHUTDOWN, None, False),
    (rec(s.ERROR, P.RUNNING), P.SHUTDOWN, P.SHUTDOWN, False),
], ids=["in-step", "active-shut-down", "active-crashed", "stopped-running", "stopped-catch-up",
        "task-in-flight", "other-host", "error-ignored"])
def test_power_sync_decision(row, live, new, mismatch):
    decision = decide_power_sync(row, live, "h1")
    assert decision.new_power_state == (int(new) if new is not None else None)
    assert bool(decision.mismatch) is mismatch


@pytest.mark.parametrize("content,message", [
    pytest.param(b"\xff\xfe\x00garbage\x80", "compute_id: not a uuid", id="binary-garbage"),
    pytest.param(b"", "compute_id: not a uuid: ''", id="empty"),
    pytest.param(b"\x00" * 8192, "compute_id: not a uuid", id="zeroes"),
])
def test_corrupt_identity_file_is_an_error_naming_the_file(tmp_path, content, message):
    store = NodeIdentityStore(str(tmp_path / "state"))
    os.makedirs(tmp_path / "state")
    (tmp_path / "state" / "compute_id").write_bytes(content)
    with pytest.raises(StartupError, match=message) as err:
        store.read()
    assert str(tmp_path / "state" / "compute_id") in str(err.value)


def test_unreadable_identity_file_is_an_error_naming_the_file(tmp_path):
    store = NodeIdentityStore(str(tmp_path / "state"))
    os.makedirs(tmp_path / "state" / "compute_id")  # a directory where the file should be
    with pytest.raises(StartupError, match="compute_id: cannot read the node identity: Is a "
                                           "directory"):
        store.read()
