"""The drivers the contract tests run against.

Each entry of FACTORIES builds one driver on a fresh `tmp_path` and says what it hosts at start:
a `Subject`. Adding a driver is a few lines: write a factory and add it to FACTORIES; the test
ids are the FACTORIES keys. A factory whose real part is missing calls `require_tier`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping

import pytest

from agent.config import Config, RawValue, resolve
from agent.virt.driver import ComputeDriver
from agent.virt.types import InstanceRef, PowerState

CONTRACT_HOST = "contract-host"
EXAMPLE_SCENARIO = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "etc",
                                "scenario.example.toml")


@dataclass(frozen=True)
class Subject:
    """A driver under test and what it hosts at start.

    `guest` is a running guest the test may power-cycle and destroy; `known` maps the uuid of
    every guest defined at start to its power state (the listing must show exactly these).
    `restore`, when given, runs after the test to undo changes to state that outlives the
    driver (libvirt's test:///default is one hypervisor per process, shared by every
    connection: a destroyed 'test' domain must be defined and started again)."""

    driver: ComputeDriver
    host: str
    guest: InstanceRef
    known: Mapping[str, PowerState]
    restore: Callable[[], None] | None = None


def make_conf(tmp_path, overrides: Mapping[tuple[str, str], str] | None = None) -> Config:
    """A Config with the built-in defaults, state under `tmp_path`, host CONTRACT_HOST, and
    `overrides` ((section, name) -> value as written in a config file)."""
    raw = {("DEFAULT", "host"): CONTRACT_HOST, ("DEFAULT", "state_path"): str(tmp_path)}
    raw.update(overrides or {})
    return resolve({key: RawValue(value, f"contract conf {key[0]}.{key[1]}")
                    for key, value in raw.items()})


def _fake_subject(tmp_path, scenario) -> Subject:
    from fakevirt.driver import FakeDriver

    driver = FakeDriver(make_conf(tmp_path), scenario=scenario)
    running = next(d for d in scenario.domains if d.power_state == PowerState.RUNNING)
    return Subject(driver, CONTRACT_HOST, InstanceRef(running.uuid, running.name),
                   {d.uuid: d.power_state for d in scenario.domains})


def fake_factory(tmp_path) -> Subject:
    """FakeDriver with 30 generated guests in mixed states."""
    from fakevirt.scenario import generate_scenario

    return _fake_subject(tmp_path, generate_scenario(30, hostname=CONTRACT_HOST))


def fake_example_factory(tmp_path) -> Subject:
    """FakeDriver on the documented example scenario (etc/scenario.example.toml)."""
    from fakevirt.scenario import load_scenario

    return _fake_subject(tmp_path, load_scenario(EXAMPLE_SCENARIO))


FACTORIES: dict[str, Callable[..., Subject]] = {
    "fake": fake_factory,
    "fake-example": fake_example_factory,
}


@pytest.fixture(params=list(FACTORIES), ids=list(FACTORIES))
def subject(request, tmp_path) -> Subject:
    made = FACTORIES[request.param](tmp_path)
    yield made
    made.driver.register_event_listener(None)
    made.driver.cleanup_host()
    if made.restore is not None:
        made.restore()


@pytest.fixture
def driver(subject) -> ComputeDriver:
    return subject.driver
