"""The `db` fixture itself: a test that writes outside its transaction fails, and the tests
after it still find the database as the migration leaves it (the default flavors on SQLite)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]

LEAKING_THEN_LAUNCHING = '''
from sqlalchemy import func, insert, select

from agent.db.engine import make_database
from agent.db.models import Flavor


def test_1_leaks_a_flavor(sqlite_rolled_back_db, _rolled_back_sqlite_url):
    other = make_database(_rolled_back_sqlite_url)  # a connection of its own
    with other.engine.begin() as conn:
        conn.execute(insert(Flavor).values(flavorid="leak", name="leak", vcpus=1,
                                           memory_mb=64))
    other.dispose()


def test_2_finds_the_default_flavors(sqlite_rolled_back_db):
    with sqlite_rolled_back_db.engine.connect() as conn:
        names = conn.execute(select(Flavor.name).order_by(Flavor.flavorid)).scalars().all()
    assert names == ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]
'''


def test_rows_left_on_sqlite_fail_that_test_and_spare_the_next(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(LEAKING_THEN_LAUNCHING))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
         "test_inner.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = run.stdout + run.stderr
    assert "ERROR test_inner.py::test_1_leaks_a_flavor" in out, out
    assert "writes outside the db fixture's transaction survived the test (+1 rows)" in out, out
    assert "PASSED test_inner.py::test_2_finds_the_default_flavors" in out, out
