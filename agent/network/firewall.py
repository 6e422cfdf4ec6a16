"""Firewall drivers: per-instance packet filtering built from the instances' VIFs.

`IptablesFirewall` gives every VIF of an instance one chain per address family:
established/related traffic is accepted, then the VIF's security-group rules, then everything else
is dropped. Our top-level chain `<prefix>-fwd`, jumped to first from FORWARD, sends traffic to
each fixed IP into its VIF's chain; each of those jumps carries the instance uuid as a comment,
so that a new agent process can find an instance's rules in the kernel (`keep_instance`).
`NoopFirewall` has the same API and filters nothing; it needs no privileges, which is why it is
the embedded default.

Callers wrap start-up in `defer_apply()` so that all instances cost one restore per family.
Deferral is per caller (thread): another thread's change made meanwhile is not dropped; its
apply waits for the block to end and returns once its rules are loaded, or raises FirewallError.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import re
import threading
from typing import Any, Iterable, Iterator, Sequence

from agent.display import plural
from agent.errors import ConfigError
from agent.network.executor import Executor, SubprocessExecutor
from agent.network.iptables import IptablesManager
from agent.network.network_info import (NetworkInfoError, parse_network_info, validate_name,
                                        validate_uuid, validate_vifs)
from agent.virt.types import VIF, SecurityGroupRule

LOG = logging.getLogger(__name__)

TOP_CHAIN = "fwd"
ACCEPT_RETURN_TRAFFIC = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
DROP_INVALID = "-m conntrack --ctstate INVALID -j DROP"


class FirewallDriver(abc.ABC):
    """What the compute manager calls; every method may be called at any time."""

    @abc.abstractmethod
    def prepare_instance(self, instance_uuid: str, name: str, vifs: Sequence[VIF]) -> None:
        """Called when an instance runs here (at start-up for each running instance): (re)build
        its filtering. Raises NetworkInfoError (a ValueError) naming the instance and field when
        a value may not reach a rule; the instance's previous rules are then left as they were.
        """

    def prepare_from_network_info(self, instance_uuid: str, name: str,
                                  network_info: str | list | None) -> bool:
        """`prepare_instance` from the stored instances.network_info (JSON). A rule that
        cannot be rendered exactly is logged with the instance, rule and field, and left out
        (it allows nothing; the other rules apply). Any other value that may not reach a rule
        is logged and that instance is skipped (its previous rules stay). Returns whether it
        was prepared."""
        refused: list[NetworkInfoError] = []
        try:
            vifs = parse_network_info(instance_uuid, network_info, refused)
            for exc in refused:
                LOG.error("firewall rule refused (it allows nothing): %s", exc)
            self.prepare_instance(instance_uuid, name, vifs)
        except NetworkInfoError as exc:
            LOG.warning("firewall rules not updated: %s", exc)
            return False
        return True

    @abc.abstractmethod
    def keep_instance(self, instance_uuid: str) -> None:
        """Called at start-up for a running instance whose network_info cannot be used: keep
        the rules it has now, as the kernel holds them (a new process's model does not know
        them, and would otherwise drop them). Raises ValueError for a bad uuid and
        FirewallError when the kernel's rules cannot be read."""

    @abc.abstractmethod
    def remove_instance(self, instance_uuid: str) -> None:
        """Called when an instance stops running here: drop its filtering."""

    @abc.abstractmethod
    def retain_only(self, instance_uuids: Iterable[str]) -> None:
        """Drop the filtering of every instance not listed, except instances another caller
        (thread) prepared while this caller's deferral block was open: start-up's list of
        this host's instances cannot know of them."""

    @abc.abstractmethod
    def defer_apply(self) -> contextlib.AbstractContextManager[None]:
        """Inside the block, this caller's changes are collected; they are applied once when
        it exits. Another caller's apply meanwhile waits for the block to end."""

    @abc.abstractmethod
    def apply(self) -> None:
        """Apply now (no-op inside this caller's deferral block; waits while another caller
        defers). Returns once the changes are loaded. Raises FirewallError; the old rules then
        stay."""


class NoopFirewall(FirewallDriver):
    """No filtering at all."""

    def prepare_from_network_info(self, instance_uuid: str, name: str,
                                  network_info: str | list | None) -> bool:
        return True  # nothing reaches a rule, so there is nothing to parse

    def prepare_instance(self, instance_uuid: str, name: str, vifs: Sequence[VIF]) -> None:
        LOG.debug("noop firewall: nothing to prepare for %s", instance_uuid)

    def keep_instance(self, instance_uuid: str) -> None:
        pass

    def remove_instance(self, instance_uuid: str) -> None:
        pass

    def retain_only(self, instance_uuids: Iterable[str]) -> None:
        pass

    @contextlib.contextmanager
    def defer_apply(self) -> Iterator[None]:
        yield

    def apply(self) -> None:
        pass


