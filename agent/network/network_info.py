"""`instances.network_info`: parsed from JSON and validated into VIF / FixedIP / SecurityGroupRule.

Everything that can reach an iptables rule is checked here, so nothing read from the database can
add an argument to a rule: addresses and prefixes go through `ipaddress` and are re-printed in
their canonical form, ports and ICMP types are integers in range, protocols come from a fixed set,
names and device names match strict patterns. A bad value raises NetworkInfoError naming the
instance and the field.

The stored JSON is a list of VIFs. Each VIF is an object with:
  "id" (str), "address" (MAC), optional "devname" (tap device, at most 15 characters),
  fixed IPs either flat, "fixed_ips": [{"address": "10.0.0.5", "version": 4}, ...], or nested
  as nova stores them, "network": {"subnets": [{"ips": [{"address": ..., "type": "fixed"}]}]}
  (addresses of another type, e.g. floating, are not fixed IPs and are ignored),
  and optional "rules" (or "security_group_rules"): [{"protocol": "tcp"|"udp"|"icmp"|null,
  "port_min": int, "port_max": int, "source_cidr": "10.0.0.0/8", "ethertype": 4|6|"IPv4"|"IPv6",
  "direction": "ingress"|"egress", "remote_group_id": null}].
For tcp/udp, port_min..port_max is the destination port range (port_max defaults to port_min);
for icmp, port_min is the ICMP type and port_max the code, as in nova's security groups.

A rule is rendered to exactly what it says or refused (NetworkInfoError naming the instance, the
rule and the field); nothing is widened or guessed:
- protocol: tcp, udp, icmp (icmpv6 / ipv6-icmp for IPv6; icmp on an IPv6 rule means ICMPv6, as
  in neutron), case-insensitive, or their numbers 6, 17, 1, 58; null, "any" or "" for every
  protocol. Other protocols and numbers are refused: the chain has no rule for them.
- ports (tcp/udp): integers 0..65535, port_min <= port_max; none means every port.
- ICMP type 0..255 and code 0..255, -1 or null for "any" (a code needs a type). IPv4 type 255 is
  refused: iptables reads it as "any type".
- source_cidr: an IP network of the rule's ethertype with no host bits set (10.0.0.5/24 is
  refused: it may mean 10.0.0.0/24 or 10.0.0.5/32); a /0 prefix is every source.
- direction: ingress (the default) is filtered; egress rules are not rendered (outbound traffic
  is not filtered here, so an egress allow holds as it is). remote_group_id (a rule allowing the
  members of a group) cannot be rendered: refused. Any other key is refused, so that a misspelt
  or unsupported field never turns into a rule that allows more.

`parse_network_info(..., refused=[])` collects refused rules instead of raising, so that the
instance's other rules still apply: a refused rule allows nothing.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from agent.virt.types import VIF, FixedIP, SecurityGroupRule

PROTOCOLS = ("tcp", "udp", "icmp")
# Names and numbers accepted for each protocol; icmpv6 only on IPv6 rules.
_PROTOCOL_WORDS = {"tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp",
                   "1": "icmp", "icmpv6": "icmpv6", "ipv6-icmp": "icmpv6", "58": "icmpv6",
                   "any": None, "": None}
RULE_KEYS = ("protocol", "port_min", "port_max", "source_cidr", "ethertype", "direction",
             "remote_group_id")
_RULE_KEY_SET = frozenset(RULE_KEYS)
# iptables' ICMP (IPv4) type that matches every type ("--icmp-type any").
ICMP_ANY_TYPE = 255
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
_DEVNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}\Z")
_VIF_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
MAX_NAME = 255
_ETHERTYPES = {4: 4, 6: 6, "IPv4": 4, "IPv6": 6, "ipv4": 4, "ipv6": 6}


class NetworkInfoError(ValueError):
    """An instance's network_info holds a value that may not reach a firewall rule."""

    def __init__(self, instance_uuid: str, field: str, problem: str):
        super().__init__(f"instance {instance_uuid}: network_info {field}: {problem}")
        self.instance_uuid = instance_uuid
        self.field = field


