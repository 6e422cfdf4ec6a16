"""Loading the configuration: INI file, then command-line overrides, validated against
`agent.options`.

Every problem raises `ConfigError` with one line naming the file (and line), section, key and
value, and what was expected. The result is an immutable `Config`; nothing here is global.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from agent.values import BadValue, number_text, shown, text as plain_text
from agent.errors import ConfigError
from agent.options import OPTIONS, SECTIONS, Opt, Resolved
from agent.redact import UnsafeURL, check_url, redact_text, redact_url, secrets_of

DEFAULT_CONFIG_FILE = "/etc/compute-agent/agent.conf"

_SECTION_RE = re.compile(r"^\[(?P<name>[^\]]*)\]\s*$")
_KEY_RE = re.compile(r"^(?P<key>[A-Za-z0-9_.-]+)\s*[=:]\s*(?P<value>.*)$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class RawValue:
    """A value as written, with where it was written (for error messages)."""

    text: str
    origin: str  # "agent.conf:12" or "--host"


@dataclass(frozen=True)
class Config:
    """Resolved option values. `conf.report_interval` reads [DEFAULT]; `conf.database.connection`
    reads a section. `warnings` holds adjustments made while loading, logged once logging is up.
    """

    values: Mapping[tuple[str, str], Any]
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    # Where each value that was set came from ("agent.conf:12", "--db"); defaults are absent.
    origins: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def get(self, section: str, name: str) -> Any:
        return self.values[(section, name)]

    def __getattr__(self, name: str) -> Any:
        if name in SECTIONS and name != "DEFAULT":
            return _Section(self, name)
        try:
            return self.values[("DEFAULT", name)]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **defaults: Any) -> "Config":
        """A copy with some [DEFAULT] values replaced (already typed), e.g. a fleet agent's
        host."""
        values = dict(self.values)
        for name, value in defaults.items():
            if ("DEFAULT", name) not in values:
                raise KeyError(name)
            values[("DEFAULT", name)] = value
        return Config(MappingProxyType(values), self.files, self.warnings, self.origins)

    def where(self, section: str, name: str) -> str:
        """'FILE:LINE: [section] name' or '--flag: [section] name' for a value that was set,
        '[section] name' for a default: the start of an error message about the value."""
        origin = self.origins.get((section, name))
        return f"{origin}: [{section}] {name}" if origin else f"[{section}] {name}"

    def secrets(self) -> tuple[str, ...]:
        """The secret values in the secret options (URL passwords), for log redaction."""
        found: set[str] = set()
        for opt in OPTIONS:
            value = self.values.get(opt.key)
            if opt.secret and isinstance(value, str):
                found.update(secrets_of(value))
        return tuple(sorted(found))


class _Section:
    def __init__(self, conf: Config, section: str):
        self._conf = conf
        self._section = section

    def __getattr__(self, name: str) -> Any:
        try:
            return self._conf.values[(self._section, name)]
        except KeyError:
            raise AttributeError(f"[{self._section}] {name}") from None


def read_ini(path: str) -> dict[tuple[str, str], RawValue]:
    """Parse an INI file into {(section, key): RawValue}; structural problems are ConfigErrors."""
    try:
        # utf-8-sig: a byte order mark at the top (as some editors write) is not part of the
        # first line.
        with open(path, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    raw: dict[tuple[str, str], RawValue] = {}
    section: str | None = None
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        match = _SECTION_RE.match(stripped)
        if match:
            section = match.group("name").strip()
            if section not in SECTIONS:
                raise ConfigError(f"{where}: unknown section [{section}]"
                                  f"{did_you_mean(section, SECTIONS)}; known sections: "
                                  f"{', '.join(SECTIONS)}")
            continue
        if line[:1].isspace():
            raise ConfigError(f"{where}: indented line {stripped!r}: continuation lines are not "
                              "supported; write the value on one line")
        match = _KEY_RE.match(stripped)
        if not match:
            raise ConfigError(f"{where}: cannot parse {stripped!r}: expected 'key = value' or "
                              "'[section]'")
        if section is None:
            raise ConfigError(f"{where}: {match.group('key')!r} comes before any [section] "
                              "header; put it under [DEFAULT]")
        key = match.group("key")
        if (section, key) in raw:
            raise ConfigError(f"{where}: [{section}] {key} is set twice (first at "
                              f"{raw[(section, key)].origin})")
        raw[(section, key)] = RawValue(match.group("value").strip(), where)
    return raw


def load_config(path: str | None = None,
                overrides: Mapping[tuple[str, str], str | RawValue] | None = None) -> Config:
    """Load `path` (or the default file if it exists) and apply `overrides`, keyed by
    (section, name): strings as typed, or RawValues that name the flag they came from."""
    files: tuple[str, ...] = ()
    raw: dict[tuple[str, str], RawValue] = {}
    if path is None and os.path.exists(DEFAULT_CONFIG_FILE):
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        raw = read_ini(path)
        files = (path,)
    for (section, name), value in (overrides or {}).items():
        if not isinstance(value, RawValue):
            value = RawValue(value, f"override [{section}] {name}")
        raw[(section, name)] = value
    return resolve(raw, files)


def resolve(raw: Mapping[tuple[str, str], RawValue], files: Iterable[str] = ()) -> Config:
    known = {opt.key: opt for opt in OPTIONS}
    for (section, name), value in raw.items():
        if (section, name) not in known:
            names = [o.name for o in OPTIONS if o.section == section]
            raise ConfigError(f"{value.origin}: unknown key {name!r} in [{section}]"
                              f"{did_you_mean(name, names)}")
    values: dict[tuple[str, str], Any] = {}
    for opt in OPTIONS:
        if opt.key in raw:
            values[opt.key] = parse_value(opt, raw[opt.key])
        elif opt.derive is not None:
            values[opt.key] = opt.derive(Resolved(values))
        else:
            values[opt.key] = opt.default
    warnings = []
    interval = values[("DEFAULT", "report_interval")]
    down_time = values[("DEFAULT", "service_down_time")]
    if down_time <= interval:
        raised = int(2.5 * interval)
        warnings.append(f"service_down_time ({down_time} s) is not larger than report_interval "
                        f"({interval} s): using {raised} s so that one late beat does not show "
                        "the service down")
        values[("DEFAULT", "service_down_time")] = raised
    origins = {key: value.origin for key, value in raw.items()}
    return Config(MappingProxyType(values), tuple(files), tuple(warnings),
                  MappingProxyType(origins))


def parse_value(opt: Opt, raw: RawValue) -> Any:
    """Convert one raw value to the option's type, enforcing range, choices and the option's
    `check` (a rule of `agent.values`). Every refusal is one ConfigError naming where, key,
    value and what was expected."""
    text = raw.text
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if opt.secret and text:
        try:
            check_url(text)
        except UnsafeURL as exc:
            raise ConfigError(f"{raw.origin}: [{opt.section}] {opt.name} (value not shown): "
                              f"not a URL whose password can be kept out of logs: {exc}"
                              ) from None
    try:
        value = _typed(opt, plain_text(text, max_length=None, empty=True))
        if opt.check is not None and value is not None:
            value = opt.check(value)
    except BadValue as exc:
        raise ConfigError(f"{raw.origin}: [{opt.section}] {opt.name} = "
                          f"{shown(display(opt, text))}: {exc}") from None
    return value


def _typed(opt: Opt, text: str) -> Any:
    if text == "" and (opt.optional or (opt.type in ("str", "list") and not opt.choices)):
        return None if opt.optional else ([] if opt.type == "list" else "")
    if opt.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise BadValue("true or false")
    if opt.type in ("int", "float"):
        try:
            value: Any = int(text) if opt.type == "int" else float(text)
        except ValueError:
            raise BadValue("an integer" if opt.type == "int" else "a number") from None
        if not math.isfinite(value):
            raise BadValue(f"a finite number {_range(opt)}")
        if (opt.min is not None and value < opt.min) or (opt.max is not None and value > opt.max):
            raise BadValue(f"a value {_range(opt)}")
        return value
    if opt.type == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if opt.type == "path":
        if not text:
            raise BadValue("a path")
        return os.path.abspath(os.path.expanduser(text))
    if opt.choices is not None and text not in opt.choices:
        raise BadValue("one of " + ", ".join(opt.choices) + did_you_mean(text, opt.choices))
    return text


def display(opt: Opt | None, value: Any) -> str:
    """A value as it may be printed: secrets (passwords in URLs) masked."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    text = str(value)
    if opt is not None and opt.secret:
        return redact_url(text)
    return text


def short_reason(exc: BaseException | None) -> str:
    """One line saying why `exc` happened: the first line of the database driver's message
    when there is one, passwords removed (`agent.redact.redact_text`)."""
    if exc is None:
        return "unknown error"
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip() or type(exc).__name__
    return redact_text(text.splitlines()[0])


def _range(opt: Opt) -> str:
    if opt.min is None and opt.max is None:
        return ""
    unit = f" {opt.unit}" if opt.unit else ""
    if opt.min is not None and opt.max is not None:
        return f"from {_num(opt.min)} to {_num(opt.max)}{unit}"
    if opt.min is not None:
        return f"of at least {_num(opt.min)}{unit}"
    return f"of at most {_num(opt.max)}{unit}"


def _num(value: float | None) -> str:
    return str(value) if value is None else number_text(value)


def did_you_mean(word: object, candidates: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or '' when none is close."""
    close = difflib.get_close_matches(str(word), list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