def rule_spec(rule: SecurityGroupRule) -> str:
    """One security-group rule as an iptables rule spec, in the order iptables-save prints it
    (so an unchanged table compares equal and is not restored again)."""
    parts = []
    if rule.source_cidr:
        parts.append(f"-s {rule.source_cidr}")
    if rule.protocol in ("tcp", "udp"):
        parts.append(f"-p {rule.protocol} -m {rule.protocol}")
        # The full range is no port match at all; iptables-save prints it without --dport.
        if rule.port_min is not None and (rule.port_min, rule.port_max) != (0, 65535):
            ports = (str(rule.port_min) if rule.port_max in (None, rule.port_min)
                     else f"{rule.port_min}:{rule.port_max}")
            parts.append(f"--dport {ports}")
    elif rule.protocol == "icmp":
        v6 = rule.ethertype == 6
        parts.append("-p ipv6-icmp" if v6 else "-p icmp")
        if rule.port_min is not None:
            icmp_type = str(rule.port_min) if rule.port_max is None \
                else f"{rule.port_min}/{rule.port_max}"
            parts.append(f"-m icmp6 --icmpv6-type {icmp_type}" if v6
                         else f"-m icmp --icmp-type {icmp_type}")
    parts.append("-j ACCEPT")
    return " ".join(parts)


def vif_rules(vif: VIF, family: int) -> list[str]:
    """The rules of a VIF's chain for one family."""
    return ([ACCEPT_RETURN_TRAFFIC, DROP_INVALID]
            + [rule_spec(rule) for rule in vif.rules if rule.ethertype == family]
            + ["-j DROP"])


def destination(address: str, family: int) -> str:
    return f"{address}/{32 if family == 4 else 128}"


def top_rule(address: str, family: int, instance_uuid: str, chain: str) -> str:
    """The top chain's jump for one fixed IP, as iptables-save prints it."""
    return f"-d {destination(address, family)} -m comment --comment {instance_uuid} -j {chain}"


_TOP_RULE_RE = re.compile(r"-d (\S+)/\d+ -m comment --comment (\S+) -j (\S+)\Z")


