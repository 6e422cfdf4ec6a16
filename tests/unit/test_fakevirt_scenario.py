"""Scenario files: the documented example loads, defaults apply, and every malformed file is
refused with one line naming the file, the entry and the problem."""

from __future__ import annotations

import os
import textwrap

import pytest

from agent.errors import ScenarioError
from agent.virt.types import PowerState
from fakevirt.scenario import generate_scenario, load_scenario

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "etc",
                       "scenario.example.toml")
U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


def write(tmp_path, body: str) -> str:
    path = tmp_path / "scenario.toml"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_example_scenario_loads_with_its_documented_situation():
    scenario = load_scenario(EXAMPLE)
    assert scenario.host.hostname == "compute-1"
    states = {d.name: d.power_state for d in scenario.domains}
    assert {PowerState.RUNNING, PowerState.PAUSED, PowerState.SHUTDOWN,
            PowerState.CRASHED} <= set(states.values())
    evacuations = [m for m in scenario.migrations if m.migration_type == "evacuation"]
    assert evacuations and evacuations[0].source_compute == "compute-1"
    moved = {i.uuid: i.host for i in scenario.instances}[evacuations[0].instance_uuid]
    assert moved == evacuations[0].dest_compute
    web = next(i for i in scenario.instances if i.display_name == "web-1")
    assert len(web.network_info[0].rules) == 4  # the [[instances.network_info.rules]] form
    assert web.network_info[0].fixed_ips[1].version == 6


def test_minimal_scenario_gets_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, f"""
        [[domains]]
        uuid = "{U1.upper()}"
        [[instances]]
        uuid = "{U2}"
        vm_state = "stopped"
        host = "h1"
        [[migrations]]
        uuid = "{U1}"
        instance_uuid = "{U2}"
        migration_type = "evacuation"
        status = "done"
        source_compute = "h1"
    """))
    assert scenario.host.hostname is None and scenario.host.vcpus is None
    assert scenario.host.hypervisor_type == "fake" and scenario.host.hypervisor_version == 1000
    domain = scenario.domains[0]
    assert (domain.uuid, domain.name, domain.power_state) == (U1, "instance-00000001",
                                                              PowerState.RUNNING)
    record = scenario.instances[0]
    assert record.power_state == PowerState.SHUTDOWN  # what "stopped" implies
    assert (record.host, record.node, record.task_state) == ("h1", "h1", None)
    assert scenario.migrations[0].source_node == "h1"
    assert scenario.migrations[0].dest_node is None


def test_instance_host_defaults_to_the_scenario_host(tmp_path):
    scenario = load_scenario(write(tmp_path, f"""
        [host]
        hostname = "compute-9"
        [[instances]]
        uuid = "{U1}"
    """))
    assert (scenario.instances[0].host, scenario.instances[0].node) == ("compute-9",
                                                                         "compute-9")


