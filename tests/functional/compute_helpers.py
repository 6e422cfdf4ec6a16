"""Building a host on fakevirt with a seeded database, for the compute tests."""

from __future__ import annotations

from sqlalchemy import select

from agent.config import load_config
from agent.db.models import Instance, Migration
from agent.network.firewall import NoopFirewall
from fakevirt.driver import FakeDriver
from fakevirt.scenario import DomainSpec, HostSpec, Scenario
from fakevirt.seed import seed_database

HOST = "cmp1"


def make_conf(tmp_path, db, **options):
    overrides = {("DEFAULT", "host"): HOST, ("DEFAULT", "state_path"): str(tmp_path / "state"),
                 ("database", "connection"): db.engine.url.render_as_string(hide_password=False)}
    for key, value in options.items():
        section, _, name = key.rpartition("__")
        overrides[(section or "DEFAULT", name)] = str(value).lower() \
            if isinstance(value, bool) else str(value)
    return load_config(None, overrides)


def make_scenario(instances=(), domains=(), migrations=(), hostname=HOST):
    return Scenario(HostSpec(hostname=hostname, vcpus=16, memory_mb=32768, local_gb=500,
                             cpu_arch="x86_64"), tuple(domains), tuple(instances),
                    tuple(migrations))


def make_driver(conf, scenario, host=HOST):
    driver = FakeDriver(conf, scenario=scenario)
    driver.init_host(host)
    return driver


def seeded(db, scenario):
    seed_database(db, scenario)
    return scenario


def domain(uuid, power, name=None):
    return DomainSpec(uuid, name or f"guest-{uuid[:8]}", power)


def instance_row(db, uuid):
    """The instance row (soft-deleted rows included)."""
    with db.sessions() as session:
        return session.scalars(select(Instance).where(Instance.uuid == uuid)).one()


def migration_row(db, uuid):
    with db.sessions() as session:
        return session.scalars(select(Migration).where(Migration.uuid == uuid)).one()


def noop_firewall():
    return NoopFirewall()


def read_only(db):
    """The same database opened read-only, as a dry run opens it (the caller disposes it)."""
    from agent.db.engine import make_database

    return make_database(db.engine.url.render_as_string(hide_password=False), read_only=True)


def make_host(tmp_path, db, scenario, *, host=HOST, dry_run=False, driver=None, **options):
    """A ComputeHost on fakevirt with a registered service; not started. With `dry_run`, built
    as the agent builds a dry run's: the driver behind a RecordingDriver and the database
    opened read-only."""
    from agent.compute.host import ComputeHost
    from agent.registry import register_service
    from agent.virt.recording import RecordingDriver

    conf = make_conf(tmp_path, db, **options)
    conf = conf.replace(host=host)
    service = register_service(db, host)
    driver = driver or FakeDriver(conf, scenario=scenario)
    if dry_run:
        return ComputeHost(conf, read_only(db), service, driver=RecordingDriver(driver),
                           firewall=NoopFirewall())
    return ComputeHost(conf, db, service, driver=driver, firewall=NoopFirewall())


GONE = "gone"  # guest_power of a guest the hypervisor does not have


def guest_power(driver, uuid):
    """The guest's power state on the hypervisor, or GONE."""
    from agent.errors import InstanceNotFound
    from agent.virt.types import InstanceRef

    try:
        return driver.get_info(InstanceRef(uuid, "")).power_state
    except InstanceNotFound:
        return GONE


def guest_exists(driver, uuid) -> bool:
    return guest_power(driver, uuid) != GONE


def in_transaction(db, request, *args, **kwargs):
    """Run a control-plane request (agent.control) as a command does: in one transaction of
    its own, committed when it returns."""
    with db.sessions.begin() as session:
        return request(session, *args, **kwargs)
