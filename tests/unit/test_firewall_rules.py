"""Rule generation of the firewall drivers and driver selection."""

from __future__ import annotations

import json
import logging

import pytest

from agent.config import RawValue, resolve
from agent.errors import ConfigError
from agent.network.firewall import (IptablesFirewall, NoopFirewall, load_firewall, rule_spec,
                                    vif_rules)
from agent.network.iptables import IptablesManager
from agent.network.network_info import NetworkInfoError, parse_network_info
from agent.virt.types import VIF, FixedIP, SecurityGroupRule
from tests.unit.test_iptables_model import FakeTables, lines

A = "0b5a3c4e-8f2d-4a61-9c3e-2d7f1e6a9b10"
B = "1c6b4d5f-9a3e-4b72-8d4f-3e8a2f7b0c21"

RULES = {
    "tcp-single-port": (SecurityGroupRule("tcp", 22, 22), "-p tcp -m tcp --dport 22 -j ACCEPT"),
    "udp-range-from-cidr": (SecurityGroupRule("udp", 5000, 5100, "10.1.0.0/16"),
                            "-s 10.1.0.0/16 -p udp -m udp --dport 5000:5100 -j ACCEPT"),
    "tcp-all-ports": (SecurityGroupRule("tcp", 0, 65535), "-p tcp -m tcp -j ACCEPT"),
    "tcp-any-port": (SecurityGroupRule("tcp"), "-p tcp -m tcp -j ACCEPT"),
    "icmp-any": (SecurityGroupRule("icmp"), "-p icmp -j ACCEPT"),
    "icmp-echo": (SecurityGroupRule("icmp", 8, None), "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    "icmp-type-code": (SecurityGroupRule("icmp", 3, 4),
                       "-p icmp -m icmp --icmp-type 3/4 -j ACCEPT"),
    "icmpv6-echo": (SecurityGroupRule("icmp", 128, None, ethertype=6),
                    "-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT"),
    "all-from-v6-cidr": (SecurityGroupRule(None, source_cidr="2001:db8::/32", ethertype=6),
                         "-s 2001:db8::/32 -j ACCEPT"),
}


@pytest.mark.parametrize("rule,spec", RULES.values(), ids=RULES.keys())
def test_rule_spec(rule, spec):
    assert rule_spec(rule) == spec


def test_vif_chain_accepts_return_traffic_then_rules_of_its_family_then_drops():
    vif = VIF("p", "fa:16:3e:00:00:01", rules=(SecurityGroupRule("tcp", 22, 22),
                                                SecurityGroupRule("icmp", ethertype=6)))
    assert vif_rules(vif, 4) == [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack --ctstate INVALID -j DROP",
        "-p tcp -m tcp --dport 22 -j ACCEPT",
        "-j DROP"]
    assert vif_rules(vif, 6)[2:] == ["-p ipv6-icmp -j ACCEPT", "-j DROP"]


def network_info(*ips: str, rules=()) -> tuple[VIF, ...]:
    return parse_network_info(A, [{"id": "port-1", "address": "fa:16:3e:00:00:01",
                                   "fixed_ips": [{"address": ip} for ip in ips],
                                   "rules": list(rules)}])


@pytest.fixture
def tables():
    return FakeTables()


@pytest.fixture
def firewall(tables):
    return IptablesFirewall(IptablesManager("cagent", tables))


def our_lines(tables, family):
    return [line for line in lines(tables.text[family]) if "cagent" in line]


def test_prepare_instance_jumps_by_destination_ip_per_family(firewall, tables):
    chain = firewall.manager.hashed_chain_name(f"{A}/port-1")
    firewall.prepare_instance(A, "vm-a", network_info(
        "10.0.0.5", "10.0.1.5", "2001:db8::5", rules=[{"protocol": "tcp", "port_min": 22}]))
    v4, v6 = our_lines(tables, 4), our_lines(tables, 6)
    assert "-A FORWARD -j cagent-fwd" in v4 and "-A FORWARD -j cagent-fwd" in v6
    assert [line for line in v4 if line.startswith("-A cagent-fwd")] == [
        f"-A cagent-fwd -d 10.0.0.5/32 -m comment --comment {A} -j {chain}",
        f"-A cagent-fwd -d 10.0.1.5/32 -m comment --comment {A} -j {chain}"]
    assert [line for line in v6 if line.startswith("-A cagent-fwd")] == [
        f"-A cagent-fwd -d 2001:db8::5/128 -m comment --comment {A} -j {chain}"]
    assert f"-A {chain} -p tcp -m tcp --dport 22 -j ACCEPT" in v4
    assert f"-A {chain} -p tcp -m tcp --dport 22 -j ACCEPT" not in v6
    assert [line for line in v4 if line.startswith(f"-A {chain}")][-1] == f"-A {chain} -j DROP"


