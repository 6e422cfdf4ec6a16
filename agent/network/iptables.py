"""The iptables manager: our chains of the filter table, modelled in memory, applied atomically.

The model holds, per address family, the chains the agent owns (every name starts with
`<prefix>-`) and the jumps from built-in chains into them. Changes only touch the model; `apply()`
(or the end of the outermost `defer_apply()` block) makes the kernel match it with ONE
`iptables-save` and at most ONE `iptables-restore` per family:

- the saved filter table is parsed; every line of another owner (their chains, their rules,
  the built-in policies) is written back byte for byte, with its packet counters (`-c`);
- our chains are written from the model, our jumps go first in their built-in chain, and our
  chains that are no longer in the model are simply left out, which deletes them;
- when the result equals what is loaded, nothing is restored.

Deferral belongs to the caller (the thread), not to the process. While one caller is inside a
`defer_apply()` block, its model is half-built (start-up has not yet prepared every instance), so
no apply may load it: another caller's apply waits until no other caller defers, and returns only
once its own changes are in the kernel, carried by the deferring caller's apply at the end of its
block or made by itself. It raises FirewallError when that apply failed. So an operation's rules
are loaded, or it learns they are not, before it saves its outcome, and nothing is silently left
unapplied. A caller must not wait for another thread while it holds a deferral block open.

Why a full `*filter` restore rather than `--noflush`: the whole table is swapped in one
transaction by both iptables variants (legacy: one table replace; nft: one netlink batch), so
either every change lands or none does, and removing a stale chain or jump needs no `-D`/`-X`
spec that would have to match iptables' own normalisation of the rule. Its cost is that a rule
another tool adds between our save and our restore (milliseconds) is lost; other tables (nat,
mangle, raw) are not part of the input and are never touched. A saved table that iptables itself
marks as incompatible (nft rules it cannot express) is refused rather than rewritten.

The commands are whatever `iptables-restore`/`ip6tables-restore` the system provides (on Debian
12 the nf_tables variant by default; the legacy one works the same way).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

from agent import values
from agent.display import plural
from agent.errors import FirewallError
from agent.network.executor import Executor, ProcessError
from agent.network.iptables_text import (BUILTIN_CHAINS, FAMILY_NAME, error_context,
                                         merge_filter, parse_filter, rule_target, same_filter)

LOG = logging.getLogger(__name__)

TOOLS = {4: ("iptables-save", "iptables-restore"), 6: ("ip6tables-save", "ip6tables-restore")}
# The kernel's limit for a chain name (XT_EXTENSION_MAXNAMELEN - 1).
MAX_CHAIN_NAME = 28
# The longest name we derive is "<prefix>-i" + 12 hex digits: prefixes are at most
# values.CHAIN_PREFIX_MAX (14) characters so that it fits.
_HASH_DIGITS = 12
_SUFFIX_RE = re.compile(r"[A-Za-z0-9_.]+\Z")
# Seconds iptables-restore waits for the xtables lock held by another writer (legacy variant;
# the nf_tables variant accepts and ignores it) instead of failing at once.
XTABLES_LOCK_WAIT = 30


@dataclass
class _Model:
    """Our part of one family's filter table."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    jumps: dict[str, list[str]] = field(default_factory=dict)  # built-in -> our chains
    removed: bool = False  # chains were removed since the last apply