def validate_uuid(value: Any) -> str:
    """The instance uuid in its canonical lower-case form, or ValueError."""
    if not isinstance(value, str) or not _UUID_RE.match(value.lower()):
        raise ValueError(f"instance uuid {value!r} is not a canonical uuid")
    return value.lower()


def validate_name(instance_uuid: str, name: Any) -> str:
    if (not isinstance(name, str) or not name or len(name) > MAX_NAME
            or not name.isprintable()):
        raise NetworkInfoError(instance_uuid, "name",
                               f"{name!r} is not a printable name of 1..{MAX_NAME} characters")
    return name


def parse_network_info(instance_uuid: str, raw: str | list | None,
                       refused: list[NetworkInfoError] | None = None) -> tuple[VIF, ...]:
    """The validated VIFs of an instance from its stored network_info (JSON text or list).

    Raises NetworkInfoError for the first bad value. With a `refused` list, a bad security-group
    rule is appended to it and left out of its VIF instead (the other rules stay); any other bad
    value still raises."""
    uuid = _checked_uuid(instance_uuid)
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise NetworkInfoError(uuid, "(document)", f"not valid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise NetworkInfoError(uuid, "(document)", f"expected a list of VIFs, got "
                                                   f"{type(raw).__name__}")
    return _unique(uuid, tuple(_parse_vif(uuid, f"[{i}]", item, refused)
                               for i, item in enumerate(raw)))


def validate_vifs(instance_uuid: str, vifs: Any) -> tuple[VIF, ...]:
    """Check VIFs built elsewhere; returns them with addresses in canonical form."""
    uuid = _checked_uuid(instance_uuid)
    out = []
    for i, vif in enumerate(vifs):
        if not isinstance(vif, VIF):
            raise NetworkInfoError(uuid, f"[{i}]", f"expected a VIF, got {type(vif).__name__}")
        out.append(_parse_vif(uuid, f"[{i}]", _vif_dict(vif)))
    return _unique(uuid, tuple(out))


def _unique(uuid: str, vifs: tuple[VIF, ...]) -> tuple[VIF, ...]:
    # A VIF's id names its firewall chain: two VIFs with one id would share (and fight over) it.
    seen: set[str] = set()
    for i, vif in enumerate(vifs):
        if vif.id in seen:
            raise NetworkInfoError(uuid, f"[{i}].id", f"{vif.id!r} is used by an earlier VIF")
        seen.add(vif.id)
    return vifs


def dump_network_info(vifs: tuple[VIF, ...] | list[VIF]) -> str:
    """The JSON stored in instances.network_info for these VIFs (flat form)."""
    return json.dumps([_vif_dict(vif) for vif in vifs], separators=(",", ":"))


def _vif_dict(vif: VIF) -> dict:
    return {"id": vif.id, "address": vif.address, "devname": vif.devname,
            "fixed_ips": [{"address": ip.address, "version": ip.version}
                          for ip in vif.fixed_ips],
            "rules": [{"protocol": r.protocol, "port_min": r.port_min, "port_max": r.port_max,
                       "source_cidr": r.source_cidr, "ethertype": r.ethertype}
                      for r in vif.rules]}


def _checked_uuid(instance_uuid: Any) -> str:
    try:
        return validate_uuid(instance_uuid)
    except ValueError as exc:
        raise NetworkInfoError(repr(instance_uuid), "instance uuid", str(exc)) from None


def _parse_vif(uuid: str, where: str, item: Any,
               refused: list[NetworkInfoError] | None = None) -> VIF:
    if not isinstance(item, dict):
        raise NetworkInfoError(uuid, where, f"expected an object, got {type(item).__name__}")
    vif_id = item.get("id")
    if not isinstance(vif_id, str) or not _VIF_ID_RE.match(vif_id):
        raise NetworkInfoError(uuid, f"{where}.id", f"{vif_id!r} is not a VIF id")
    mac = item.get("address")
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        raise NetworkInfoError(uuid, f"{where}.address", f"{mac!r} is not a MAC address")
    devname = item.get("devname")
    if devname is not None and (not isinstance(devname, str) or not _DEVNAME_RE.match(devname)):
        raise NetworkInfoError(uuid, f"{where}.devname",
                               f"{devname!r} is not a device name ([A-Za-z0-9_.-], 1..15)")
    fixed = [_parse_ip(uuid, f"{where}.fixed_ips[{i}]", ip)
             for i, ip in enumerate(_list(uuid, f"{where}.fixed_ips", item.get("fixed_ips")))]
    fixed.extend(_nested_ips(uuid, where, item.get("network")))
    rules_key = "rules" if "rules" in item else "security_group_rules"
    rules = []
    for i, rule in enumerate(_list(uuid, f"{where}.{rules_key}", item.get(rules_key))):
        try:
            parsed = _parse_rule(uuid, f"{where}.{rules_key}[{i}]", rule)
        except NetworkInfoError as exc:
            if refused is None:
                raise
            refused.append(exc)
            continue
        if parsed is not None:
            rules.append(parsed)
    return VIF(id=vif_id, address=mac.lower(), fixed_ips=tuple(fixed), rules=tuple(rules),
               devname=devname)