class IptablesFirewall(FirewallDriver):
    """Per-VIF chains in the filter table, through an IptablesManager."""

    def __init__(self, manager: IptablesManager):
        self.manager = manager
        # instance uuid -> family -> [(chain, [fixed IPs])]
        self._instances: dict[str, dict[int, list[tuple[str, list[str]]]]] = {}
        # instance uuid -> (model version, thread) of its last prepare or keep
        self._stamps: dict[str, tuple[int, int]] = {}
        # The kernel's chains read by keep_instance, reused within one caller's deferral
        # block until the next apply: ((thread, block), family -> chains)
        self._saved: tuple[tuple[int, int | None], dict[int, dict]] = ((0, None), {})
        self._top_dirty = True
        self._shared: dict[str, tuple[str, ...]] = {}  # fixed IP -> instances, when several
        self._top = manager.chain_name(TOP_CHAIN)
        manager.register_pre_apply(self._refresh_top)

    def prepare_instance(self, instance_uuid: str, name: str, vifs: Sequence[VIF]) -> None:
        try:
            uuid = validate_uuid(instance_uuid)
        except ValueError as exc:
            raise NetworkInfoError(repr(instance_uuid), "instance uuid", str(exc)) from None
        validate_name(uuid, name)
        vifs = validate_vifs(uuid, vifs)
        wanted: dict[int, list[tuple[str, list[str]]]] = {}
        rules: dict[tuple[int, str], list[str]] = {}
        for vif in vifs:
            chain = self.manager.hashed_chain_name(f"{uuid}/{vif.id}")
            for family in self.manager.families:
                ips = [ip.address for ip in vif.fixed_ips if ip.version == family]
                if ips:
                    wanted.setdefault(family, []).append((chain, ips))
                    rules[(family, chain)] = vif_rules(vif, family)
        with self.manager.defer_apply(), self.manager.lock:
            self._drop_chains(uuid, keep=set(rules))
            for (family, chain), specs in rules.items():
                self.manager.set_rules(family, chain, specs)
            self._instances[uuid] = wanted
            self._stamp(uuid)
            self._top_dirty = True
        LOG.debug("firewall prepared for instance %s (%s): %s", uuid, name,
                  plural(len(rules), "chain"))

    def keep_instance(self, instance_uuid: str) -> None:
        uuid = validate_uuid(instance_uuid)
        with self.manager.defer_apply(), self.manager.lock:
            if uuid in self._instances:
                return  # the model has them: they stay as they are
            found: dict[int, list[tuple[str, list[str]]]] = {}
            for family in self.manager.families:
                saved = self._kernel_chains(family)
                targets: dict[str, list[str]] = {}
                for spec in saved.get(self._top, ()):
                    match = _TOP_RULE_RE.match(spec)
                    if match and match.group(2) == uuid and match.group(3) in saved:
                        targets.setdefault(match.group(3), []).append(match.group(1))
                for chain, ips in targets.items():
                    self.manager.set_rules(family, chain, saved[chain])
                    found.setdefault(family, []).append((chain, ips))
            self._instances[uuid] = found
            self._stamp(uuid)
            self._top_dirty = True
        LOG.info("firewall: kept the %s the kernel holds for instance %s",
                 plural(sum(len(entries) for entries in found.values()), "chain"), uuid)

    def remove_instance(self, instance_uuid: str) -> None:
        uuid = instance_uuid.lower()
        with self.manager.defer_apply(), self.manager.lock:
            if uuid not in self._instances:
                return
            self._drop_chains(uuid, keep=set())
            del self._instances[uuid]
            self._stamps.pop(uuid, None)
            self._top_dirty = True

    def retain_only(self, instance_uuids: Iterable[str]) -> None:
        keep = {uuid.lower() for uuid in instance_uuids}
        me = threading.get_ident()
        with self.manager.defer_apply(), self.manager.lock:
            since = self.manager.deferred_since
            gone = [uuid for uuid in self._instances if uuid not in keep
                    and not self._is_others_since(uuid, since, me)]
            for uuid in gone:
                self.remove_instance(uuid)
        if gone:
            LOG.info("firewall: removed the chains of %s no longer here",
                     plural(len(gone), "instance"))

    def defer_apply(self) -> contextlib.AbstractContextManager[None]:
        return self.manager.defer_apply()

    def _kernel_chains(self, family: int) -> dict[str, tuple[str, ...]]:
        key = (threading.get_ident(), self.manager.deferred_since)
        if self._saved[0] != key:
            self._saved = (key, {})
        if family not in self._saved[1]:
            self._saved[1][family] = self.manager.saved_chains(family)
        return self._saved[1][family]

    def _stamp(self, uuid: str) -> None:
        self._stamps[uuid] = (self.manager.version, threading.get_ident())

    def _is_others_since(self, uuid: str, since: int | None, me: int) -> bool:
        """Whether another thread prepared `uuid` after model version `since`."""
        version, thread = self._stamps.get(uuid, (-1, me))
        return since is not None and thread != me and version > since

    def apply(self) -> None:
        self._top_dirty = True
        self.manager.apply()

    def _drop_chains(self, uuid: str, keep: set[tuple[int, str]]) -> None:
        for family, entries in self._instances.get(uuid, {}).items():
            for chain, _ips in entries:
                if (family, chain) not in keep:
                    self.manager.remove_chain(family, chain)

    def _refresh_top(self) -> None:
        self._saved = ((0, None), {})  # the kernel is about to change
        # Rendered once per apply rather than once per instance: start-up stays linear.
        if not self._top_dirty:
            return
        owners: dict[str, list[str]] = {}
        for family in self.manager.families:
            specs = []
            for uuid in sorted(self._instances):
                for chain, ips in self._instances[uuid].get(family, ()):
                    for ip in ips:
                        specs.append(top_rule(ip, family, uuid, chain))
                        owners.setdefault(ip, []).append(uuid)
            self.manager.set_rules(family, self._top, specs)
            self.manager.ensure_jump(family, "FORWARD", self._top)
        self._top_dirty = False
        self._report_shared({ip: uuids for ip, uuids in owners.items()
                             if len(set(uuids)) > 1})

    def _report_shared(self, shared: dict[str, list[str]]) -> None:
        """A fixed IP claimed by two instances is filtered by the first one's chain only
        (uuid order), whichever guest holds it: logged when it starts and when it clears."""
        now = {ip: tuple(sorted(set(uuids))) for ip, uuids in shared.items()}
        for ip, uuids in sorted(now.items()):
            if self._shared.get(ip) != uuids:
                LOG.error("firewall: fixed IP %s belongs to instances %s; traffic to it is "
                          "filtered by the rules of %s only", ip, ", ".join(uuids), uuids[0])
        for ip in sorted(set(self._shared) - set(now)):
            LOG.info("firewall: fixed IP %s belongs to one instance again", ip)
        self._shared = now


def load_firewall(conf: Any, executor: Executor | None = None) -> FirewallDriver:
    """The firewall driver named by conf.firewall_driver ('noop' or 'iptables'), running its
    commands through `executor` (default: the real binaries; a dry run gives a DryRunExecutor,
    which reads the kernel's tables and restores nothing)."""
    driver = conf.firewall_driver
    if driver == "noop":
        return NoopFirewall()
    if driver == "iptables":
        try:
            manager = IptablesManager(conf.iptables_chain_prefix,
                                      executor or SubprocessExecutor())
        except ValueError as exc:
            raise ConfigError(f"[DEFAULT] iptables_chain_prefix: {exc}") from None
        return IptablesFirewall(manager)
    raise ConfigError(f"[DEFAULT] firewall_driver: unknown driver {driver!r} "
                      f"(choose 'noop' or 'iptables')")
