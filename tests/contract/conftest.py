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
from tests.conftest import import_libvirt

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


# Held STOPPED events are delivered after this long in the libvirt contract runs (15 s in
# production): the hold is exercised without making every power-off test wait 15 s.
LIBVIRT_CONTRACT_STOPPED_DELAY_S = 0.5


def _libvirt_subject(tmp_path, uri: str, restore: Callable[[], None] | None = None) -> Subject:
    libvirt = import_libvirt()
    from agent.virt.libvirt.driver import LibvirtDriver
    from agent.virt.libvirt.host import Host, start_event_loop
    from agent.virt.libvirt.checks import power_state_from_domain_state

    start_event_loop(libvirt)  # before this process opens its first connection
    conn = libvirt.open(uri)
    try:
        known = {d.UUIDString(): power_state_from_domain_state(d.info()[0])
                 for d in conn.listAllDomains(0)}
        running = sorted(d.name() for d in conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING))[0]
        guest = InstanceRef(conn.lookupByName(running).UUIDString(), running)
    finally:
        conn.close()
    conf = make_conf(tmp_path, {("libvirt", "connection_uri"): uri})
    host = Host(uri, stopped_delay=LIBVIRT_CONTRACT_STOPPED_DELAY_S)
    driver = LibvirtDriver(conf, host=host, shutdown_timeout=10, poll_interval=0.05)
    return Subject(driver, CONTRACT_HOST, guest, known, restore)


def libvirt_test_default_factory(tmp_path) -> Subject:
    """LibvirtDriver on libvirt's built-in test hypervisor (test:///default: one running
    guest named 'test')."""
    libvirt = import_libvirt()
    uri = "test:///default"
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName("test")
        original_xml = dom.XMLDesc(0)
    finally:
        conn.close()

    def restore() -> None:
        again = libvirt.open(uri)
        try:
            try:
                dom = again.lookupByName("test")
            except libvirt.libvirtError:
                dom = again.defineXML(original_xml)
            if not dom.isActive():
                dom.create()
        finally:
            again.close()

    return _libvirt_subject(tmp_path, uri, restore)


def libvirt_test_1000_factory(tmp_path) -> Subject:
    """LibvirtDriver on a generated test:///<tmp>/node.xml: 1,000 guests, running, paused and
    shut off in turn."""
    from tests.libvirt_xml import write_node

    node = write_node(tmp_path, 1000)
    return _libvirt_subject(tmp_path, node.uri)


FACTORIES: dict[str, Callable[..., Subject]] = {
    "fake": fake_factory,
    "fake-example": fake_example_factory,
    "libvirt-test-default": libvirt_test_default_factory,
    "libvirt-test-1000": libvirt_test_1000_factory,
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