DOMAIN = f'[[domains]]\nuuid = "{U1}"\n'
MALFORMED = {
    # id: (file body, text the one-line error must contain)
    "not-toml": ("[host\n", "not valid TOML"),
    "unknown-section": ("[hosts]\nvcpus = 2\n", "hosts: unknown section (did you mean 'host'?)"),
    "section-not-array": (f'[domains]\nuuid = "{U1}"\n', "write each entry under [[domains]]"),
    "host-unknown-key": ("[host]\nvcpu = 2\n", "[host]: unknown key 'vcpu' (did you mean"),
    "host-wrong-type": ('[host]\nvcpus = "many"\n', "[host]: vcpus: expected an integer"),
    "host-zero-memory": ("[host]\nmemory_mb = 0\n", "memory_mb: expected an integer from 1 to 2147483647, got 0"),
    "host-bool-as-int": ("[host]\nlocal_gb = true\n", "local_gb: expected an integer"),
    "domain-missing-uuid": ('[[domains]]\nname = "a"\n',
                            "domains[0]: missing required key 'uuid'"),
    "domain-bad-uuid": ('[[domains]]\nuuid = "not-a-uuid"\n',
                        "domains[0] (uuid not-a-uuid): uuid: 'not-a-uuid' is not a uuid"),
    "domain-bad-power-word": (DOMAIN + 'power_state = "runing"\n',
                              f"domains[0] (uuid {U1}): power_state: 'runing' is "
                              "not one of"),
    "domain-power-as-int": (DOMAIN + "power_state = 1\n", "power_state: 1 is not one of"),
    "domain-unknown-key": (DOMAIN + "vcpu = 2\n", "unknown key 'vcpu'"),
    "domain-duplicate-uuid": (DOMAIN + 'name = "a"\n' + DOMAIN + 'name = "b"\n',
                              f"domains[1] (uuid {U1}): duplicate uuid (also domains[0])"),
    "domain-duplicate-name": (DOMAIN + 'name = "a"\n[[domains]]\n'
                              f'uuid = "{U2}"\nname = "a"\n',
                              f"domains[1] (uuid {U2}): duplicate name 'a'"),
    "domain-empty-name": (DOMAIN + 'name = ""\n', "name: expected a non-empty string"),
    "instance-bad-vm-state": (f'[[instances]]\nuuid = "{U1}"\nvm_state = "actve"\n',
                              "vm_state: 'actve' is not one of"),
    "instance-duplicate-uuid": (f'[[instances]]\nuuid = "{U1}"\n' * 2,
                                "instances[1] (uuid " + U1 + "): duplicate uuid"),
    "vif-bad-mac": (f'[[instances]]\nuuid = "{U1}"\n'
                    'network_info = [{ id = "v", address = "fa:16:3e:00:00" }]\n',
                    "network_info [0].address: 'fa:16:3e:00:00' is not a MAC address"),
    "vif-missing-id": (f'[[instances]]\nuuid = "{U1}"\n'
                       'network_info = [{ address = "fa:16:3e:00:00:01" }]\n',
                       "network_info [0].id: None is not a VIF id"),
    "vif-bad-ip": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = [{{ id = "v", address = '
                   '"fa:16:3e:00:00:01", fixed_ips = [{ address = "10.0.0.300" }] }]\n',
                   "network_info [0].fixed_ips[0].address: '10.0.0.300' is not an IP address"),
    "vif-ip-version-mismatch": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = [{{ id = "v", '
                                'address = "fa:16:3e:00:00:01", fixed_ips = [{ address = '
                                '"fd00::1", version = 4 }] }]\n', "does not match address"),
    "rule-bad-protocol": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = [{{ id = "v", '
                          'address = "fa:16:3e:00:00:01", rules = [{ protocol = "tpc" }] }]\n',
                          "network_info [0].rules[0].protocol: 'tpc' is not one of"),
    "rule-ports-reversed": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = [{{ id = "v", '
                            'address = "fa:16:3e:00:00:01", rules = [{ protocol = "tcp", '
                            'port_min = 90, port_max = 80 }] }]\n', "port_min is above port_max"),
    "rule-cidr-family": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = [{{ id = "v", '
                         'address = "fa:16:3e:00:00:01", rules = [{ protocol = "icmp", '
                         'source_cidr = "fd00::/8" }] }]\n', "is IPv6 but the rule's ethertype is IPv4"),
    "vif-unknown-key": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = [{{ id = "v", '
                        'address = "fa:16:3e:00:00:01", mac = "x" }]\n',
                        "unknown key 'network_info[0].mac'"),
    "rule-unknown-key": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = [{{ id = "v", '
                         'address = "fa:16:3e:00:00:01", rules = [{ proto = "tcp" }] }]\n',
                         "unknown key 'network_info[0].rules[0].proto' (did you mean "
                         "'protocol'?)"),
    "network-info-not-array": (f'[[instances]]\nuuid = "{U1}"\nnetwork_info = "eth0"\n',
                               "network_info: expected an array of tables"),
    "migration-bad-type": (f'[[migrations]]\nuuid = "{U1}"\ninstance_uuid = "{U2}"\n'
                           'migration_type = "evacuate"\nstatus = "done"\n',
                           "migration_type: 'evacuate' is not one of"),
    "migration-missing-status": (f'[[migrations]]\nuuid = "{U1}"\ninstance_uuid = "{U2}"\n'
                                 'migration_type = "evacuation"\n',
                                 "missing required key 'status'"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_scenario_is_refused_with_one_line(tmp_path, case):
    body, expected = MALFORMED[case]
    path = write(tmp_path, body)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(path + ": ")
    assert expected in message
    assert "\n" not in message


def test_missing_scenario_file_is_named(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match=f"^{path}: scenario file not found$"):
        load_scenario(path)


def test_scenario_error_is_a_config_error_with_its_exit_status(tmp_path):
    from agent.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_scenario(write(tmp_path, "[nope]\n"))
    assert caught.value.exit_code == 2


def test_generated_scenario_is_deterministic_and_mixed():
    first, again = generate_scenario(100, hostname="h1"), generate_scenario(100, hostname="h1")
    assert first == again
    states = [d.power_state for d in first.domains]
    assert states.count(PowerState.RUNNING) == 70
    assert states.count(PowerState.PAUSED) == 10
    assert states.count(PowerState.SHUTDOWN) == 20
    assert len({d.uuid for d in first.domains}) == 100
    assert len({d.name for d in first.domains}) == 100
    vm_states = {i.uuid: i.vm_state for i in first.instances}
    for domain in first.domains:
        expected = {PowerState.RUNNING: "active", PowerState.PAUSED: "paused",
                    PowerState.SHUTDOWN: "stopped"}[domain.power_state]
        assert vm_states[domain.uuid] == expected
    other = generate_scenario(100, hostname="h2")
    assert not {d.uuid for d in first.domains} & {d.uuid for d in other.domains}


def test_generated_scenario_capacity_fits_its_guests():
    scenario = generate_scenario(1000, hostname="big", n_instances=10, memory_mb=2048)
    assert len(scenario.instances) == 10
    assert scenario.host.memory_mb >= sum(d.memory_mb for d in scenario.domains)
    assert scenario.host.local_gb >= sum(d.disk_gb for d in scenario.domains)
    ips = {i.network_info[0].fixed_ips[0].address for i in scenario.instances}
    assert len(ips) == 10


def test_toml_examples_in_the_format_reference_load(tmp_path):
    doc = os.path.join(os.path.dirname(EXAMPLE), os.pardir, "docs", "scenario-format.md")
    with open(doc, encoding="utf-8") as fh:
        blocks = fh.read().split("```toml\n")[1:]
    assert blocks, "the format reference shows TOML examples"
    for number, block in enumerate(blocks):
        path = tmp_path / f"block{number}.toml"
        path.write_text(block.split("```")[0])
        scenario = load_scenario(str(path))
        assert scenario.instances and all(i.network_info for i in scenario.instances)
