"""Passwords in the database URL, in every form, through the real commands: `agent db sync`,
`agent --once` (at DEBUG, where SQLAlchemy logs too), `agent services list`, `agent fleet
--report`, and connections that fail. The secret must appear nowhere in stdout, stderr, the log
file or the report."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.agent_process import write_config
from tests.conftest import server_url

PW = "Zq7-sekret-9"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_password(url: str, form: str) -> str:
    """`url` (a server URL without a password) with PW written in one of the forms."""
    base = make_url(url).render_as_string(hide_password=False)
    scheme, rest = base.split("://", 1)
    user_host, _, tail = rest.partition("/")
    user, _, host = user_host.rpartition("@")
    sep = "&" if "?" in tail else "?"
    return {
        "userinfo": f"{scheme}://{user}:{PW}@{host}/{tail}",
        "encoded-at": f"{scheme}://{user}:{PW}%40x@{host}/{tail}",
        "query": f"{base}{sep}password={PW}",
        "libpq-and": f"{base}{sep}sslmode=disable&password={PW}",
    }[form]


def _agent(tmp_path: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "agent"]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)


def _assert_nothing_shows(tmp_path: Path, *results: subprocess.CompletedProcess) -> None:
    for result in results:
        assert PW not in result.stdout, result.args
        assert PW not in result.stderr, result.args
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "agent.conf" and path.suffix != ".sqlite":
            assert PW not in path.read_text(encoding="utf-8", errors="replace"), path


@pytest.mark.postgresql
@pytest.mark.parametrize("form", ["userinfo", "encoded-at", "query", "libpq-and"])
def test_password_in_the_url_is_never_printed_logged_or_stored(tmp_path, form,
                                                                postgresql_url):
    # The server trusts 127.0.0.1: the password is sent and ignored, and must stay hidden.
    url = _with_password(postgresql_url, form)
    log = tmp_path / "agent.log"
    host = f"secret-{form}-{uuid.uuid4().hex[:8]}"  # the server database outlives the test
    config = write_config(tmp_path, database_url=url, host=host, log_file=log, debug="true",
                          compute_driver="fake")
    report = tmp_path / "report.json"
    sync = _agent(tmp_path, "db", "sync", config=config)
    assert sync.returncode == 0, sync.stderr
    assert "***" in sync.stdout
    once = _agent(tmp_path, "--once", config=config)
    assert once.returncode == 0, once.stderr
    listed = _agent(tmp_path, "services", "list", config=config)
    assert listed.returncode == 0, listed.stderr
    assert host in listed.stdout
    fleet = _agent(tmp_path, "fleet", "--count", "2", "--duration", "1", "--ramp", "0.2",
                   "--host-prefix", f"{host}-", "--report", str(report), config=config)
    assert fleet.returncode == 0, fleet.stderr
    assert "***" in json.loads(report.read_text(encoding="utf-8"))["database"]
    assert "DEBUG sqlalchemy" in log.read_text(encoding="utf-8")
    _assert_nothing_shows(tmp_path, sync, once, listed, fleet)


@pytest.mark.parametrize("backend, form", [
    ("postgresql", "userinfo"), ("postgresql", "query"), ("mysql", "userinfo"),
    ("mysql", "query"),
])
def test_failed_connection_does_not_show_the_password(tmp_path, backend, form):
    url = make_url(_with_password(server_url(backend), form)).set(port=_closed_port())
    url = url.render_as_string(hide_password=False)
    log = tmp_path / "agent.log"
    config = write_config(tmp_path, database_url=url, log_file=log, debug="true")
    results = [_agent(tmp_path, *args, config=config)
               for args in (["db", "sync"], ["--once"], ["services", "list"])]
    for result in results:
        assert result.returncode == 1
        assert result.stderr.startswith("agent: error: database ")
        assert result.stderr.count("\n") == 1, result.stderr
    _assert_nothing_shows(tmp_path, *results)


@pytest.fixture
def mysql_user_with_password(_server_databases):
    """A MariaDB user of the test database whose password PW the server checks; its URL
    without the password."""
    from tests.conftest import _prepare_url

    root_url = make_url(_prepare_url("mysql", None, _server_databases))
    user = f"{root_url.database}_redact"[:80]
    engine = create_engine(root_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{PW}'"))
            conn.execute(text(f"ALTER USER '{user}'@'%' IDENTIFIED BY '{PW}'"))
            conn.execute(text(f"GRANT ALL ON `{root_url.database}`.* TO '{user}'@'%'"))
    finally:
        engine.dispose()
    return root_url.set(username=user, password=None).render_as_string(hide_password=False)


@pytest.mark.mysql
@pytest.mark.parametrize("form", ["userinfo", "encoded-at", "query", "passwd"])
def test_password_the_server_checks_connects_and_is_never_shown(tmp_path, form,
                                                                 mysql_user_with_password):
    url = mysql_user_with_password
    if form == "passwd":  # PyMySQL's own name for it
        url = f"{url}?passwd={PW}"
    elif form == "encoded-at":
        url = _with_password(url, "userinfo").replace(f":{PW}@", f":{PW}%40x@")
    else:
        url = _with_password(url, form)
    log = tmp_path / "agent.log"
    host = f"secret-my-{form}-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, database_url=url, host=host, log_file=log, debug="true",
                          compute_driver="fake")
    results = [_agent(tmp_path, *args, config=config)
               for args in (["db", "sync"], ["--once"], ["services", "list"])]
    if form == "encoded-at":  # the password is PW@x: the server refuses it, and says so
        assert [r.returncode for r in results] == [1, 1, 1]
        assert "Access denied" in results[0].stderr
    else:
        assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
        assert host in results[2].stdout
    _assert_nothing_shows(tmp_path, *results)


def test_wrong_password_on_a_live_server_does_not_show_it(tmp_path):
    # MariaDB checks passwords: root with a wrong one is refused ('Access denied').
    url = _with_password(server_url("mysql"), "userinfo")
    result = _agent(tmp_path, "services", "list", "--db", url)
    assert result.returncode == 1
    assert "Access denied" in result.stderr
    assert PW not in result.stderr and PW not in result.stdout


@pytest.mark.parametrize("where", ["--db", "config"])
def test_url_whose_password_cannot_be_told_apart_is_refused_without_showing_it(tmp_path,
                                                                               where):
    url = f"postgresql+psycopg://postgres:{PW}@x@127.0.0.1:{_closed_port()}/db"
    if where == "--db":
        result = _agent(tmp_path, "services", "list", "--db", url)
    else:
        config = write_config(tmp_path, database_url=url, log_file=tmp_path / "agent.log")
        result = _agent(tmp_path, "--once", config=config)
    assert result.returncode == 2
    assert "[database] connection (value not shown)" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "x@127" not in result.stderr
    _assert_nothing_shows(tmp_path, result)
