"""Parsing and validating instances.network_info: nothing from the database reaches a rule
unless it is a value of the expected kind, printed back in canonical form."""

from __future__ import annotations

import json

import pytest

from agent.network.network_info import (NetworkInfoError, dump_network_info, parse_network_info,
                                        validate_vifs)
from agent.virt.types import VIF, FixedIP, SecurityGroupRule

UUID = "0b5a3c4e-8f2d-4a61-9c3e-2d7f1e6a9b10"


def vif(**overrides) -> dict:
    base = {"id": "port-1", "address": "fa:16:3e:12:34:56", "devname": "tap12345678-9a",
            "fixed_ips": [{"address": "10.0.0.5", "version": 4}],
            "rules": [{"protocol": "tcp", "port_min": 22, "port_max": 22}]}
    base.update(overrides)
    return base


def rule(**fields) -> dict:
    return vif(rules=[fields])


def test_flat_form_parses_to_value_types():
    (parsed,) = parse_network_info(UUID, json.dumps([vif(
        fixed_ips=[{"address": "10.0.0.5"}, {"address": "2001:DB8:0:0::5", "version": 6}],
        rules=[{"protocol": "tcp", "port_min": 80, "port_max": 90, "source_cidr": "10.1.0.0/16"},
               {"protocol": "icmp", "port_min": -1, "port_max": -1, "ethertype": "IPv6"},
               {"protocol": None, "ethertype": 6, "source_cidr": "2001:db8::/32"}])]))
    assert parsed == VIF(
        id="port-1", address="fa:16:3e:12:34:56", devname="tap12345678-9a",
        fixed_ips=(FixedIP("10.0.0.5", 4), FixedIP("2001:db8::5", 6)),
        rules=(SecurityGroupRule("tcp", 80, 90, "10.1.0.0/16", 4),
               SecurityGroupRule("icmp", None, None, None, 6),
               SecurityGroupRule(None, None, None, "2001:db8::/32", 6)))


def test_nova_nested_form_takes_fixed_ips_and_ignores_floating():
    stored = [{"id": "p", "address": "FA:16:3E:00:00:01", "network": {"subnets": [
        {"cidr": "10.0.0.0/24", "ips": [
            {"address": "10.0.0.7", "type": "fixed", "version": 4,
             "floating_ips": [{"address": "203.0.113.9"}]},
            {"address": "203.0.113.10", "type": "floating", "version": 4}]},
        {"cidr": "2001:db8::/64", "ips": [{"address": "2001:db8::7", "type": "fixed"}]}]}}]
    (parsed,) = parse_network_info(UUID, stored)
    assert parsed.fixed_ips == (FixedIP("10.0.0.7", 4), FixedIP("2001:db8::7", 6))
    assert parsed.address == "fa:16:3e:00:00:01"


@pytest.mark.parametrize("raw", [None, "", "[]"], ids=["null", "empty", "no-vifs"])
def test_no_network_info_means_no_vifs(raw):
    assert parse_network_info(UUID, raw) == ()


def test_dump_then_parse_round_trips():
    vifs = parse_network_info(UUID, [vif(), vif(id="port-2", devname=None, fixed_ips=[])])
    assert parse_network_info(UUID, dump_network_info(vifs)) == vifs


def test_single_port_range_defaults_port_max():
    (parsed,) = parse_network_info(UUID, [rule(protocol="udp", port_min=53)])
    assert parsed.rules == (SecurityGroupRule("udp", 53, 53),)


