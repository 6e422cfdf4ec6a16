"""Every kind of bad input, through the real command line (a child process): exit status 2,
nothing on stdout, and one line on stderr naming where the value was written (file and line,
flag, scenario entry), the key, the value and what was expected. Values that would reach the
database are tried on every backend and get the same answer before anything is written; the
largest good values are stored on every backend."""

from __future__ import annotations

import os
import sqlite3

import pytest
from sqlalchemy import select

from agent.db.engine import make_database
from agent.db.models import ComputeNode, Instance, Service
from tests.agent_process import agent_command

UUID = "11111111-1111-4111-8111-111111111111"
HOSTNAME_RULE = "expected a host name: 1 to 255 letters, digits"
LONG = "h" * 256


def refused(result, *parts: str) -> str:
    """Assert the user-visible shape of a refusal; returns the stderr line."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for part in parts:
        assert part in result.stderr, (part, result.stderr)
    return result.stderr


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def scenario(tmp_path, instance_lines: str):
    return write(tmp_path, "scenario.toml",
                 f'[[instances]]\nuuid = "{UUID}"\n{instance_lines}\n')


# -- host names: the same rule for --host, the config's host and scenario hosts -----------------
BAD_HOSTS = {"empty": "", "space": "a b", "newline": "a\nb", "tab": "a\tb", "escape": "a\x1bb",
             "too-long": LONG, "leading-dash": "-x", "slash": "a/b", "unicode": "hôte"}


@pytest.mark.parametrize("value", BAD_HOSTS.values(), ids=BAD_HOSTS.keys())
def test_bad_host_flag_is_refused_on_every_backend(any_db_url, value):
    result = agent_command("services", "list", f"--host={value}", "--db", any_db_url)
    refused(result, "--host: [DEFAULT] host = ", "expected")


@pytest.mark.parametrize("value", [v for v in BAD_HOSTS.values() if "\n" not in v],
                         ids=[k for k, v in BAD_HOSTS.items() if "\n" not in v])
def test_bad_host_in_config_file_is_refused(tmp_path, value):
    conf = write(tmp_path, "agent.conf", f"[DEFAULT]\n\nhost = {value}\n")
    refused(agent_command("--config", str(conf), "config", "sample"),
            f"{conf}:3: [DEFAULT] host = ", "expected")


@pytest.mark.parametrize("key", ["host", "node"])
@pytest.mark.parametrize("value", ["", "a b", LONG, "a\\nb"], ids=["empty", "space", "too-long",
                                                                    "newline"])
def test_bad_scenario_host_is_refused_on_every_backend(tmp_path, any_db_url, key, value):
    path = scenario(tmp_path, f'{key} = "{value}"')
    refused(agent_command("db", "seed", str(path), "--host", "h1", "--db", any_db_url),
            f"{path}: instances[0] (uuid {UUID}): {key}: ", HOSTNAME_RULE)
    assert seeded(any_db_url) == []


def test_longest_host_name_works_on_every_backend(tmp_path, any_db_url):
    host = "h" * 255
    listing = agent_command("services", "list", "--host", host, "--db", any_db_url,
                            "--format", "json")
    assert listing.returncode == 0, listing.stderr
    path = scenario(tmp_path, f'host = "{host}"\nvcpus = 2147483647\nmemory_mb = 2147483647\n'
                              f'display_name = "{"ü" * 255}"')
    seed = agent_command("db", "seed", str(path), "--db", any_db_url)
    assert seed.returncode == 0, seed.stderr
    assert seeded(any_db_url) == [(host, host, 2147483647, 2147483647, "ü" * 255)]


def test_largest_allocation_ratios_are_stored_on_every_backend(tmp_path, any_db_url):
    conf = write(tmp_path, "agent.conf", "[DEFAULT]\ncpu_allocation_ratio = 3.40282e38\n"
                                         "initial_ram_allocation_ratio = 3.40282e38\n")
    result = agent_command("--config", str(conf), "--host", "h1", "--db", any_db_url,
                           "--state-path", str(tmp_path / "state"), "--once",
                           "--format", "json")
    assert result.returncode == 0, result.stderr
    db = make_database(any_db_url)
    try:
        with db.engine.connect() as conn:
            ratios = conn.execute(select(ComputeNode.cpu_allocation_ratio,
                                         ComputeNode.ram_allocation_ratio)).one()
    finally:
        db.dispose()
    assert ratios == pytest.approx((3.40282e38, 3.40282e38), rel=1e-6)


def seeded(url: str) -> list[tuple]:
    db = make_database(url)
    try:
        with db.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(
                Instance.host, Instance.node, Instance.vcpus, Instance.memory_mb,
                Instance.display_name))]
    finally:
        db.dispose()


# -- integers within the columns they land in; strings without control characters ------------
BAD_SCENARIO_VALUES = {
    "int64-vcpus": ("vcpus = 9223372036854775807", "vcpus: expected an integer from 0 to "
                                                    "2147483647, got 9223372036854775807"),
    "int32-overflow": ("memory_mb = 2147483648", "memory_mb: expected an integer from 0 to "
                                                  "2147483647"),
    "negative": ("root_gb = -1", "root_gb: expected an integer from 0"),
    "string-int": ('swap = "1"', "swap: expected an integer"),
    "bool-int": ("ephemeral_gb = true", "ephemeral_gb: expected an integer"),
    "float-int": ("vcpus = 1.5", "vcpus: expected an integer"),
    "nul-name": ('display_name = "a\\u0000b"', "display_name: expected a non-empty string "
                                               "without control characters"),
    "newline-name": ('display_name = "a\\nb"', "display_name: expected a non-empty string "
                                              "without control characters, at most 255 "
                                              "characters, got 'a\\nb'"),
    "long-project": (f'project_id = "{"p" * 256}"', "project_id: expected a non-empty string "
                                                     "without control characters, at most 255"),
    "escape-os-type": ('os_type = "\\u001b[31m"', "os_type: expected"),
    "blank-task-state": ('task_state = " "', "task_state: expected a non-empty string"),
}


@pytest.mark.parametrize("line, expected", BAD_SCENARIO_VALUES.values(),
                         ids=BAD_SCENARIO_VALUES.keys())
def test_bad_scenario_value_is_refused_on_every_backend(tmp_path, any_db_url, line, expected):
    path = scenario(tmp_path, line)
    refused(agent_command("db", "seed", str(path), "--host", "h1", "--db", any_db_url),
            f"{path}: instances[0] (uuid {UUID}): {expected}")
    assert seeded(any_db_url) == []


def test_node_usage_beyond_its_columns_is_refused_on_every_backend(tmp_path, any_db_url):
    second = UUID.replace("1", "2", 1)
    path = write(tmp_path, "scenario.toml",
                 f'[[instances]]\nuuid = "{UUID}"\nhost = "h1"\nmemory_mb = 2147483000\n'
                 f'[[instances]]\nuuid = "{second}"\nhost = "h1"\nmemory_mb = 1000\n')
    refused(agent_command("db", "seed", str(path), "--db", any_db_url),
            f"{path}: instances[1] (uuid {second}): the instances of node h1 use 2147484000 "
            "memory_mb in all, more than a compute node records (at most 2147483647)")
    assert seeded(any_db_url) == []


@pytest.mark.parametrize("body, expected", [
    pytest.param("[host]\nvcpus = 2147483648\n", "[host]: vcpus: expected an integer from 1 to "
                 "2147483647", id="host-vcpus"),
    pytest.param("[host]\nhypervisor_version = 9223372036854775808\n",
                 "[host]: hypervisor_version: expected an integer from 0 to "
                 "9223372036854775807", id="hypervisor-version"),
    pytest.param("[host]\ncpu_features = [\"sse\", \"a\\tb\"]\n",
                 "[host]: cpu_features: expected a non-empty string without control",
                 id="feature-with-tab"),
    pytest.param("[host]\nhostname = \"a_b c\"\n", f"[host]: hostname: {HOSTNAME_RULE}",
                 id="hostname"),
    pytest.param(f'[[migrations]]\nuuid = "{UUID}"\ninstance_uuid = "{UUID}"\n'
                 'migration_type = "evacuation"\nstatus = "done"\nsource_compute = "a b"\n',
                 f"migrations[0] (uuid {UUID}): source_compute: {HOSTNAME_RULE}",
                 id="migration-host"),
])
def test_bad_scenario_host_section_is_refused(tmp_path, body, expected):
    path = write(tmp_path, "scenario.toml", body)
    refused(agent_command("db", "seed", str(path), "--host", "h1", "--state-path",
                          str(tmp_path / "state")), f"{path}: {expected}")
    assert not (tmp_path / "state").exists()


# -- configuration values: numbers, id maps, addresses, files ---------------------------------
BAD_OPTIONS = {
    "ratio-nan": ("cpu_allocation_ratio = nan",
                  "expected a finite number from 0 to 3.40282e+38"),
    "ratio-inf": ("ram_allocation_ratio = inf", "expected a finite number"),
    "ratio-1e400": ("disk_allocation_ratio = 1e400", "expected a finite number"),
    "ratio-negative": ("initial_cpu_allocation_ratio = -1",
                       "expected a value from 0 to 3.40282e+38"),
    "ratio-past-float-column": ("cpu_allocation_ratio = 1e39",
                                "expected a value from 0 to 3.40282e+38"),
    "initial-ratio-past-float-column": ("initial_ram_allocation_ratio = 3.5e38",
                                        "expected a value from 0 to 3.40282e+38"),
    "ratio-word": ("cpu_allocation_ratio = lots", "expected a number"),
    "int-too-big": ("reserved_host_memory_mb = 2147483648",
                    "expected a value from 0 to 2147483647 MiB"),
    "int-float": ("report_interval = 1.5", "expected an integer"),
    "int-huge": ("reserved_host_cpus = 99999999999999999999", "from 0 to 2147483647"),
    "my-ip": ("my_ip = 10.0.0.256", "expected an IPv4 or IPv6 address"),
    "my-ip-empty": ("my_ip =", "expected an IPv4 or IPv6 address"),
    "log-dir-missing": ("log_file = /nonexistent/dir/agent.log",
                        "expected a file in an existing directory (/nonexistent/dir does not "
                        "exist)"),
    "log-is-dir": ("log_file = /tmp", "expected a writable regular file"),
    "state-is-file": ("state_path = /proc/version", "expected a directory (/proc/version is "
                                                    "not one)"),
    "state-under-file": ("state_path = /proc/version/state", "expected a directory that can be "
                                                             "created (/proc/version is not a "
                                                             "writable directory)"),
    "escape": ("iptables_chain_prefix = a\x1bb", "without control characters"),
    "chain-prefix-long": ("iptables_chain_prefix = abcdefghijklmno",
                          "expected a letter followed by at most 13 letters, digits or "
                          "underscores"),
    "chain-prefix-dash": ("iptables_chain_prefix = c-agent", "expected a letter followed by"),
    "nul": ("host = a\x00b", "without control characters"),
}


@pytest.mark.parametrize("line, expected", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_option_is_refused(tmp_path, line, expected):
    conf = write(tmp_path, "agent.conf", f"# comment\n[DEFAULT]\n{line}\n")
    key = line.split("=")[0].strip()
    refused(agent_command("--config", str(conf), "config", "sample"),
            f"{conf}:3: [DEFAULT] {key} = ", expected)


@pytest.mark.parametrize("value, expected", [
    pytest.param("nonsense", "expected ADDR:PORT", id="no-port"),
    pytest.param("127.0.0.1:99999", "not an integer from 1 to 65535", id="port-range"),
])
def test_bad_api_bind_names_file_and_line(tmp_path, value, expected):
    conf = write(tmp_path, "agent.conf", f"[api]\n\nbind = {value}\n")
    refused(agent_command("--config", str(conf), "api", "--db",
                          f"sqlite:///{tmp_path}/agent.sqlite"),
            f"{conf}:3: [api] bind = '{value}': ", expected)
    assert sorted(os.listdir(tmp_path)) == ["agent.conf"]


@pytest.mark.parametrize("value", ["banana", "0:1000", "0:1000:0", "a:b:c", "0:1000:65536:1",
                                   "0:4294967296:1", ",".join(["0:1:1"] * 6)])
def test_bad_id_maps_are_refused(tmp_path, value):
    conf = write(tmp_path, "agent.conf", f"[libvirt]\nvirt_type = lxc\ngid_maps = {value}\n")
    refused(agent_command("--config", str(conf), "config", "sample"),
            f"{conf}:3: [libvirt] gid_maps = ", "expected at most 5 comma-separated "
            "'guest:host:count' ranges")


def test_good_id_maps_are_accepted(tmp_path):
    conf = write(tmp_path, "agent.conf", "[libvirt]\nuid_maps = 0:100000:65536, 65536:200000:1\n")
    result = agent_command("--config", str(conf), "config", "sample")
    assert result.returncode == 0, result.stderr


def test_byte_order_mark_is_accepted_in_config_and_scenario(tmp_path):
    conf = write(tmp_path, "agent.conf", b"\xef\xbb\xbf[DEFAULT]\nhost = bom-host\n")
    path = write(tmp_path, "scenario.toml",
                 f'\ufeff[[instances]]\nuuid = "{UUID}"\n'.encode("utf-8"))
    state = tmp_path / "state"
    result = agent_command("--config", str(conf), "--state-path", str(state), "db", "seed",
                           str(path))
    assert result.returncode == 0, result.stderr
    assert seeded(f"sqlite:///{state}/agent.sqlite")[0][0] == "bom-host"


def test_unwritable_log_file_directory_is_refused_before_start(tmp_path):
    conf = write(tmp_path, "agent.conf",
                 f"[DEFAULT]\nstate_path = {tmp_path}/state\n"
                 f"log_file = {tmp_path}/missing/agent.log\n")
    refused(agent_command("--config", str(conf), "--once"),
            f"{conf}:3: [DEFAULT] log_file = ", f"{tmp_path}/missing does not exist")
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("command", [["--once"], ["db", "seed", "SCENARIO"]],
                         ids=["once", "db-seed"])
def test_log_file_that_cannot_be_opened_names_file_and_line(tmp_path, command):
    target = write(tmp_path, "target.log", "")
    (tmp_path / "agent.log").symlink_to(target)
    write(tmp_path, "scenario.toml", "")
    conf = write(tmp_path, "agent.conf",
                 f"[DEFAULT]\nstate_path = {tmp_path}/state\n\n"
                 f"log_file = {tmp_path}/agent.log\n")
    command = [str(tmp_path / "scenario.toml") if a == "SCENARIO" else a for a in command]
    refused(agent_command("--config", str(conf), *command),
            f"{conf}:4: [DEFAULT] log_file = ", "a symbolic link, not followed")
    assert target.read_text() == ""


# -- database URLs ------------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    pytest.param("nope://x", "connection = 'nope://x': unsupported backend 'nope'",
                 id="backend"),
    pytest.param(":::", "connection (value not shown): not a URL whose password can be kept "
                 "out of logs", id="not-a-url"),
    pytest.param("postgresql+nodriver://u:secret@h/db", "database driver missing",
                 id="driver"),
])
def test_bad_database_url_names_file_and_line(tmp_path, url, expected):
    conf = write(tmp_path, "agent.conf", f"[DEFAULT]\nhost = h1\n[database]\nconnection = {url}\n")
    line = refused(agent_command("--config", str(conf), "services", "list"),
                   f"{conf}:4: [database] connection", expected)
    assert "secret" not in line


@pytest.mark.parametrize("command", [["services", "list"], ["db", "sync"],
                                     ["fleet", "--count", "1", "--duration", "1"]],
                         ids=["services", "db-sync", "fleet"])
def test_bad_database_url_flag_is_named_by_every_command(command):
    refused(agent_command(*command, "--db", "nope://x"),
            "--db: [database] connection = 'nope://x': unsupported backend 'nope'")


def test_read_only_command_creates_no_database(tmp_path):
    missing = tmp_path / "typo" / "agent.sqlite"
    refused(agent_command("services", "list", "--db", f"sqlite:///{missing}"),
            f"--db: [database] connection = 'sqlite:///{missing}'",
            f"the database file {missing} does not exist")
    refused(agent_command("services", "list", "--state-path", str(tmp_path / "state")),
            "--state-path: [database] connection", "does not exist")
    refused(agent_command("services", "disable", "--host", "h1", "--db",
                          f"sqlite:///{missing}"), "does not exist")
    refused(agent_command("evacuate", "--host", "h1", "--to", "h2", "--db",
                          f"sqlite:///{missing}"), "does not exist")
    assert os.listdir(tmp_path) == []


def test_db_sync_hint_only_when_the_schema_is_missing(tmp_path):
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    missing = agent_command("services", "list", "--db", f"sqlite:///{empty}")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "has no schema (empty database)" in missing.stderr
    assert "run 'agent db sync'" in missing.stderr

    garbage = write(tmp_path, "garbage.sqlite", b"this is not a database" * 100)
    broken = agent_command("services", "list", "--db", f"sqlite:///{garbage}")
    assert broken.returncode == 1 and broken.stderr.count("\n") == 1
    assert "file is not a database" in broken.stderr
    assert "db sync" not in broken.stderr


# -- command-line values and usage ------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    pytest.param(["--format", "json"], "agent: error: --format applies only to --once",
                 id="format-without-once"),
    pytest.param(["--format", "json", "services", "list"], "put --format after 'list'",
                 id="format-before-services"),
    pytest.param(["services", "enable"], "services enable: --host is required",
                 id="services-host-missing"),
    pytest.param(["evacuate", "--to", "h2"], "evacuate: --host is required",
                 id="evacuate-host-missing"),
    pytest.param(["evacuate", "--host", "h1", "--to", "h1"],
                 "evacuate: --to h1: cannot evacuate host h1 to itself; expected another host "
                 "than --host", id="evacuate-to-itself"),
    pytest.param(["evacuate", "--host", "h1", "--to", "a b"],
                 f"argument --to: 'a b': {HOSTNAME_RULE}", id="evacuate-bad-destination"),
    pytest.param(["services", "disable", "--host", "h1", "--reason", "a\nb"],
                 "argument --reason: 'a\\nb': expected a non-empty string without control",
                 id="reason-newline"),
    pytest.param(["services", "disable", "--host", "h1", "--reason", "r" * 256],
                 "(256 characters): expected a non-empty string without control characters, "
                 "at most 255 characters", id="reason-too-long"),
    pytest.param(["services", "disable", "--host", "h1", "--reason", "AUTO: mine"],
                 "argument --reason: 'AUTO: mine': expected a reason not starting with 'AUTO:'",
                 id="reason-reserved"),
    pytest.param(["services", "frobnicate"], "agent services: error: argument ACTION: invalid "
                 "choice: 'frobnicate'", id="unknown-action"),
    pytest.param(["fleet", "--count", "x"], "argument --count: 'x': expected an integer from 1",
                 id="fleet-count-word"),
    pytest.param(["fleet", "--count", "0"], "argument --count: '0': expected an integer from 1",
                 id="fleet-count-zero"),
    pytest.param(["fleet", "--count", "2", "--duration", "nan"],
                 "argument --duration: 'nan': expected a finite number", id="fleet-nan"),
    pytest.param(["fleet", "--count", "2", "--ramp", "-1"],
                 "argument --ramp: '-1': expected a finite number of at least 0",
                 id="fleet-negative"),
    pytest.param(["fleet", "--count", "2", "--progress-interval", "0"],
                 "argument --progress-interval: '0': expected a finite number above 0",
                 id="fleet-zero-interval"),
    pytest.param(["fleet", "--count", "2", "--report", "/nonexistent/dir/r.json"],
                 "argument --report: '/nonexistent/dir/r.json': expected a file in an existing "
                 "directory", id="fleet-report-dir"),
    pytest.param(["fleet", "--count", "2", "--host-prefix", "a b"],
                 f"argument --host-prefix: 'a b': {HOSTNAME_RULE}", id="fleet-prefix"),
    pytest.param(["fleet", "--count", "100000", "--host-prefix", "p" * 250],
                 f"with --count 100000 makes host names like {'p' * 60!r}... (256 characters): "
                 f"{HOSTNAME_RULE}", id="fleet-prefix-too-long"),
    pytest.param(["fleet"], "the following arguments are required: --count",
                 id="fleet-count-missing"),
])
def test_usage_error_exits_2_with_one_line(tmp_path, args, expected):
    refused(agent_command(*args, "--db", f"sqlite:///{tmp_path}/agent.sqlite"), expected)
    assert os.listdir(tmp_path) == []


def test_services_disable_reason_is_checked_before_the_database(any_db_url):
    result = agent_command("services", "disable", "--host", "h1", "--reason", "x\x1by",
                           "--db", any_db_url)
    refused(result, "argument --reason: 'x\\x1by'")
    db = make_database(any_db_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(select(Service.id)).all() == []
    finally:
        db.dispose()