def test_instance_without_ips_of_a_family_has_no_chain_there(firewall, tables):
    firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5"))
    assert [line for line in our_lines(tables, 6) if line.startswith("-A")] == [
        "-A FORWARD -j cagent-fwd"]


def test_remove_and_retain_only_drop_gone_instances(firewall, tables):
    with firewall.defer_apply():
        firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5"))
        firewall.prepare_instance(B, "vm-b", parse_network_info(B, [
            {"id": "port-2", "address": "fa:16:3e:00:00:02",
             "fixed_ips": [{"address": "10.0.0.6"}]}]))
    chain_b = firewall.manager.hashed_chain_name(f"{B}/port-2")
    firewall.retain_only([A.upper()])
    assert not [line for line in our_lines(tables, 4) if chain_b in line or "10.0.0.6" in line]
    assert [line for line in our_lines(tables, 4) if "10.0.0.5" in line]
    firewall.remove_instance(A)
    assert [line for line in our_lines(tables, 4) if line.startswith("-A")] == [
        "-A FORWARD -j cagent-fwd"]


def test_reprepare_replaces_the_instance_rules(firewall, tables):
    firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5"))
    firewall.prepare_instance(A, "vm-a", network_info("10.0.0.9"))
    text = "\n".join(our_lines(tables, 4))
    assert "10.0.0.9/32" in text and "10.0.0.5/32" not in text


@pytest.mark.parametrize("uuid,name", [("not-a-uuid", "vm"), (A, "vm\n-A FORWARD -j ACCEPT"),
                                       (A, ""), (A, None)],
                         ids=["bad-uuid", "newline-name", "empty-name", "no-name"])
def test_bad_identity_is_refused_and_earlier_rules_stay(firewall, tables, uuid, name):
    firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5"))
    before = tables.text[4]
    with pytest.raises(NetworkInfoError):
        firewall.prepare_instance(uuid, name, network_info("10.0.0.7"))
    assert tables.text[4] == before


def test_bad_vif_of_one_instance_leaves_the_others_going(firewall, tables):
    bad = (VIF("p", "fa:16:3e:00:00:09", fixed_ips=(FixedIP("10.0.0.9 -j ACCEPT", 4),)),)
    refused = []
    with firewall.defer_apply():
        for uuid, vifs in ((A, network_info("10.0.0.5")), (B, bad)):
            try:
                firewall.prepare_instance(uuid, "vm", vifs)
            except NetworkInfoError as exc:
                refused.append(str(exc))
    assert refused and B in refused[0] and "fixed_ips[0].address" in refused[0]
    assert tables.count("iptables-restore") == 1
    text = "\n".join(our_lines(tables, 4))
    assert "10.0.0.5/32" in text and "10.0.0.9" not in text


def test_ipv4_only_manager_never_touches_ip6tables(tables):
    firewall = IptablesFirewall(IptablesManager("cagent", tables, families=(4,)))
    firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5", "2001:db8::5"))
    assert tables.count("ip6tables-save") == 0 and tables.count("ip6tables-restore") == 0


def test_noop_firewall_runs_no_command_and_accepts_everything():
    firewall = NoopFirewall()
    with firewall.defer_apply():
        firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5"))
    firewall.retain_only([])
    firewall.remove_instance(A)
    firewall.apply()


def conf_with(**values):
    raw = {("DEFAULT", key): RawValue(str(value), "test") for key, value in values.items()}
    return resolve(raw)


def test_load_firewall_default_is_noop_and_needs_no_privileges(tmp_path):
    conf = conf_with(state_path=tmp_path)
    assert conf.firewall_driver == "noop"
    assert isinstance(load_firewall(conf), NoopFirewall)