class IptablesManager:
    """Our chains of the filter table, for IPv4 and IPv6, behind an injectable executor.

    Every mutating call changes the model only, then applies unless inside `defer_apply()`.
    Chain names given to it are full names and must start with `<prefix>-`.
    """

    def __init__(self, prefix: str, executor: Executor, *, families: Sequence[int] = (4, 6),
                 tools: Mapping[int, tuple[str, str]] | None = None):
        try:
            values.chain_prefix(prefix)  # the rule [DEFAULT] iptables_chain_prefix is loaded with
        except values.BadValue as exc:
            raise ValueError(f"iptables chain prefix {prefix!r}: {exc}") from None
        bad = [f for f in families if f not in TOOLS]
        if bad or not families:
            raise ValueError(f"address families must be 4 and/or 6, not {list(families)!r}")
        self.prefix = prefix
        self.families = tuple(dict.fromkeys(families))
        # (save, restore) command per family; e.g. the iptables-legacy-* pair instead
        self.tools = dict(TOOLS if tools is None else tools)
        if any(family not in self.tools for family in self.families):
            raise ValueError(f"no save/restore commands given for families {self.families}")
        self._executor = executor
        self._models = {family: _Model() for family in self.families}
        self._lock = threading.RLock()
        # Signalled (under the lock) when a caller leaves its outermost deferral block.
        self._idle = threading.Condition(self._lock)
        self._local = threading.local()  # .depth: this thread's deferral blocks
        self._deferring = 0  # threads inside a deferral block
        self._waiting = 0  # callers whose apply waits for another caller's block to end
        self._version = 0  # bumped by every change of the model
        self._applied = -1  # the model version the kernel last received in full
        self._pre_apply: list[Callable[[], None]] = []

    @property
    def lock(self) -> threading.RLock:
        """Held while the model changes or is applied; callers keeping state of their own
        alongside the model (the firewall driver) hold it too."""
        return self._lock

    # -- names ----------------------------------------------------------------------------
    def chain_name(self, suffix: str) -> str:
        """`<prefix>-<suffix>`, checked against the 28-character limit."""
        name = f"{self.prefix}-{suffix}"
        if not _SUFFIX_RE.match(suffix) or len(name) > MAX_CHAIN_NAME:
            raise ValueError(f"chain name {name!r} is not a valid iptables chain name of at "
                             f"most {MAX_CHAIN_NAME} characters")
        return name

    def hashed_chain_name(self, key: str, tag: str = "i") -> str:
        """A short, stable chain name for a long key such as an instance uuid."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:_HASH_DIGITS]
        return self.chain_name(f"{tag}{digest}")

    def is_ours(self, chain: str) -> bool:
        return chain.startswith(self.prefix + "-")

    # -- the model ------------------------------------------------------------------------
    def add_chain(self, family: int, name: str) -> None:
        with self._lock:
            self._model(family).chains.setdefault(self._check_chain(name), [])
            self._changed()

    def remove_chain(self, family: int, name: str) -> None:
        """Remove our chain, its rules and every jump to it from our other chains."""
        with self._lock:
            model = self._model(family)
            if model.chains.pop(name, None) is None:
                return
            # Rules of our other chains that jump to it are dropped once, just before the
            # next apply: one pass however many chains a deferred block removes.
            model.removed = True
            for builtin in list(model.jumps):
                model.jumps[builtin] = [t for t in model.jumps[builtin] if t != name]
            self._changed()

    def set_rules(self, family: int, chain: str, rules: Sequence[str]) -> None:
        """Replace the rules of our chain (created if missing). A rule is its spec without
        "-A CHAIN", e.g. "-p tcp -m tcp --dport 22 -j ACCEPT"."""
        for rule in rules:
            if not isinstance(rule, str) or not rule.strip() or any(
                    c in rule for c in "\n\r\0"):
                raise ValueError(f"rule {rule!r} for chain {chain} is not a single line")
        with self._lock:
            self._model(family).chains[self._check_chain(chain)] = list(rules)
            self._changed()

    def ensure_jump(self, family: int, builtin_chain: str, our_chain: str) -> None:
        """Make `builtin_chain` jump to `our_chain` first thing."""
        if builtin_chain not in BUILTIN_CHAINS:
            raise ValueError(f"{builtin_chain!r} is not a built-in chain of the filter table")
        with self._lock:
            model = self._model(family)
            self._check_chain(our_chain)
            targets = model.jumps.setdefault(builtin_chain, [])
            if our_chain not in targets:
                targets.append(our_chain)
                model.chains.setdefault(our_chain, [])
                self._changed()

    def chains(self, family: int) -> dict[str, tuple[str, ...]]:
        """A copy of our chains and their rules in the model."""
        with self._lock:
            model = self._model(family)
            if model.removed:
                self._drop_dangling_rules(model)
            return {c: tuple(r) for c, r in self._model(family).chains.items()}

    def saved_chains(self, family: int) -> dict[str, tuple[str, ...]]:
        """Our chains and their rules as the kernel holds them now (one iptables-save), e.g.
        to carry over the rules of an instance the model does not know after a restart.
        Raises FirewallError when the save fails."""
        save_cmd = self.tools[self._check_family(family)][0]
        try:
            saved = parse_filter(self._executor.run([save_cmd, "-t", "filter"], None), family)
        except ProcessError as exc:
            raise FirewallError(f"{save_cmd} failed: {exc}") from exc
        chains: dict[str, list[str]] = {}
        for name, _policy, _line in saved.declarations if saved else ():
            if self.is_ours(name):
                chains[name] = []
        for rule in saved.rules if saved else ():
            if rule.chain in chains:
                chains[rule.chain].append(rule.spec)
        return {name: tuple(specs) for name, specs in chains.items()}

    def register_pre_apply(self, callback: Callable[[], None]) -> None:
        """Call `callback` (under the manager's lock) just before every real apply, so a
        caller can bring chains it renders lazily up to date."""
        self._pre_apply.append(callback)

    # -- applying -------------------------------------------------------------------------
    @property
    def is_deferred(self) -> bool:
        """Whether the calling thread is inside a `defer_apply()` block."""
        return getattr(self._local, "depth", 0) > 0

    @property
    def waiting_callers(self) -> int:
        """How many callers' applies wait now for another caller's deferral block to end."""
        with self._lock:
            return self._waiting

    @contextlib.contextmanager
    def defer_apply(self) -> Iterator[None]:
        """This caller's changes inside the block touch only the model; its outermost block
        applies once on exit (waiting, as `apply`, while another caller defers). When the
        block raised, a failed apply is logged and the block's error goes on."""
        with self._lock:
            self._enter_deferral()
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            with self._lock:
                outermost = self._leave_deferral()
                if outermost and failed:
                    try:
                        self.apply()
                    except FirewallError as exc:
                        LOG.error("firewall apply after a failed block also failed: %s", exc)
                elif outermost:
                    self.apply()

    def apply(self) -> None:
        """Make the kernel's filter tables match the model; no-op inside this caller's
        deferral block. While another caller defers, waits for the end of its block: its apply
        then carries this caller's changes too, or this caller applies them itself.

        Raises FirewallError when a save or restore fails; the rules loaded before stay.
        """
        with self._lock:
            if self.is_deferred:
                return
            wanted = self._version
            self._waiting += 1
            try:
                while self._deferring:
                    self._idle.wait()
                    if self._applied >= wanted:
                        return  # another caller's apply loaded these changes
            finally:
                self._waiting -= 1
            self._enter_deferral(count=False)  # callbacks change the model without applying
            try:
                for callback in self._pre_apply:
                    callback()
            finally:
                self._leave_deferral(count=False)
            version = self._version
            errors = []
            for family in self.families:
                try:
                    self._apply_family(family)
                except FirewallError as exc:
                    errors.append(str(exc))
            if errors:
                raise FirewallError("; ".join(errors))
            self._applied = version

    @property
    def version(self) -> int:
        """A number that grows with every change of the model."""
        return self._version

    @property
    def deferred_since(self) -> int | None:
        """The model `version` when the calling thread's outermost deferral block began; None
        outside a block."""
        return self._local.since if self.is_deferred else None

    def _enter_deferral(self, count: bool = True) -> None:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.since = self._version
            if count:
                self._deferring += 1
        self._local.depth = depth + 1

    def _leave_deferral(self, count: bool = True) -> bool:
        """Leave one block; True when it was this caller's outermost."""
        self._local.depth -= 1
        if self._local.depth or not count:
            return False
        self._deferring -= 1
        self._idle.notify_all()
        return True

    def _apply_family(self, family: int) -> None:
        save_cmd, restore_cmd = self.tools[family]
        model = self._models[family]
        if model.removed:
            self._drop_dangling_rules(model)
        try:
            saved_text = self._executor.run([save_cmd, "-c", "-t", "filter"], None)
        except ProcessError as exc:
            raise FirewallError(f"{save_cmd} failed: {exc}") from exc
        saved = parse_filter(saved_text, family)
        if saved is None and not model.chains:
            return  # no filter table loaded and nothing of ours to put in one
        merged = merge_filter(saved, model.chains, model.jumps, self.is_ours)
        if same_filter(saved, merged):
            LOG.debug("%s filter table already up to date (%s of ours)",
                      FAMILY_NAME[family], plural(len(model.chains), "chain"))
            return
        try:
            self._executor.run([restore_cmd, "-w", str(XTABLES_LOCK_WAIT), "-c"],
                               "\n".join(merged) + "\n")
        except ProcessError as exc:
            number, context = error_context(merged, exc.stderr)
            where = f" at line {number}" if number else ""
            LOG.error("%s%s failed; the previous %s rules stay in place: %s\n%s",
                      restore_cmd, where, FAMILY_NAME[family], exc.stderr.strip(), context)
            bad = f": {merged[number - 1]!r}" if number and number <= len(merged) else ""
            raise FirewallError(f"{restore_cmd} failed{where}{bad}; previous "
                                f"{FAMILY_NAME[family]} rules left in place") from exc
        # Through a dry run's executor the restore is only logged: say what was handed over.
        LOG.info("%s filter table handed to %s: %s of ours, %s", FAMILY_NAME[family],
                 restore_cmd, plural(len(model.chains), "chain"), plural(len(merged), "line"))

    # -- helpers --------------------------------------------------------------------------
    def _model(self, family: int) -> _Model:
        return self._models[self._check_family(family)]

    def _check_family(self, family: int) -> int:
        if family not in self._models:
            raise ValueError(f"address family {family!r} is not managed "
                             f"(managed: {self.families})")
        return family

    def _check_chain(self, name: str) -> str:
        if not isinstance(name, str) or not self.is_ours(name) or not _SUFFIX_RE.match(
                name[len(self.prefix) + 1:]) or len(name) > MAX_CHAIN_NAME:
            raise ValueError(f"chain {name!r} is not ours: names must be '{self.prefix}-' "
                             f"followed by letters, digits, '_' or '.', at most "
                             f"{MAX_CHAIN_NAME} characters")
        return name

    def _drop_dangling_rules(self, model: _Model) -> None:
        for chain, specs in model.chains.items():
            kept = [spec for spec in specs if not self._is_dangling(rule_target(spec), model)]
            if len(kept) != len(specs):
                model.chains[chain] = kept
        model.removed = False

    def _is_dangling(self, target: str | None, model: _Model) -> bool:
        return target is not None and self.is_ours(target) and target not in model.chains

    def _changed(self) -> None:
        self._version += 1
        if not self.is_deferred:
            self.apply()
