"""Command-line value types: the rules of `agent.values` as argparse `type=` callables.

A refused value is an argparse error: one line, "agent fleet: error: argument --count: 'x':
expected an integer from 1 to 100000 (see 'agent fleet --help')", exit status 2.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from agent import values
from agent.vocabulary import AUTO_PREFIX


def _rule(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(text)
        except values.BadValue as exc:
            raise argparse.ArgumentTypeError(f"{values.shown(text)}: {exc}") from None
    parse.__name__ = name
    return parse


def integer(minimum: int, maximum: int = values.INT_MAX) -> Callable[[str], int]:
    """A decimal integer from `minimum` to `maximum`."""
    def check(text: str) -> int:
        return values.integer(_parse(int, text), minimum, maximum)
    return _rule(check, "integer")


def number(minimum: float, maximum: float | None = None, *,
           above: bool = False) -> Callable[[str], float]:
    """A finite number from `minimum` (excluded when `above`) to `maximum`."""
    def check(text: str) -> float:
        value = values.number(_parse(float, text), minimum, maximum)
        if above and value == minimum:
            raise values.BadValue(f"a finite number above {minimum:g}")
        return value
    return _rule(check, "number")


def _parse(convert: Callable[[str], Any], text: str) -> Any:
    try:
        return convert(text)
    except ValueError:
        return text  # not a number: the rule refuses it and says what was expected


hostname = _rule(values.hostname, "hostname")
text = _rule(values.text, "text")
writable_file = _rule(values.writable_file, "writable file")


def _disabled_reason(reason: str) -> str:
    values.text(reason)
    if reason.startswith(AUTO_PREFIX.strip()):
        raise values.BadValue(f"a reason not starting with {AUTO_PREFIX.strip()!r} (reserved for "
                              "the agent's own automatic disables)")
    return reason


disabled_reason = _rule(_disabled_reason, "reason")


def _host_prefix(prefix: str) -> str:
    values.hostname(prefix + "00001")  # the first name it makes: prefix + 5 digits
    return prefix


host_prefix = _rule(_host_prefix, "host prefix")
