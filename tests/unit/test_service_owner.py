"""Which agent may take a service row at start-up (agent.service_owner.other_agent), as a
table of named cases."""

import datetime as dt

import pytest

from agent.service_owner import RowOwner, other_agent

NOW = dt.datetime(2026, 11, 29, 12, 0, 0)
ME, OTHER = "aaaaaaaa-0000-4000-8000-000000000000", "bbbbbbbb-0000-4000-8000-000000000000"
DOWN = 60.0


def owner(by, *, beat_age=None, started_age=None):
    ago = (lambda s: NOW - dt.timedelta(seconds=s) if s is not None else None)
    return RowOwner("cn1", 7, by, ago(beat_age), ago(started_age), 3, NOW)


@pytest.mark.parametrize("row,me", [
    (owner(None, beat_age=1), ME),
    (owner(ME, beat_age=1, started_age=100), ME),
    (owner(OTHER, beat_age=61, started_age=900), ME),
    (owner(OTHER), ME),
    (owner(OTHER, started_age=61), ME),
], ids=["never-claimed-with-an-identity", "restart-after-crash", "other-quiet-past-down-time",
        "other-never-beat-nor-started", "other-claimed-long-ago-never-beat"])
def test_row_may_be_taken(row, me):
    assert other_agent(row, me, DOWN) is None


@pytest.mark.parametrize("row,me,since", [
    (owner(OTHER, beat_age=2, started_age=3600), ME, "since 2026-11-29 11:00:00 UTC"),
    (owner(OTHER, beat_age=2), ME, "since at least 2026-11-29 11:59:58 UTC"),
    (owner(OTHER, started_age=1), ME, "since 2026-11-29 11:59:59 UTC"),
    (owner(OTHER, beat_age=-86400, started_age=10), ME, "since 2026-11-29 11:59:50 UTC"),
    (owner(OTHER, beat_age=59, started_age=59), None, "since 2026-11-29 11:59:01 UTC"),
], ids=["other-beating", "other-beating-before-started-at-existed", "other-just-claimed",
        "other-beat-in-the-future", "no-identity-here"])
def test_row_run_by_another_agent_is_refused(row, me, since):
    message = other_agent(row, me, DOWN)
    assert message is not None
    assert message.startswith(f"host 'cn1' is already run by another agent (identity {OTHER}, "
                              f"{since};")
    assert "refusing to start (nothing was changed)" in message
    assert "service_down_time (60 s)" in message