def test_load_firewall_iptables_uses_the_prefix_and_executor(tmp_path, tables):
    conf = conf_with(state_path=tmp_path, firewall_driver="iptables", iptables_chain_prefix="nc1")
    firewall = load_firewall(conf, tables)
    assert isinstance(firewall, IptablesFirewall)
    firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5"))
    assert "-A FORWARD -j nc1-fwd" in lines(tables.text[4])


def test_load_firewall_bad_prefix_names_the_option(tmp_path, tables):
    # Refused as the configuration is loaded (the rule of agent.values), before any firewall.
    with pytest.raises(ConfigError, match="iptables_chain_prefix = 'bad-prefix': expected a "
                                          "letter followed by"):
        load_firewall(conf_with(state_path=tmp_path, firewall_driver="iptables",
                                iptables_chain_prefix="bad-prefix"), tables)



def test_prepare_from_network_info_refuses_a_bad_rule_and_keeps_the_others(
        firewall, tables, caplog):
    # A rule that cannot be rendered exactly allows nothing: the instance is still filtered,
    # with its other rules, and the log names the instance, the rule and the field.
    doc = json.dumps([{"id": "p", "address": "fa:16:3e:00:00:02",
                       "fixed_ips": [{"address": "10.0.0.6"}],
                       "rules": [{"protocol": "tcp", "port_min": "22; rm -rf /"},
                                 {"protocol": "icmp", "port_min": 255, "port_max": 255},
                                 {"protocol": "udp", "port_min": 53}]}])
    with caplog.at_level(logging.WARNING, logger="agent.network.firewall"):
        assert firewall.prepare_from_network_info(B, "vm-b", doc) is True
    assert f"instance {B}: network_info [0].rules[0].port_min" in caplog.text
    assert f"instance {B}: network_info [0].rules[1].port_min: ICMP type 255" in caplog.text
    chain = firewall.manager.hashed_chain_name(f"{B}/p")
    assert firewall.manager.chains(4)[chain] == (
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack --ctstate INVALID -j DROP",
        "-p udp -m udp --dport 53 -j ACCEPT", "-j DROP")
    assert "rm" not in "\n".join(our_lines(tables, 4))


def test_prepare_from_network_info_logs_and_skips_a_bad_instance(firewall, tables, caplog):
    bad = json.dumps([{"id": "p", "address": "fa:16:3e:00:00:02",
                       "fixed_ips": [{"address": "10.0.0.6 -j ACCEPT"}]}])
    good = json.dumps([{"id": "p", "address": "fa:16:3e:00:00:01",
                        "fixed_ips": [{"address": "10.0.0.5"}]}])
    with caplog.at_level(logging.WARNING, logger="agent.network.firewall"):
        with firewall.defer_apply():
            assert firewall.prepare_from_network_info(B, "vm-b", bad) is False
            assert firewall.prepare_from_network_info(A, "vm-a", good) is True
    assert f"instance {B}: network_info [0].fixed_ips[0].address" in caplog.text
    text = "\n".join(our_lines(tables, 4))
    assert "10.0.0.5/32" in text and "10.0.0.6" not in text


def test_noop_firewall_does_not_even_parse_network_info():
    assert NoopFirewall().prepare_from_network_info(A, "vm-a", "{not json") is True


def test_fixed_ip_of_two_instances_is_reported_when_it_starts_and_clears(firewall, caplog):
    with caplog.at_level(logging.INFO, logger="agent.network.firewall"):
        firewall.prepare_instance(A, "vm-a", network_info("10.0.0.5"))
        firewall.prepare_instance(B, "vm-b", network_info("10.0.0.5", "10.0.0.6"))
        firewall.prepare_instance(B, "vm-b", network_info("10.0.0.5", "10.0.0.7"))  # again
        shared = [record.getMessage() for record in caplog.records
                  if "belongs to instances" in record.getMessage()]
        assert shared == [f"firewall: fixed IP 10.0.0.5 belongs to instances {A}, {B}; traffic "
                          f"to it is filtered by the rules of {A} only"]
        firewall.remove_instance(A)
    assert "fixed IP 10.0.0.5 belongs to one instance again" in caplog.text
