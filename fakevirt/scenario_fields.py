"""The field parsers of scenario files (`fakevirt.scenario`): each takes a TOML value and
returns it checked, or raises `Invalid` saying what was expected. Values that land in database
columns are checked with the rules of `agent.values`, so a scenario value gets the verdict a
configuration or command-line value of its kind gets, on every backend."""

from __future__ import annotations

import uuid as uuid_lib
from dataclasses import dataclass
from typing import Any, Callable

from agent import values
from agent.config import did_you_mean
from agent.virt.types import PowerState

POWER_STATE_WORDS: dict[str, PowerState] = {
    "nostate": PowerState.NOSTATE, "running": PowerState.RUNNING, "paused": PowerState.PAUSED,
    "shutdown": PowerState.SHUTDOWN, "crashed": PowerState.CRASHED,
    "suspended": PowerState.SUSPENDED,
}

REQUIRED = object()


class Invalid(Exception):
    """A problem with one field; turned into a ScenarioError naming file and entry. `located`:
    the message already names the field's path within the entry."""

    def __init__(self, message: str, located: bool = False):
        super().__init__(message)
        self.located = located


@dataclass(frozen=True)
class Field:
    parse: Callable[[Any], Any]
    default: Any = REQUIRED


def checked(rule: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A rule of `agent.values` as a field parser: a refusal names the value and what was
    expected."""
    def parse(value: Any) -> Any:
        try:
            return rule(value)
        except values.BadValue as exc:
            raise Invalid(f"{exc}, got {values.shown(value)}") from None
    return parse


# Strings land in String(255) columns (display_name, project_id, ...) or in log lines and
# libvirt names: no control characters, at most 255 characters, the same on every backend.
text = checked(values.text)
hostname = checked(values.hostname)


def integer(minimum: int, maximum: int = values.INT_MAX) -> Callable[[Any], int]:
    """An integer from `minimum` to what its column holds (Integer unless said otherwise)."""
    return checked(lambda value: values.integer(value, minimum, maximum))


def choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if text(value) not in choices:
            raise Invalid(f"{value!r} is not one of {', '.join(choices)}"
                          f"{did_you_mean(value, choices)}")
        return value
    return parse


def uuid_text(value: Any) -> str:
    try:
        if isinstance(value, str) and len(value) == 36:
            return str(uuid_lib.UUID(value))
    except ValueError:
        pass
    raise Invalid(f"{value!r} is not a uuid (expected 8-4-4-4-12 hex digits)")


def power_state(value: Any) -> PowerState:
    if isinstance(value, str) and value in POWER_STATE_WORDS:
        return POWER_STATE_WORDS[value]
    raise Invalid(f"{value!r} is not one of {', '.join(POWER_STATE_WORDS)}"
                   f"{did_you_mean(str(value), POWER_STATE_WORDS)}")


def str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(f"expected an array of strings, got {values.shown(value)}")
    return tuple(text(item) for item in value)


def table(value: Any, fields: dict[str, Field], what: str) -> dict[str, Any]:
    """Check a TOML table against `fields`; `what` is its path inside the entry ("" or
    "network_info[0].")."""
    if not isinstance(value, dict):
        raise Invalid(f"{what.rstrip('.') or 'entry'}: expected a table, got {value!r}", True)
    for key in value:
        if key not in fields:
            raise Invalid(f"unknown key '{what}{key}'{did_you_mean(key, fields)}; known keys: "
                          f"{', '.join(fields)}", True)
    out = {}
    for key, spec in fields.items():
        if key in value:
            try:
                out[key] = spec.parse(value[key])
            except Invalid as exc:
                if exc.located:
                    raise
                raise Invalid(f"{what}{key}: {exc}", True) from None
        elif spec.default is REQUIRED:
            raise Invalid(f"missing required key '{what}{key}'", True)
        else:
            out[key] = spec.default
    return out


# Keys of the network_info tables; the values are checked by agent.network.network_info, the
# same code that reads them back from the database.
VIF_KEYS = ("id", "address", "fixed_ips", "rules", "devname")
NESTED_KEYS = {"fixed_ips": ("address", "version"),
               "rules": ("protocol", "port_min", "port_max", "source_cidr", "ethertype")}


def check_keys(value: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(value, dict):
        raise Invalid(f"{what}: expected a table, got {value!r}", True)
    for key in value:
        if key not in keys:
            raise Invalid(f"unknown key '{what}.{key}'{did_you_mean(key, keys)}; known keys: "
                          f"{', '.join(keys)}", True)


def network_info_shape(value: Any) -> list:
    """The shape of network_info (arrays of tables with known keys); returned as is."""
    if not isinstance(value, list):
        raise Invalid(f"network_info: expected an array of tables, got {value!r}", True)
    for index, vif in enumerate(value):
        where = f"network_info[{index}]"
        check_keys(vif, VIF_KEYS, where)
        for sub, keys in NESTED_KEYS.items():
            items = vif.get(sub, [])
            if not isinstance(items, list):
                raise Invalid(f"{where}.{sub}: expected an array of tables, got {items!r}", True)
            for sub_index, item in enumerate(items):
                check_keys(item, keys, f"{where}.{sub}[{sub_index}]")
    return value