def _nested_ips(uuid: str, where: str, network: Any) -> list[FixedIP]:
    if network is None:
        return []
    if not isinstance(network, dict):
        raise NetworkInfoError(uuid, f"{where}.network", "expected an object")
    out = []
    subnets = _list(uuid, f"{where}.network.subnets", network.get("subnets"))
    for s, subnet in enumerate(subnets):
        here = f"{where}.network.subnets[{s}]"
        if not isinstance(subnet, dict):
            raise NetworkInfoError(uuid, here, "expected an object")
        for i, ip in enumerate(_list(uuid, f"{here}.ips", subnet.get("ips"))):
            if isinstance(ip, dict) and ip.get("type", "fixed") != "fixed":
                continue
            out.append(_parse_ip(uuid, f"{here}.ips[{i}]", ip))
    return out


def _list(uuid: str, where: str, value: Any) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise NetworkInfoError(uuid, where, f"expected a list, got {type(value).__name__}")
    return value


def _parse_ip(uuid: str, where: str, item: Any) -> FixedIP:
    if not isinstance(item, dict):
        raise NetworkInfoError(uuid, where, "expected an object with an address")
    address = _address(uuid, f"{where}.address", item.get("address"))
    version = item.get("version", address.version)
    if version != address.version:
        raise NetworkInfoError(uuid, f"{where}.version",
                               f"{version!r} does not match address {address} "
                               f"(IPv{address.version})")
    return FixedIP(address=str(address), version=address.version)


def _address(uuid: str, where: str, value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str):
        raise NetworkInfoError(uuid, where, f"{value!r} is not an IP address string")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise NetworkInfoError(uuid, where, f"{value!r} is not an IP address") from None
    if getattr(address, "scope_id", None) is not None:
        raise NetworkInfoError(uuid, where, f"{value!r}: scoped addresses are not allowed")
    return address


def _parse_rule(uuid: str, where: str, item: Any) -> SecurityGroupRule | None:
    """One rule, exactly as it will be rendered; None for an egress rule (not filtered here)."""
    if not isinstance(item, dict):
        raise NetworkInfoError(uuid, where, "expected an object")
    unknown = sorted(map(str, item.keys() - _RULE_KEY_SET))
    if unknown:
        raise NetworkInfoError(uuid, f"{where}.{unknown[0]}",
                               f"unknown key (known: {', '.join(RULE_KEYS)})")
    if item.get("remote_group_id") is not None:
        raise NetworkInfoError(uuid, f"{where}.remote_group_id",
                               f"{item['remote_group_id']!r}: a rule for the members of a "
                               f"security group cannot be rendered (give source_cidr instead)")
    direction = item.get("direction", "ingress")
    if direction not in ("ingress", "egress", None):
        raise NetworkInfoError(uuid, f"{where}.direction",
                               f"{direction!r} is not 'ingress' or 'egress'")
    ethertype = item.get("ethertype", 4)
    if isinstance(ethertype, bool) or not isinstance(ethertype, (int, str)) or (
            ethertype not in _ETHERTYPES):
        raise NetworkInfoError(uuid, f"{where}.ethertype",
                               f"{ethertype!r} is not 4, 6, 'IPv4' or 'IPv6'")
    version = _ETHERTYPES[ethertype]
    protocol = _protocol(uuid, f"{where}.protocol", item.get("protocol"), version)
    port_min, port_max = item.get("port_min"), item.get("port_max")
    if protocol in ("tcp", "udp"):
        port_min, port_max = _range(uuid, where, port_min, port_max, 65535, "port")
    elif protocol == "icmp":
        port_min, port_max = _icmp(uuid, where, port_min, port_max, version)
    elif port_min is not None or port_max is not None:
        raise NetworkInfoError(uuid, f"{where}.port_min",
                               "ports need protocol tcp or udp (icmp type/code need icmp)")
    source = item.get("source_cidr")
    if source is not None:
        source = _cidr(uuid, f"{where}.source_cidr", source, version)
    if direction == "egress":
        return None
    return SecurityGroupRule(protocol=protocol, port_min=port_min, port_max=port_max,
                             source_cidr=source, ethertype=version)


