"""FailureLog: a repeating failure is one line when it starts, one when it clears."""

from __future__ import annotations

import logging

from agent.failure_log import FailureLog

LOGGER = logging.getLogger("tests.failure_log")


def messages(caplog, level=logging.INFO):
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == LOGGER.name and r.levelno >= level]


def test_repeats_are_silent_and_recovery_says_how_long(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)
    now = [100.0]
    failures = FailureLog(LOGGER, "periodic job audit", clock=lambda: now[0])
    for _ in range(5):
        failures.failed(ConnectionError("database unreachable"), "it runs again in about 60 s")
        now[0] += 60
    failures.succeeded()
    failures.succeeded()

    assert messages(caplog) == [
        ("ERROR", "periodic job audit failing: ConnectionError: database unreachable; it runs "
                  "again in about 60 s (logged again when it recovers; traceback at DEBUG)"),
        ("INFO", "periodic job audit recovered after 5 failed runs (300 s)"),
    ]
    assert not failures.failing and failures.failures == 0
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 5 and {r.levelname for r in tracebacks} == {"DEBUG"}


def test_another_kind_of_failure_is_one_more_line(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    failures = FailureLog(LOGGER, "sync", level=logging.WARNING)
    failures.failed(ConnectionError("database unreachable"))
    failures.failed(ConnectionError("database unreachable"))
    failures.failed(KeyError("vcpus"))
    failures.failed(KeyError("vcpus"))

    assert messages(caplog) == [
        ("WARNING", "sync failing: ConnectionError: database unreachable (logged again when "
                    "it recovers; traceback at DEBUG)"),
        ("WARNING", "sync now failing differently: KeyError: 'vcpus' (logged again when it "
                    "recovers; traceback at DEBUG)"),
    ]
    assert failures.failing and failures.failures == 4


def test_success_without_failure_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)
    FailureLog(LOGGER, "sync").succeeded()
    assert messages(caplog, logging.DEBUG) == []
