"""CallLine: one libvirt call at a time per connection, each with a limit."""

from __future__ import annotations

import threading

import pytest

from agent.errors import DriverError
from agent.virt.libvirt.calls import CallLine
from tests.conftest import import_libvirt


def test_calls_from_many_threads_run_one_at_a_time():
    line = CallLine("test", 30)
    lock = threading.Lock()
    state = {"active": 0, "peak": 0, "runs": 0}
    gate = threading.Barrier(8)

    def call():
        with lock:
            state["active"] += 1
            state["peak"] = max(state["peak"], state["active"])
        threading.Event().wait(0.01)
        with lock:
            state["active"] -= 1
            state["runs"] += 1

    def caller():
        gate.wait()
        for _ in range(5):
            line.call(call)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    line.close()
    assert state == {"active": 0, "peak": 1, "runs": 40}


def test_a_call_without_answer_fails_at_the_limit_and_reports_it():
    timeouts = []
    line = CallLine("test", 0.2, on_timeout=timeouts.append)
    hung = threading.Event()

    def getHostname():  # noqa: N802 - named like the libvirt call it stands for
        hung.wait(30)

    try:
        with pytest.raises(DriverError, match="getHostname got no answer within 0.2 s"):
            line.call(getHostname)
        assert timeouts == ["no answer to getHostname within 0.2 s"]
    finally:
        hung.set()
        line.close()


def test_errors_reach_the_caller_and_a_closed_line_refuses_calls():
    line = CallLine("test", 30)
    with pytest.raises(ZeroDivisionError):
        line.call(lambda: 1 / 0)
    line.close()
    with pytest.raises(DriverError, match="closed"):
        line.call(lambda: None)


def test_domains_returned_by_a_wrapped_connection_run_on_the_line():
    libvirt = import_libvirt()
    conn = libvirt.open("test:///default")
    line = CallLine("test:///default", 30)
    threads = []
    try:
        wrapped = line.wrap(conn)
        [dom] = wrapped.listAllDomains(0)
        original = dom.unwrapped.info

        def info():
            threads.append(threading.current_thread().name)
            return original()

        dom.unwrapped.info = info
        assert dom.info()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert threads == ["libvirt-calls test:///default"]
        [(stats_dom, stats)] = wrapped.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
        assert stats_dom.name() == "test" and "state.state" in stats
        assert stats_dom.unwrapped is not None
    finally:
        line.close()
        conn.close()
