"""The rules for values that come from outside the agent (configuration options, command-line
values, scenario file entries), one function per kind.

Each function takes the value as given and returns it checked (and converted where the kind
says so), or raises `BadValue` whose `expected` says what a good value looks like. Callers add
where the value came from (file and line, flag, scenario entry), so the same value gets the same
verdict wherever it is written, and on every database backend: the limits are those of the
columns the values land in, checked before anything is written.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import unicodedata
from typing import Any

# Integer columns (vcpus, memory_mb, root_gb, ...) are 32-bit signed on every backend;
# hypervisor_version is a BigInteger.
INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
# Float columns (the allocation ratios, rxtx_factor) are single precision on MySQL/MariaDB:
# the largest value all three backends store is nova's SQL_SP_FLOAT_MAX.
FLOAT_MAX = 3.40282e38
# String(255) columns: host names, display names, project ids, reasons, ...
STRING_MAX = 255
HOSTNAME_MAX = 255
# nova's [libvirt] uid_maps / gid_maps: at most five 'guest:host:count' ranges.
ID_MAPS_MAX = 5
ID_MAX = 2**32 - 1

# iptables chain names are at most 28 characters (the kernel's limit); the agent's longest is
# "<prefix>-i" + 12 hex digits, which leaves 14 characters for the prefix.
CHAIN_PREFIX_MAX = 28 - 14

_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_.-]+\Z")
_CHAIN_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,%d}\Z" % (CHAIN_PREFIX_MAX - 1))
_ID_MAP_RE = re.compile(r"(\d+):(\d+):(\d+)\Z")


class BadValue(ValueError):
    """A value of the wrong kind; `expected` completes "expected ..." in the caller's message."""

    def __init__(self, expected: str):
        super().__init__(f"expected {expected}")
        self.expected = expected


def hostname(value: Any) -> str:
    """A host or node name: 1 to 255 letters, digits, '.', '-' or '_' (what the services,
    compute_nodes, instances and migrations tables hold on every backend, and what stays one
    word in a log line)."""
    if (not isinstance(value, str) or not value or len(value) > HOSTNAME_MAX
            or not _HOSTNAME_RE.match(value) or value[0] in ".-"):
        raise BadValue(f"a host name: 1 to {HOSTNAME_MAX} letters, digits, '.', '-' or '_', "
                       "not starting with '.' or '-'")
    return value


def chain_prefix(value: Any) -> str:
    """The prefix of the agent's iptables chains: a letter, then letters, digits or '_', at
    most 14 characters in all (the chain names made from it stay within iptables' 28)."""
    if not isinstance(value, str) or not _CHAIN_PREFIX_RE.match(value):
        raise BadValue(f"a letter followed by at most {CHAIN_PREFIX_MAX - 1} letters, digits or "
                       "underscores")
    return value


def text(value: Any, *, max_length: int | None = STRING_MAX, empty: bool = False) -> str:
    """A string without control characters (NUL, newline, tab, ...), at most `max_length`
    characters (None: no limit), not empty or blank unless `empty`."""
    what = ("a string" if empty else "a non-empty string") + " without control characters"
    if max_length is not None:
        what += f", at most {max_length} characters"
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise BadValue(what)
    if has_control_characters(value) or (max_length is not None and len(value) > max_length):
        raise BadValue(what)
    return value


def shown(value: Any, limit: int = 60) -> str:
    """`value` as quoted in an error message: its repr (control characters escaped), cut to
    `limit` characters with its length when it is longer."""
    if not isinstance(value, str):
        written = repr(value)
        return written if len(written) <= limit else f"{written[:limit]}..."
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def has_control_characters(value: str) -> bool:
    """True when `value` holds a control character (Unicode category Cc: NUL, tab, newline,
    escape, DEL, ...)."""
    return any(unicodedata.category(char) == "Cc" for char in value)


def integer(value: Any, minimum: int = 0, maximum: int = INT_MAX, unit: str = "") -> int:
    """An integer from `minimum` to `maximum` (by default what an Integer column holds). Bools
    and strings are not integers (callers reading text convert it first)."""
    expected = f"an integer from {minimum} to {maximum}" + (f" {unit}" if unit else "")
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadValue(expected)
    return value


def number(value: Any, minimum: float | None = None, maximum: float | None = None,
           unit: str = "") -> float:
    """A finite number within [minimum, maximum] (either bound None: no bound); nan and
    infinity are refused, and so are bools and strings."""
    if minimum is not None and maximum is not None:
        bounds = f" from {number_text(minimum)} to {number_text(maximum)}"
    elif minimum is not None or maximum is not None:
        bounds = (f" of at least {number_text(minimum)}" if minimum is not None
                  else f" of at most {number_text(maximum)}")
    else:
        bounds = ""
    expected = f"a finite number{bounds}" + (f" {unit}" if unit else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(expected)
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum) or (
            maximum is not None and value > maximum):
        raise BadValue(expected)
    return value


def ip_address(value: Any) -> str:
    """An IPv4 or IPv6 address, as written."""
    try:
        ipaddress.ip_address(text(value))
    except ValueError:
        raise BadValue("an IPv4 or IPv6 address") from None
    return value


def id_maps(items: list[str]) -> list[str]:
    """lxc user-namespace maps, nova's syntax: at most five 'guest:host:count' ranges of
    decimal ids (count at least 1)."""
    expected = (f"at most {ID_MAPS_MAX} comma-separated 'guest:host:count' ranges of ids "
                "(e.g. 0:100000:65536)")
    if len(items) > ID_MAPS_MAX:
        raise BadValue(expected)
    for item in items:
        match = _ID_MAP_RE.match(item)
        if not match or int(match.group(3)) < 1 or any(int(g) > ID_MAX for g in match.groups()):
            raise BadValue(expected)
    return items


def writable_file(path: str) -> str:
    """A file the agent will create or append to: its directory exists and is writable, and
    the file, when it exists, is a writable regular file."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise BadValue(f"a file in an existing directory ({directory} does not exist)")
    if os.path.exists(path):
        if not os.path.isfile(path) or not os.access(path, os.W_OK):
            raise BadValue("a writable regular file")
    elif not os.access(directory, os.W_OK | os.X_OK):
        raise BadValue(f"a file in a writable directory ({directory} is not writable)")
    return path


def directory(path: str) -> str:
    """A directory the agent keeps its files in: an existing directory, or one it can create
    (the nearest existing parent is a writable directory). An existing directory is not
    required to be writable: commands that only read use it too."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise BadValue(f"a directory ({path} is not one)")
        return path
    parent = os.path.dirname(path)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise BadValue(f"a directory that can be created ({parent} is not a writable "
                       "directory)")
    return path


def number_text(value: float) -> str:
    """A bound as written in a message: whole numbers without '.0' (4, 2147483647), others
    and very large ones as Python writes a float (0.5, 3.40282e+38)."""
    if float(value).is_integer() and abs(value) <= BIGINT_MAX:
        return str(int(value))
    return str(float(value))
