"""The iptables-save / iptables-restore text of the filter table: parse, merge, compare.

Pure functions, no I/O: `IptablesManager` (agent.network.iptables) feeds them what
`iptables-save -c` printed and the chains of its model, and gets back the exact lines to restore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

from agent.errors import FirewallError

FAMILY_NAME = {4: "IPv4", 6: "IPv6"}
BUILTIN_CHAINS = ("INPUT", "FORWARD", "OUTPUT")
# Lines around a failing restore line that are logged.
CONTEXT_LINES = 3

_TARGET_RE = re.compile(r"(?:^|\s)-[jg]\s+(\S+)")
_ERROR_LINE_RE = re.compile(r"line:?\s+(\d+)")
_QUOTED_RE = re.compile(r"['`]([^'`\s]+)'")


class SavedRule(NamedTuple):
    chain: str
    spec: str  # the rule without "-A CHAIN" and counters
    counters: str | None  # "pkts:bytes" when saved with -c
    line: str  # the line exactly as saved


@dataclass(frozen=True)
class SavedFilter:
    """The filter table as `iptables-save -c` printed it."""

    declarations: tuple[tuple[str, str, str], ...]  # (chain, policy, line)
    rules: tuple[SavedRule, ...]


def parse_filter(text: str, family: int = 4) -> SavedFilter | None:
    """Parse the `*filter` block of iptables-save output; None when there is no filter table.

    Raises FirewallError for output this module does not understand, so that it is never
    restored half-understood.
    """
    declarations: list[tuple[str, str, str]] = []
    rules: list[SavedRule] = []
    in_filter = False
    found = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            if "incompatible" in line or "unsupported" in line.lower():
                raise FirewallError(f"{FAMILY_NAME[family]} filter table holds rules iptables "
                                    f"cannot express ({line.strip()}); not rewriting it")
            continue
        if line.startswith("*"):
            in_filter = line.strip() == "*filter"
            found = found or in_filter
            continue
        if not in_filter or not line.strip():
            continue
        if line.strip() == "COMMIT":
            in_filter = False
            continue
        if line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            declarations.append((name, rest.split(" ", 1)[0], line))
            continue
        rule = _split_rule(line)
        if rule is None:
            raise FirewallError(f"cannot parse iptables-save output line {number}: "
                                f"{line!r}")
        rules.append(SavedRule(rule[1], rule[2], rule[0], line))
    return SavedFilter(tuple(declarations), tuple(rules)) if found else None


def _split_rule(line: str) -> tuple[str | None, str, str] | None:
    """(counters, chain, spec) of "[pkts:bytes] -A CHAIN SPEC" (counters optional)."""
    counters = None
    if line.startswith("["):
        close = line.find("] ")
        if close < 0:
            return None
        counters, line = line[1:close], line[close + 2:]
    if not line.startswith("-A "):
        return None
    chain, _, spec = line[3:].partition(" ")
    return (counters, chain, spec) if chain else None


def rule_target(spec: str) -> str | None:
    """The chain or target a rule jumps (-j) or goes (-g) to."""
    found = _TARGET_RE.findall(spec)
    return found[-1] if found else None


def merge_filter(saved: SavedFilter | None, chains: dict[str, list[str]],
                 jumps: dict[str, list[str]], owned: Callable[[str], bool]) -> list[str]:
    """The restore input: other owners' lines as saved, ours from the model.

    `owned(chain)` says whether a chain name is ours. In built-in chains, every rule jumping to
    one of our chains is ours and is replaced by the model's jumps (placed first); in other
    owners' chains such a rule is kept while its target exists and dropped when the target goes.
    Counters of our unchanged rules are carried over.
    """
    declarations = saved.declarations if saved else tuple(
        (name, "ACCEPT", f":{name} ACCEPT [0:0]") for name in BUILTIN_CHAINS)
    saved_rules = saved.rules if saved else ()
    counters: dict[tuple[str, str], list[str]] = {}
    for rule in saved_rules:
        if rule.counters and (owned(rule.chain) or _is_our_jump(rule, owned)):
            counters.setdefault((rule.chain, rule.spec), []).append(rule.counters)

    def ours(chain: str, spec: str) -> str:
        kept = counters.get((chain, spec))
        prefix = f"[{kept.pop(0)}] " if kept else ""
        return f"{prefix}-A {chain} {spec}"

    out = ["*filter"]
    foreign_chains = []
    for name, _policy, line in declarations:
        if not owned(name):
            out.append(line)
            foreign_chains.append(name)
    out.extend(f":{name} - [0:0]" for name in chains)
    known = set(foreign_chains)
    for builtin in jumps:
        if builtin not in known:
            raise FirewallError(f"cannot jump from chain {builtin}: not in the filter table")
    by_chain: dict[str, list[SavedRule]] = {}
    for rule in saved_rules:
        by_chain.setdefault(rule.chain, []).append(rule)
    for chain in foreign_chains:
        out.extend(ours(chain, f"-j {target}") for target in jumps.get(chain, ()))
        for rule in by_chain.get(chain, ()):
            target = rule_target(rule.spec)
            if target is not None and owned(target):
                if chain in BUILTIN_CHAINS or target not in chains:
                    continue
            out.append(rule.line)
    for chain, specs in chains.items():
        out.extend(ours(chain, spec) for spec in specs)
    out.append("COMMIT")
    return out


def _is_our_jump(rule: SavedRule, owned: Callable[[str], bool]) -> bool:
    target = rule_target(rule.spec)
    return rule.chain in BUILTIN_CHAINS and target is not None and owned(target)


def same_filter(saved: SavedFilter | None, merged: Sequence[str]) -> bool:
    """Whether restoring `merged` would change nothing (counters aside)."""
    if saved is None:
        return False
    saved_rules: dict[str, list[str]] = {}
    for rule in saved.rules:
        saved_rules.setdefault(rule.chain, []).append(rule.spec)
    new_rules: dict[str, list[str]] = {}
    new_decls = []
    for line in merged:
        if line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            new_decls.append((name, rest.split(" ", 1)[0]))
        elif line.startswith(("-A ", "[")):
            _counters, chain, spec = _split_rule(line)
            new_rules.setdefault(chain, []).append(spec)
    return (sorted((name, policy) for name, policy, _ in saved.declarations) == sorted(new_decls)
            and saved_rules == new_rules)


def error_context(lines: Sequence[str], stderr: str) -> tuple[int | None, str]:
    """The failing line number from iptables-restore's stderr and the lines around it."""
    match = _ERROR_LINE_RE.search(stderr)
    if match is None:
        return None, ""
    number = int(match.group(1))
    if 0 < number <= len(lines) and lines[number - 1] == "COMMIT":
        # The nf_tables variant checks jump targets when the batch is committed and reports
        # the COMMIT line; the rule at fault is the first one jumping to the name it quotes.
        for name in _QUOTED_RE.findall(stderr):
            culprit = next((n for n, line in enumerate(lines, 1)
                            if rule_target(line) == name), None)
            if culprit is not None:
                number = culprit
                break
    first = max(1, number - CONTEXT_LINES)
    last = min(len(lines), number + CONTEXT_LINES)
    shown = [f"{'>' if n == number else ' '} {n:6d}  {lines[n - 1]}"
             for n in range(first, last + 1)]
    return number, "\n".join(shown)