# Each case: (network_info document, field named in the error). Many are injection attempts:
# a value that would add an iptables argument or a whole rule line if it reached a rule.
BAD = {
    "ip-with-target": ([vif(fixed_ips=[{"address": "1.2.3.4 -j ACCEPT"}])],
                       "[0].fixed_ips[0].address"),
    "ip-scoped-injection": ([vif(fixed_ips=[{"address": "fe80::1%x -j ACCEPT"}])],
                            "[0].fixed_ips[0].address"),
    "ip-newline": ([vif(fixed_ips=[{"address": "10.0.0.1\n-A FORWARD -j ACCEPT"}])],
                   "[0].fixed_ips[0].address"),
    "ip-integer": ([vif(fixed_ips=[{"address": 167772161}])], "[0].fixed_ips[0].address"),
    "ip-version-mismatch": ([vif(fixed_ips=[{"address": "10.0.0.1", "version": 6}])],
                            "[0].fixed_ips[0].version"),
    "port-shell": ([rule(protocol="tcp", port_min="22; rm -rf /")], "port_min"),
    "port-string-number": ([rule(protocol="tcp", port_min="22")], "port_min"),
    "port-too-big": ([rule(protocol="tcp", port_min=1, port_max=65536)], "port_max"),
    "port-negative": ([rule(protocol="udp", port_min=-1)], "port_min"),
    "port-bool": ([rule(protocol="tcp", port_min=True)], "port_min"),
    "port-float": ([rule(protocol="tcp", port_min=22.0)], "port_min"),
    "port-min-above-max": ([rule(protocol="tcp", port_min=90, port_max=80)], "port_max"),
    "port-max-alone": ([rule(protocol="tcp", port_max=80)], "port_min"),
    "port-without-protocol": ([rule(protocol=None, port_min=22)], "port_min"),
    "protocol-injection": ([rule(protocol="tcp -j ACCEPT")], "protocol"),
    "protocol-unknown": ([rule(protocol="sctp")], "protocol"),
    "icmp-type-range": ([rule(protocol="icmp", port_min=256)], "port_min"),
    "icmp-type-255-is-any-in-iptables": ([rule(protocol="icmp", port_min=255, port_max=255)],
                                         "[0].rules[0].port_min"),
    "icmp-type-255-any-code": ([rule(protocol="icmp", port_min=255)], "port_min"),
    "icmp-code-range": ([rule(protocol="icmp", port_min=3, port_max=256)], "port_max"),
    "icmp-code-minus-two": ([rule(protocol="icmp", port_min=3, port_max=-2)], "port_max"),
    "icmp-type-bool": ([rule(protocol="icmp", port_min=True)], "port_min"),
    "icmp-code-minus-one-without-type": ([rule(protocol="icmp", port_min=-1, port_max=0)],
                                         "port_max"),
    "icmpv6-on-ipv4-rule": ([rule(protocol="icmpv6")], "protocol"),
    "icmpv6-number-on-ipv4-rule": ([rule(protocol=58)], "protocol"),
    "protocol-number-unsupported": ([rule(protocol=132)], "protocol"),
    "protocol-zero": ([rule(protocol=0)], "protocol"),
    "protocol-bool": ([rule(protocol=True)], "protocol"),
    "protocol-list": ([rule(protocol=["tcp"])], "protocol"),
    "ports-on-icmp-any-protocol": ([rule(protocol="any", port_min=22)], "port_min"),
    "tcp-port-minus-one": ([rule(protocol="tcp", port_min=-1, port_max=-1)], "port_min"),
    "cidr-host-bits": ([rule(protocol=None, source_cidr="10.0.0.5/24")], "source_cidr"),
    "cidr-v6-host-bits": ([rule(protocol=None, ethertype=6, source_cidr="2001:db8::5/64")],
                          "source_cidr"),
    "cidr-prefix-too-long": ([rule(protocol=None, source_cidr="10.0.0.0/33")], "source_cidr"),
    "cidr-integer": ([rule(protocol=None, source_cidr=167772160)], "source_cidr"),
    "remote-group": ([rule(protocol="tcp", port_min=22, remote_group_id="sg-1")],
                     "[0].rules[0].remote_group_id"),
    "direction-unknown": ([rule(protocol="tcp", direction="both")], "direction"),
    "neutron-port-name-misspelt": ([rule(protocol="tcp", port_range_min=22)],
                                   "[0].rules[0].port_range_min"),
    "nova-cidr-name": ([rule(protocol="tcp", port_min=22, cidr="10.0.0.0/8")],
                       "[0].rules[0].cidr"),
    "icmp-code-without-type": ([rule(protocol="icmp", port_max=0)], "port_max"),
    "cidr-injection": ([rule(protocol=None, source_cidr="0.0.0.0/0 -j ACCEPT")], "source_cidr"),
    "cidr-wrong-family": ([rule(protocol=None, source_cidr="2001:db8::/32")], "source_cidr"),
    "cidr-scoped": ([rule(protocol=None, ethertype=6, source_cidr="fe80::%eth0/64")],
                    "source_cidr"),
    "ethertype-unknown": ([rule(protocol=None, ethertype="IPv5")], "ethertype"),
    "ethertype-list": ([rule(protocol=None, ethertype=[4])], "ethertype"),
    "mac-injection": ([vif(address="fa:16:3e:00:00:01 -j ACCEPT")], "[0].address"),
    "mac-short": ([vif(address="fa:16:3e:00:01")], "[0].address"),
    "devname-too-long": ([vif(devname="tap0123456789abcdef")], "[0].devname"),
    "devname-space": ([vif(devname="tap0 -j ACCEPT")], "[0].devname"),
    "devname-newline": ([vif(devname="tap0\n")], "[0].devname"),
    "vif-id-injection": ([vif(id="port; rm -rf /")], "[0].id"),
    "vif-not-object": (["port-1"], "[0]"),
    "vif-id-twice": ([vif(), vif(address="fa:16:3e:00:00:02")], "[1].id"),
    "fixed-ips-not-list": ([vif(fixed_ips={"address": "10.0.0.1"})], "[0].fixed_ips"),
    "document-not-list": ({"id": "port-1"}, "(document)"),
    "document-not-json": ("[{", "(document)"),
}


