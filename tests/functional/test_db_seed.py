"""`agent db seed FILE` on every database backend: the documented example lands as rows, in one
transaction, and a second seed is refused unless --replace."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from sqlalchemy import func, select

from agent.cli import main
from agent.db.engine import make_database
from agent.db.models import Instance, Migration
from agent.errors import ScenarioError
from agent.virt.types import PowerState
from fakevirt.scenario import generate_scenario, load_scenario
from fakevirt.seed import seed_database

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "etc",
                                       "scenario.example.toml"))


def counts(db) -> tuple[int, int]:
    with db.sessions() as session:
        return (session.scalar(select(func.count()).select_from(Instance)),
                session.scalar(select(func.count()).select_from(Migration)))


def rows_by_uuid(db, model) -> dict:
    with db.sessions() as session:
        return {row.uuid: row for row in session.scalars(select(model))}


def test_seed_example_writes_its_instances_and_migrations(any_db_url, capsys):
    assert main(["db", "seed", EXAMPLE, "--db", any_db_url, "--host", "ignored"]) == 0
    out = capsys.readouterr().out
    scenario = load_scenario(EXAMPLE)
    assert (f"seeded {len(scenario.instances)} instances and {len(scenario.migrations)} "
            "migration from ") in out  # the example has one
    db = make_database(any_db_url)
    try:
        instances = rows_by_uuid(db, Instance)
        migrations = rows_by_uuid(db, Migration)
    finally:
        db.dispose()
    assert set(instances) == {i.uuid for i in scenario.instances}
    for record in scenario.instances:
        row = instances[record.uuid]
        assert (row.host, row.node, row.vm_state, row.task_state, row.power_state,
                row.vcpus, row.memory_mb, row.root_gb, row.display_name) == \
               (record.host, record.node, record.vm_state, record.task_state,
                int(record.power_state), record.vcpus, record.memory_mb, record.root_gb,
                record.display_name)
    web = instances["11111111-1111-4111-8111-111111111111"]
    vifs = json.loads(web.network_info)
    assert vifs[0]["address"] == "fa:16:3e:00:00:01"
    assert vifs[0]["fixed_ips"] == [{"address": "10.0.0.11", "version": 4},
                                    {"address": "fd00::11", "version": 6}]
    assert {"protocol": "tcp", "port_min": 22, "port_max": 22,
            "source_cidr": "192.0.2.0/24", "ethertype": 4} in vifs[0]["rules"]
    assert json.loads(instances["22222222-2222-4222-8222-222222222222"].network_info) == []
    evacuation = migrations["77777777-7777-4777-8777-777777777777"]
    assert (evacuation.migration_type, evacuation.status, evacuation.source_compute,
            evacuation.dest_compute, evacuation.source_node, evacuation.instance_uuid) == \
           ("evacuation", "done", "compute-1", "compute-2", "compute-1",
            "44444444-4444-4444-8444-444444444444")
    assert instances[evacuation.instance_uuid].host == "compute-2"


def test_seed_again_is_refused_and_writes_nothing(any_db, capsys):
    seed_database(any_db, load_scenario(EXAMPLE))
    before = counts(any_db)
    url = any_db.engine.url.render_as_string(hide_password=False)
    assert main(["db", "seed", EXAMPLE, "--db", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("agent: error: ") and "\n" not in err
    assert "already in the database" in err and "--replace" in err
    assert "11111111-1111-4111-8111-111111111111" in err
    assert counts(any_db) == before


def test_seed_is_all_or_nothing_when_a_migration_uuid_exists(db, tmp_path):
    seed_database(db, load_scenario(EXAMPLE))
    path = tmp_path / "second.toml"
    path.write_text(textwrap.dedent("""
        [[instances]]
        uuid = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
        host = "compute-3"
        [[migrations]]
        uuid = "77777777-7777-4777-8777-777777777777"
        instance_uuid = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
        migration_type = "evacuation"
        status = "done"
    """))
    before = counts(db)
    with pytest.raises(ScenarioError, match="1 migration uuid"):
        seed_database(db, load_scenario(str(path)))
    assert counts(db) == before
    assert "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" not in rows_by_uuid(db, Instance)


def test_seed_replace_overwrites_existing_rows(db, tmp_path):
    seed_database(db, load_scenario(EXAMPLE))
    before = counts(db)
    path = tmp_path / "changed.toml"
    path.write_text(textwrap.dedent("""
        [[instances]]
        uuid = "11111111-1111-4111-8111-111111111111"
        host = "compute-1"
        vm_state = "stopped"
    """))
    result = seed_database(db, load_scenario(str(path)), replace=True)
    assert (result.instances, result.replaced) == (1, 1)
    row = rows_by_uuid(db, Instance)["11111111-1111-4111-8111-111111111111"]
    assert (row.vm_state, row.power_state) == ("stopped", PowerState.SHUTDOWN)
    assert counts(db) == before


def test_instances_without_host_get_the_agent_host(sqlite_url, tmp_path, capsys):
    path = tmp_path / "hostless.toml"
    path.write_text('[[instances]]\nuuid = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"\n')
    assert main(["db", "seed", str(path), "--db", sqlite_url, "--host", "compute-7"]) == 0
    db = make_database(sqlite_url)
    try:
        row = rows_by_uuid(db, Instance)["bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"]
    finally:
        db.dispose()
    assert (row.host, row.node) == ("compute-7", "compute-7")


def test_seed_creates_the_embedded_sqlite_schema(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/new.sqlite"
    assert main(["db", "seed", EXAMPLE, "--db", url]) == 0
    assert "seeded" in capsys.readouterr().out
    db = make_database(url)
    try:
        assert rows_by_uuid(db, Instance)
    finally:
        db.dispose()


def test_seed_into_a_server_without_schema_says_to_run_db_sync(throwaway_postgresql, capsys):
    assert main(["db", "seed", EXAMPLE, "--db", throwaway_postgresql.url]) != 0
    err = capsys.readouterr().err
    assert "agent db sync" in err


def test_malformed_scenario_is_refused_before_touching_the_database(sqlite_url, tmp_path,
                                                                     capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[[instances]]\nuuid = "nope"\n')
    assert main(["db", "seed", str(path), "--db", sqlite_url]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"agent: error: {path}: instances[0] (uuid nope): uuid: 'nope' is not a "
                   "uuid (expected 8-4-4-4-12 hex digits)")


def test_seed_thousands_of_generated_instances(db):
    scenario = generate_scenario(2000, hostname="big-host")
    result = seed_database(db, scenario)
    assert (result.instances, result.migrations) == (2000, 0)
    with db.sessions() as session:
        on_host = session.scalar(select(func.count()).select_from(Instance)
                                 .where(Instance.host == "big-host"))
    assert on_host == 2000


def test_seed_logs_progress_every_few_seconds_and_prints_one_summary(sqlite_db, caplog):
    import itertools
    import logging

    scenario = generate_scenario(12_000, hostname="big-1")
    ticks = itertools.count(step=3)  # each reading of the clock is 3 s later

    with caplog.at_level(logging.DEBUG, logger="fakevirt.seed"):
        result = seed_database(sqlite_db, scenario, clock=lambda: float(next(ticks)))

    assert result.instances == 12_000 and counts(sqlite_db) == (12_000, 0)
    info = [r.getMessage() for r in caplog.records
            if r.name == "fakevirt.seed" and r.levelno == logging.INFO]
    assert info and all(line.startswith("seeding: ") and " of 12,000 rows (" in line
                        for line in info)
    assert "seeding: 10,000 of 12,000 rows (83 %)" in "\n".join(info)
    assert result.seconds > 0


def test_seed_command_counts_in_words(sqlite_url, tmp_path, capsys):
    path = tmp_path / "one.toml"
    path.write_text('[[instances]]\nuuid = "11111111-1111-4111-8111-111111111111"\n'
                    'host = "cn1"\n', encoding="utf-8")

    assert main(["db", "seed", str(path), "--db", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seeded 1 instance and 0 migrations from ")
    assert main(["db", "seed", str(path), "--db", sqlite_url, "--replace"]) == 0
    assert ", replacing 1 existing row in " in capsys.readouterr().out


def test_seed_of_a_large_scenario_says_it_is_reading_it(sqlite_url, tmp_path, capsys):
    count = 12_000
    entries = [f'[[instances]]\nuuid = "00000000-0000-4000-8000-{i:012d}"\n'
               f'display_name = "vm-{i}"\nhost = "cn1"\n' for i in range(count)]
    path = tmp_path / "large.toml"
    path.write_text("\n".join(entries), encoding="utf-8")
    assert path.stat().st_size > 1_000_000

    assert main(["db", "seed", str(path), "--db", sqlite_url]) == 0

    out, err = capsys.readouterr()
    assert f"reading scenario {path} (" in err and " MB)" in err
    assert f"scenario {path}: 0 domains, 12,000 instances and 0 migrations, read and " \
           "checked in " in err
    assert out.startswith("seeded 12,000 instances and 0 migrations from ")
    assert out.count("\n") == 1
