"""Configuration: every kind of bad input stops the agent with one line naming the file, line,
section, key and value and what was expected (exit status 2); good input resolves to typed
values with nova's defaults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.cli import build_parser, main, overrides_from_args
from agent.config import load_config
from agent.errors import ConfigError


def write(tmp_path, text: str) -> str:
    path = tmp_path / "agent.conf"
    path.write_text(text)
    return str(path)


def test_defaults_follow_nova(tmp_path):
    conf = load_config(write(tmp_path, ""))
    assert conf.report_interval == 10
    assert conf.service_down_time == 60
    assert conf.enable_new_services is True
    assert conf.update_resources_interval == 0
    assert conf.sync_power_state_interval == 600
    assert conf.periodic_fuzzy_delay == 60
    assert conf.reserved_host_memory_mb == 512
    assert (conf.reserved_host_disk_mb, conf.reserved_host_cpus) == (0, 0)
    assert conf.cpu_allocation_ratio is None
    assert (conf.initial_cpu_allocation_ratio, conf.initial_ram_allocation_ratio,
            conf.initial_disk_allocation_ratio) == (4.0, 1.0, 1.0)
    assert conf.resume_guests_state_on_host_boot is False
    assert conf.libvirt.virt_type == "kvm"
    assert conf.libvirt.connection_uri == "qemu:///system"
    assert conf.workarounds.handle_virt_lifecycle_events is True


def test_values_are_typed(tmp_path):
    conf = load_config(write(tmp_path, """
[DEFAULT]
report_interval = 5
enable_new_services = no
cpu_allocation_ratio = 2.5
state_path = ~/agent-state
[libvirt]
virt_type = lxc
uid_maps = 0:1000:65536, 65536:200000:1000
"""))
    assert conf.report_interval == 5
    assert conf.enable_new_services is False
    assert conf.cpu_allocation_ratio == 2.5
    assert conf.state_path == os.path.expanduser("~/agent-state")
    assert conf.libvirt.uid_maps == ["0:1000:65536", "65536:200000:1000"]
    assert conf.libvirt.connection_uri == "lxc:///"


def test_derived_defaults_follow_overrides(tmp_path):
    conf = load_config(write(tmp_path, ""), {("DEFAULT", "state_path"): str(tmp_path / "s")})
    assert conf.database.connection == f"sqlite:///{tmp_path}/s/agent.sqlite"
    assert conf.instances_path == f"{tmp_path}/s/instances"


def test_command_line_overrides_win_over_file(tmp_path):
    path = write(tmp_path, "[DEFAULT]\nhost = from-file\n")
    assert load_config(path, {("DEFAULT", "host"): "from-cli"}).host == "from-cli"


def test_service_down_time_raised_with_warning(tmp_path):
    conf = load_config(write(tmp_path, "[DEFAULT]\nreport_interval = 30\nservice_down_time = 30\n"))
    assert conf.service_down_time == 75
    assert len(conf.warnings) == 1 and "75 s" in conf.warnings[0]


@pytest.mark.parametrize("text, expected", [
    pytest.param("[DEFAULT]\nreport_interval = ten\n",
                 ["agent.conf:2", "[DEFAULT] report_interval = 'ten'", "expected an integer"],
                 id="wrong-type-int"),
    pytest.param("[DEFAULT]\nenable_new_services = maybe\n",
                 ["agent.conf:2", "enable_new_services = 'maybe'", "expected true or false"],
                 id="wrong-type-bool"),
    pytest.param("[DEFAULT]\nreport_interval = 0\n",
                 ["report_interval = '0'", "from 1 to 3600 seconds"], id="out-of-range"),
    pytest.param("[DEFAULT]\nreserved_host_memory_mb = -1\n",
                 ["reserved_host_memory_mb = '-1'", "from 0 to 2147483647 MiB"],
                 id="below-minimum"),
    pytest.param("[DEFAULT]\ncompute_driver = libvrit\n",
                 ["compute_driver = 'libvrit'", "one of fake, libvirt", "did you mean 'libvirt'"],
                 id="bad-choice"),
    pytest.param("[DEFAULT]\nreport_intervall = 5\n",
                 ["agent.conf:2", "unknown key 'report_intervall' in [DEFAULT]",
                  "did you mean 'report_interval'"], id="unknown-key"),
    pytest.param("[databse]\nconnection = sqlite://\n",
                 ["agent.conf:1", "unknown section [databse]", "did you mean 'database'"],
                 id="unknown-section"),
    pytest.param("report_interval = 5\n",
                 ["agent.conf:1", "before any [section]"], id="key-outside-section"),
    pytest.param("[DEFAULT]\nthis is not ini\n",
                 ["agent.conf:2", "expected 'key = value'"], id="unparseable-line"),
    pytest.param("[DEFAULT]\nhost = a\nhost = b\n",
                 ["agent.conf:3", "host is set twice", "agent.conf:2"], id="duplicate-key"),
])
def test_bad_input_names_file_line_key_and_value(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.conf: config file not found"):
        load_config(str(tmp_path / "nope.conf"))


def test_unreadable_file_is_named(tmp_path):
    # A directory cannot be read as a file, even by root.
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: cannot read config file"):
        load_config(str(tmp_path))


def test_undecodable_file_is_named(tmp_path):
    path = tmp_path / "agent.conf"
    path.write_bytes(b"[DEFAULT]\nhost = \xff\xfe\n")
    with pytest.raises(ConfigError, match="agent.conf: cannot read config file"):
        load_config(str(path))


def test_bad_command_line_value_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"^--state-path: \[DEFAULT\] state_path = '': expected a path$"):
        load_config(write(tmp_path, ""), overrides_from_args(
            build_parser().parse_args(["--state-path", ""])))


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://agent:s3cr@et@db/nova",
    "postgresql+psycopg://agent:s3cr/et@db/nova",
    "mysql+pymysql://agent:s3c ret@db/nova",
    "postgresql+psycopg://db/nova?password=s3cr@et",
], ids=["at", "slash", "blank", "at-in-query"])
def test_connection_that_cannot_be_masked_is_refused_without_showing_it(tmp_path, url, capsys):
    path = write(tmp_path, f"[database]\nconnection = {url}\n")
    assert main(["--config", path, "config", "sample"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"agent: error: {path}:2: [database] connection (value not shown): "
                          "not a URL whose password can be kept out of logs: ")
    assert err.count("\n") == 1
    assert "s3c" not in err and "et@db" not in err


def test_secrets_lists_every_password_of_the_connection(tmp_path):
    conf = load_config(write(tmp_path, "[database]\nconnection = postgresql+psycopg://u:"
                                       "p%40ss@db/nova?sslpassword=k3y\n"))
    assert set(conf.secrets()) == {"p%40ss", "p@ss", "k3y"}


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, "[DEFAULT]\nreport_interval = often\n")
    assert main(["--config", path, "config", "sample"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("agent: error: ") and "report_interval = 'often'" in err


def test_cli_process_exit_status_is_2(tmp_path):
    path = write(tmp_path, "[nope]\n")
    proc = subprocess.run([sys.executable, "-m", "agent", "--config", path, "config", "sample"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown section [nope]" in proc.stderr
    assert proc.stdout == ""