@pytest.mark.parametrize("doc,field", BAD.values(), ids=BAD.keys())
def test_bad_values_are_refused_naming_instance_and_field(doc, field):
    raw = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(NetworkInfoError) as caught:
        parse_network_info(UUID, raw)
    message = str(caught.value)
    assert UUID in message
    assert field in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("uuid", ["not-a-uuid", "0b5a3c4e-8f2d-4a61-9c3e-2d7f1e6a9b10 -j ACCEPT",
                                  "0b5a3c4e-8f2d-4a61-9c3e-2d7f1e6a9b10\n", 42],
                         ids=["garbage", "injection", "newline", "integer"])
def test_bad_instance_uuid_is_refused(uuid):
    with pytest.raises(NetworkInfoError, match="instance uuid"):
        parse_network_info(uuid, "[]")


def test_vifs_built_elsewhere_are_validated_too():
    bad = VIF(id="p", address="fa:16:3e:00:00:01",
              fixed_ips=(FixedIP("10.0.0.1 -j ACCEPT", 4),))
    with pytest.raises(NetworkInfoError, match=r"\[0\].fixed_ips\[0\].address"):
        validate_vifs(UUID, [bad])
    good = VIF(id="p", address="FA:16:3E:00:00:01", fixed_ips=(FixedIP("2001:DB8::1", 6),))
    assert validate_vifs(UUID, [good])[0].fixed_ips == (FixedIP("2001:db8::1", 6),)


