"""The control plane's service requests on every backend, called as the API will call them: in
the caller's session, refusing with typed errors that carry the values a caller words, and
leaving the whole transaction to the caller."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from agent.commands import refusals
from agent.control import errors
from agent.control.services import delete_service, set_disabled, set_forced_down
from agent.db.models import Instance, Migration, Service
from agent.heartbeat import Heartbeat
from agent.registry import register_service
from agent.vocabulary import COMPUTE_BINARY
from tests.functional.compute_helpers import in_transaction


def add_service(db, host: str) -> int:
    record = register_service(db, host, starting=False)
    assert Heartbeat(db, record.id, 10).beat()
    return record.id


def service_row(db, host: str) -> Service | None:
    with db.sessions() as session:
        return session.scalars(select(Service).where(Service.host == host,
                                                     Service.deleted == 0)).one_or_none()


def test_unknown_host_is_service_not_found_with_its_values(db):
    with pytest.raises(errors.ServiceNotFound) as caught:
        in_transaction(db, set_disabled, "nowhere", COMPUTE_BINARY, True, "x")
    assert (caught.value.host, caught.value.binary, caught.value.role) == (
        "nowhere", COMPUTE_BINARY, None)


def test_delete_refused_carries_both_counts_and_changes_nothing(db):
    add_service(db, "busy")
    with db.sessions.begin() as session:
        session.add_all([Instance(display_name=f"vm{i}", host="busy", node="busy",
                                  vm_state="active", power_state=1) for i in range(2)])
        session.add(Migration(instance_uuid="11111111-1111-4111-8111-111111111111",
                              source_compute="busy", dest_compute="other",
                              migration_type="migration", status="migrating"))
    with pytest.raises(errors.ServiceInUse) as caught:
        in_transaction(db, delete_service, "busy", COMPUTE_BINARY)
    assert (caught.value.instances, caught.value.migrations) == (2, 1)
    assert service_row(db, "busy") is not None


def test_unset_forced_down_refused_carries_the_pending_count(db):
    add_service(db, "src")
    in_transaction(db, set_forced_down, "src", COMPUTE_BINARY, True)
    with db.sessions.begin() as session:
        session.add(Migration(instance_uuid="22222222-2222-4222-8222-222222222222",
                              source_compute="src", dest_compute="dst",
                              migration_type="evacuation", status="done"))
    with pytest.raises(errors.EvacuationsPending) as caught:
        in_transaction(db, set_forced_down, "src", COMPUTE_BINARY, False)
    assert (caught.value.host, caught.value.count) == ("src", 1)
    assert service_row(db, "src").forced_down is True


def test_the_caller_owns_the_transaction(db):
    """Two requests in one session: the second's refusal rolls back the first's change too
    (one API request is one transaction); without the refusal both are committed."""
    add_service(db, "cn1")
    with db.sessions.begin() as session:
        session.add(Instance(display_name="vm", host="cn1", node="cn1", vm_state="active",
                             power_state=1))
    with pytest.raises(errors.ServiceInUse):
        with db.sessions.begin() as session:
            set_disabled(session, "cn1", COMPUTE_BINARY, True, "maintenance")
            delete_service(session, "cn1", COMPUTE_BINARY)
    assert service_row(db, "cn1").disabled is False

    with db.sessions.begin() as session:
        set_disabled(session, "cn1", COMPUTE_BINARY, True, "maintenance")
        set_forced_down(session, "cn1", COMPUTE_BINARY, True)
    row = service_row(db, "cn1")
    assert (row.disabled, row.disabled_reason, row.forced_down) == (True, "maintenance", True)


@pytest.mark.parametrize("reason, refusal", [
    pytest.param("x" * 256, errors.ReasonTooLong, id="too-long"),
    pytest.param("AUTO: mine", errors.ReasonReserved, id="reserved"),
])
def test_bad_reason_refused_before_any_read(reason, refusal):
    # No database at all: the rule is checked before the session is used.
    with pytest.raises(refusal):
        set_disabled(None, "cn1", COMPUTE_BINARY, True, reason)


def test_every_refusal_has_command_line_words():
    kinds = {cls for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.ControlError)
             and cls is not errors.ControlError}
    assert kinds - set(refusals.WORDS) == set()
