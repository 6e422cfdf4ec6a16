"""What init_host says while it works: a progress line every few seconds, one summary line,
per-instance steps only at DEBUG, counted nouns that agree with their numbers."""

from __future__ import annotations

import itertools
import logging
import re
import uuid as uuid_lib

from agent.compute.manager import ComputeManager
from fakevirt.scenario import generate_scenario
from tests.functional.compute_helpers import (HOST, domain, make_conf, make_driver,
                                              make_scenario, noop_firewall, seeded)
from agent.virt.types import PowerState

# Start-up's own lines, and its step runner's (agent.compute.steps: one line per step).
MANAGER_LOGS = ("agent.compute.manager", "agent.compute.steps")


def manager_lines(caplog, level):
    return [r.getMessage() for r in caplog.records
            if r.name in MANAGER_LOGS and r.levelno == level]


def test_init_host_logs_progress_and_one_summary_not_a_line_per_instance(
        tmp_path, sqlite_db, caplog):
    scenario = seeded(sqlite_db, generate_scenario(40, hostname=HOST))
    conf = make_conf(tmp_path, sqlite_db)
    ticks = itertools.count()  # each reading of the clock is one second later

    with caplog.at_level(logging.DEBUG, logger="agent.compute"):
        result = ComputeManager(conf, sqlite_db, make_driver(conf, scenario), noop_firewall(),
                                clock=lambda: float(next(ticks))).init_host()

    assert len(result.instances) == 40
    info = manager_lines(caplog, logging.INFO)
    assert not [line for line in info if "plug-vifs" in line]
    assert len([line for line in manager_lines(caplog, logging.DEBUG)
                if "plug-vifs" in line]) >= 28  # 7 in 10 guests run
    progress = [line for line in info if re.match(r"init_host: \d+ of 40 instances", line)]
    assert 4 <= len(progress) <= 10
    assert progress[-1] != progress[0]
    (summary,) = [line for line in info if line.startswith("init_host done in")]
    assert ": 40 instances (" in summary


def test_init_host_without_enough_time_logs_no_progress(tmp_path, sqlite_db, caplog):
    scenario = seeded(sqlite_db, generate_scenario(5, hostname=HOST))
    conf = make_conf(tmp_path, sqlite_db)
    with caplog.at_level(logging.INFO, logger="agent.compute"):
        ComputeManager(conf, sqlite_db, make_driver(conf, scenario), noop_firewall(),
                       clock=lambda: 0.0).init_host()
    info = manager_lines(caplog, logging.INFO)
    assert not [line for line in info if re.match(r"init_host: \d+ of", line)]
    assert [line for line in info if line.startswith("init_host done in 0.0 s: 5 instances")]


def test_one_unknown_guest_reads_in_the_singular(tmp_path, sqlite_db, caplog):
    stray = str(uuid_lib.uuid4())
    scenario = seeded(sqlite_db, make_scenario([], [domain(stray, PowerState.RUNNING)]))
    conf = make_conf(tmp_path, sqlite_db)
    with caplog.at_level(logging.INFO, logger="agent.compute"):
        ComputeManager(conf, sqlite_db, make_driver(conf, scenario), noop_firewall()).init_host()
    text = "\n".join(manager_lines(caplog, logging.INFO)
                     + manager_lines(caplog, logging.WARNING))
    assert "0 instances of host cmp1, 1 guest on the hypervisor, 0 open migrations" in text
    assert "1 guest on the hypervisor has no instance in the database" in text
    assert "init_host done in" in text and ": 0 instances" in text