# Each case: a rule as stored -> the rules it is rendered to, per family, exactly as
# iptables-save prints them (the netns tests check the kernel prints them back the same).
EXACT = {
    "tcp-port-0": ({"protocol": "tcp", "port_min": 0}, 4, ["-p tcp -m tcp --dport 0 -j ACCEPT"]),
    "tcp-port-65535": ({"protocol": "tcp", "port_min": 65535}, 4,
                       ["-p tcp -m tcp --dport 65535 -j ACCEPT"]),
    "tcp-0-to-100": ({"protocol": "tcp", "port_min": 0, "port_max": 100}, 4,
                     ["-p tcp -m tcp --dport 0:100 -j ACCEPT"]),
    "tcp-every-port": ({"protocol": "tcp", "port_min": 0, "port_max": 65535}, 4,
                       ["-p tcp -m tcp -j ACCEPT"]),
    "udp-no-port": ({"protocol": "udp"}, 4, ["-p udp -m udp -j ACCEPT"]),
    "tcp-by-number": ({"protocol": 6, "port_min": 22}, 4, ["-p tcp -m tcp --dport 22 -j ACCEPT"]),
    "udp-by-number-string": ({"protocol": "17", "port_min": 53}, 4,
                             ["-p udp -m udp --dport 53 -j ACCEPT"]),
    "tcp-upper-case": ({"protocol": "TCP", "port_min": 22}, 4,
                       ["-p tcp -m tcp --dport 22 -j ACCEPT"]),
    "icmp-any": ({"protocol": "icmp", "port_min": -1, "port_max": -1}, 4, ["-p icmp -j ACCEPT"]),
    "icmp-echo-any-code": ({"protocol": "icmp", "port_min": 8, "port_max": -1}, 4,
                           ["-p icmp -m icmp --icmp-type 8 -j ACCEPT"]),
    "icmp-echo-code-0": ({"protocol": 1, "port_min": 8, "port_max": 0}, 4,
                         ["-p icmp -m icmp --icmp-type 8/0 -j ACCEPT"]),
    "icmp-type-254-code-255": ({"protocol": "icmp", "port_min": 254, "port_max": 255}, 4,
                               ["-p icmp -m icmp --icmp-type 254/255 -j ACCEPT"]),
    "icmpv6-type-255": ({"protocol": "icmpv6", "ethertype": "IPv6", "port_min": 255,
                         "port_max": 255}, 6,
                        ["-p ipv6-icmp -m icmp6 --icmpv6-type 255/255 -j ACCEPT"]),
    "icmp-on-ipv6-is-icmpv6": ({"protocol": "icmp", "ethertype": 6, "port_min": 128}, 6,
                               ["-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT"]),
    "ipv6-icmp-by-number": ({"protocol": 58, "ethertype": 6}, 6, ["-p ipv6-icmp -j ACCEPT"]),
    "every-protocol": ({"protocol": "any"}, 4, ["-j ACCEPT"]),
    "every-source-v4": ({"protocol": "tcp", "port_min": 22, "source_cidr": "0.0.0.0/0"}, 4,
                        ["-p tcp -m tcp --dport 22 -j ACCEPT"]),
    "every-source-v6": ({"protocol": None, "ethertype": 6, "source_cidr": "::/0"}, 6,
                        ["-j ACCEPT"]),
    "one-host-v4": ({"protocol": None, "source_cidr": "10.0.0.5"}, 4, ["-s 10.0.0.5/32 -j ACCEPT"]),
    "network-v6": ({"protocol": None, "ethertype": 6, "source_cidr": "2001:DB8::/32"}, 6,
                   ["-s 2001:db8::/32 -j ACCEPT"]),
    "ingress": ({"protocol": "tcp", "port_min": 22, "direction": "ingress"}, 4,
                ["-p tcp -m tcp --dport 22 -j ACCEPT"]),
    "egress-not-filtered-here": ({"protocol": "tcp", "port_min": 22, "direction": "egress"}, 4,
                                 []),
    "no-remote-group": ({"protocol": "tcp", "port_min": 22, "remote_group_id": None}, 4,
                        ["-p tcp -m tcp --dport 22 -j ACCEPT"]),
}


@pytest.mark.parametrize("stored,family,specs", EXACT.values(), ids=EXACT.keys())
def test_every_accepted_rule_renders_to_exactly_what_it_says(stored, family, specs):
    from agent.network.firewall import vif_rules

    (parsed,) = parse_network_info(UUID, [vif(rules=[stored])])
    assert vif_rules(parsed, family)[2:-1] == specs
    assert vif_rules(parsed, 10 - family)[2:-1] == []  # and nothing in the other family


def test_refused_rules_are_collected_and_the_others_kept():
    refused: list = []
    (parsed,) = parse_network_info(UUID, [vif(rules=[
        {"protocol": "icmp", "port_min": 255, "port_max": 255},
        {"protocol": "tcp", "port_min": 22},
        {"protocol": "tcp", "port_min": 80, "remote_group_id": "web"}])], refused)
    assert parsed.rules == (SecurityGroupRule("tcp", 22, 22),)
    assert [exc.field for exc in refused] == ["[0].rules[0].port_min",
                                              "[0].rules[2].remote_group_id"]
    # Outside a rule, a bad value still refuses the whole document.
    with pytest.raises(NetworkInfoError, match="fixed_ips"):
        parse_network_info(UUID, [vif(fixed_ips=[{"address": "x"}])], refused)
