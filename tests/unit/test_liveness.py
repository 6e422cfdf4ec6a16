"""The up/down verdict and its reason, case by case."""

import datetime as dt

import pytest

from agent.liveness import Liveness, clock_offset, clock_warning, service_state

NOW = dt.datetime(2026, 3, 1, 12, 0, 0)
DOWN_TIME = 60


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


# (forced_down, last_seen_up, created_at, last_seen_host_time) -> (up, reason, age)
CASES = [
    pytest.param(False, ago(5), ago(600), ago(5), True, None, 5, id="recent-beat-up"),
    pytest.param(False, ago(60), ago(600), ago(60), True, None, 60,
                 id="exactly-service-down-time-still-up"),
    pytest.param(False, ago(61), ago(600), ago(61), False,
                 "last seen 61 s ago (service_down_time 60 s)", 61, id="one-second-late-down"),
    pytest.param(False, ago(3600), ago(7200), ago(3600), False,
                 "last seen 3600 s ago (service_down_time 60 s)", 3600, id="stopped-long-ago"),
    pytest.param(False, None, ago(10), None, True, None, 10,
                 id="new-row-never-reported-within-grace-up"),
    pytest.param(False, None, ago(300), None, False, "never reported (registered 300 s ago)",
                 300, id="never-reported-down"),
    pytest.param(True, ago(1), ago(600), ago(1), False, "forced down", 1,
                 id="forced-down-overrides-recent-beat"),
    pytest.param(True, None, ago(600), None, False, "forced down", 600,
                 id="forced-down-never-reported"),
    pytest.param(False, ago(5), ago(600), ago(5) + dt.timedelta(hours=1), True, None, 5,
                 id="host-clock-hour-ahead-still-up"),
    pytest.param(False, ago(5), ago(600), ago(5) - dt.timedelta(hours=1), True, None, 5,
                 id="host-clock-hour-behind-still-up"),
    pytest.param(False, ago(120), ago(600), NOW, False,
                 "last seen 120 s ago (service_down_time 60 s)", 120,
                 id="host-clock-cannot-make-stale-beat-look-fresh"),
    pytest.param(False, ago(-86400), ago(600), ago(-86400), False,
                 "last beat 86400 s in the future (database clock set back?; tolerance 5 s)",
                 -86400, id="beat-a-day-in-the-future-down"),
    pytest.param(False, ago(-6), ago(600), ago(-6), False,
                 "last beat 6 s in the future (database clock set back?; tolerance 5 s)",
                 -6, id="beat-just-past-the-tolerance-down"),
    pytest.param(False, ago(-5), ago(600), ago(-5), True, None, -5,
                 id="beat-within-the-tolerance-up"),
    pytest.param(False, None, ago(-3600), None, False,
                 "never reported; registered 3600 s in the future (database clock set "
                 "back?; tolerance 5 s)", -3600, id="never-reported-created-in-the-future-down"),
    pytest.param(True, ago(-86400), ago(600), ago(-86400), False, "forced down", -86400,
                 id="forced-down-wins-over-a-future-beat"),
]


@pytest.mark.parametrize("forced_down,last_seen_up,created_at,host_time,up,reason,age", CASES)
def test_service_state(forced_down, last_seen_up, created_at, host_time, up, reason, age):
    state = service_state(forced_down, last_seen_up, created_at, host_time, NOW, DOWN_TIME)
    assert state.up is up
    assert state.reason == reason
    assert state.age_seconds == pytest.approx(age)


@pytest.mark.parametrize("forced_down,last_seen_up,created_at,host_time,up,reason,age", CASES)
def test_list_verdict_is_the_same_rule(forced_down, last_seen_up, created_at, host_time, up,
                                       reason, age):
    """The lists judge each row with Liveness.is_up alone (the reason only for rows that are
    down): it must give the verdict of service_state in every case."""
    assert Liveness(NOW, DOWN_TIME).is_up(forced_down, last_seen_up, created_at) is up


@pytest.mark.parametrize("last_seen_up,host_time,expected", [
    pytest.param(NOW, NOW + dt.timedelta(hours=1), 3600.0, id="host-ahead-positive"),
    pytest.param(NOW, NOW - dt.timedelta(hours=1), -3600.0, id="host-behind-negative"),
    pytest.param(NOW, NOW + dt.timedelta(milliseconds=250), 0.25, id="sub-second"),
    pytest.param(None, NOW, None, id="never-reported-unknown"),
    pytest.param(NOW, None, None, id="no-host-time-unknown"),
])
def test_clock_offset(last_seen_up, host_time, expected):
    assert clock_offset(last_seen_up, host_time) == expected
    state = service_state(False, last_seen_up, NOW, host_time, NOW, DOWN_TIME)
    assert state.clock_offset_seconds == expected


@pytest.mark.parametrize("offset,expected", [
    pytest.param(3600.0, "host h1: clock is 3600 s ahead of the database clock", id="ahead"),
    pytest.param(-3600.0, "host h1: clock is 3600 s behind the database clock", id="behind"),
    pytest.param(2.0, None, id="small-offset-silent"),
    pytest.param(None, None, id="unknown-silent"),
])
def test_clock_warning(offset, expected):
    warning = clock_warning("h1", offset)
    if expected is None:
        assert warning is None
    else:
        assert warning.startswith(expected)
        assert "NTP" in warning


# A row still carrying 'AUTO: starting': (last_seen_up, created_at, forced_down) -> reason
STARTING_CASES = [
    pytest.param(ago(5), ago(600), False, None, id="starting-and-beating-up"),
    pytest.param(ago(120), ago(600), False,
                 "died in start-up, last seen 120 s ago (service_down_time 60 s)",
                 id="beats-stopped-in-start-up"),
    pytest.param(None, ago(300), False,
                 "died in start-up, never reported (registered 300 s ago)",
                 id="died-before-the-first-beat"),
    pytest.param(ago(120), ago(600), True, "forced down", id="forced-down-says-only-that"),
]


@pytest.mark.parametrize("last_seen_up,created_at,forced_down,reason", STARTING_CASES)
def test_service_still_starting(last_seen_up, created_at, forced_down, reason):
    state = service_state(forced_down, last_seen_up, created_at, last_seen_up, NOW, DOWN_TIME,
                          starting=True)
    assert (state.up, state.reason) == (reason is None, reason)