def _protocol(uuid: str, where: str, value: Any, version: int) -> str | None:
    """tcp, udp, icmp (ICMPv6 on an IPv6 rule) or None (every protocol)."""
    if value is None:
        return None
    word = str(value).lower() if isinstance(value, (str, int)) and not isinstance(
        value, bool) else None
    if word not in _PROTOCOL_WORDS:
        raise NetworkInfoError(uuid, where, f"{value!r} is not one of tcp, udp, icmp, icmpv6 "
                                            f"(or 6, 17, 1, 58), or null for every protocol")
    protocol = _PROTOCOL_WORDS[word]
    if protocol == "icmpv6":
        if version != 6:
            raise NetworkInfoError(uuid, where, f"{value!r} is ICMPv6 but the rule's ethertype "
                                                f"is IPv{version}")
        protocol = "icmp"
    return protocol


def _int(uuid: str, where: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise NetworkInfoError(uuid, where, f"{value!r} is not an integer in {low}..{high}")
    return value


def _range(uuid, where, low, high, limit, what) -> tuple[int | None, int | None]:
    if low is None and high is None:
        return None, None
    if low is None:
        raise NetworkInfoError(uuid, f"{where}.port_min", f"missing while port_max is {high!r}")
    low = _int(uuid, f"{where}.port_min", low, 0, limit)
    high = low if high is None else _int(uuid, f"{where}.port_max", high, 0, limit)
    if low > high:
        raise NetworkInfoError(uuid, f"{where}.port_max",
                               f"{what} range {low}..{high}: port_min is above port_max")
    return low, high


def _icmp(uuid, where, icmp_type, code, version) -> tuple[int | None, int | None]:
    # nova's -1 means "any" for both the type and the code.
    icmp_type = None if _is_minus_one(icmp_type) else icmp_type
    code = None if _is_minus_one(code) else code
    if icmp_type is None:
        if code is not None:
            raise NetworkInfoError(uuid, f"{where}.port_max", "an ICMP code needs a type")
        return None, None
    icmp_type = _int(uuid, f"{where}.port_min", icmp_type, 0, 255)
    if version == 4 and icmp_type == ICMP_ANY_TYPE:
        raise NetworkInfoError(uuid, f"{where}.port_min",
                               f"ICMP type {ICMP_ANY_TYPE} cannot be rendered: iptables reads it "
                               f"as every type (use -1 or null for every type)")
    return icmp_type, None if code is None else _int(uuid, f"{where}.port_max", code, 0, 255)


def _is_minus_one(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == -1


def _cidr(uuid: str, where: str, value: Any, version: int) -> str | None:
    if not isinstance(value, str) or "%" in value:
        raise NetworkInfoError(uuid, where, f"{value!r} is not a CIDR")
    try:
        network = ipaddress.ip_network(value)
        host_bits = False
    except ValueError:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise NetworkInfoError(uuid, where, f"{value!r} is not a CIDR") from None
        host_bits = True
    if network.version != version:
        raise NetworkInfoError(uuid, where, f"{value!r} is IPv{network.version} but the rule's "
                                            f"ethertype is IPv{version}")
    if host_bits:
        address = value.partition("/")[0]
        raise NetworkInfoError(uuid, where, f"{value!r} has host bits set: give {network} for "
                                            f"the network or {address}/{network.max_prefixlen} "
                                            f"for the one host")
    # Every source: iptables prints no -s for a /0, so neither does the rule.
    return None if network.prefixlen == 0 else str(network)
