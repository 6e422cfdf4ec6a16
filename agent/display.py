"""Text for people: table cells that cannot break a row or hide a character, columns of a
readable width, counted nouns and versions as operators write them.

Pure functions; the commands that print tables and the log lines that count things use them.
JSON output never goes through here: it keeps every value whole.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Iterable, Mapping, Sequence

ELLIPSIS = "..."
# A column wider than this is cut (at a word boundary where one is near) and ends in ELLIPSIS.
MAX_COLUMN_WIDTH = 40

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters that reorder the text displayed around them (bidirectional overrides and
# isolates): shown escaped, so a cell always reads as what it holds.
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


def escape(text: str) -> str:
    """`text` with every control character written as an escape (newline as `\\n`, ESC as
    `\\x1b`, U+2028 as `\\u2028`, ...), so that a value cannot split a row, move the cursor or
    reorder its neighbours. A backslash stays as it is."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def clip(text: str, width: int = MAX_COLUMN_WIDTH) -> str:
    """`text` if it fits in `width` characters; otherwise its start, cut after a whole word when
    a word boundary lies in the last third, followed by ELLIPSIS, `width` characters at most."""
    if len(text) <= width:
        return text
    room = max(width - len(ELLIPSIS), 1)
    head = text[:room]
    if not text[room].isspace():
        space = head.rfind(" ")
        if space >= room * 2 // 3:
            head = head[:space]
    return head.rstrip(" ,;:") + ELLIPSIS


def cell(value, width: int = MAX_COLUMN_WIDTH) -> str:
    """A value as one table cell: None as '-', control characters escaped, at most `width`
    characters."""
    return "-" if value is None else clip(escape(str(value)), width)


def grid(header: Sequence[str], rows: Iterable[Sequence], *,
         widths: Mapping[str, int] | None = None, default_width: int = MAX_COLUMN_WIDTH) -> str:
    """A left-aligned table, two spaces between columns, one line per row, newline-terminated.
    Every cell goes through `cell` with the column's width from `widths` (by header) or
    `default_width`."""
    limits = [(widths or {}).get(name, default_width) for name in header]
    table = [[cell(name, limit) for name, limit in zip(header, limits)]]
    table += [[cell(value, limit) for value, limit in zip(row, limits)] for row in rows]
    sizes = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(line, sizes)).rstrip() + "\n"
                   for line in table)


def pairs(rows: Sequence[tuple[str, object]]) -> str:
    """name/value lines, the values aligned; values are escaped but kept whole. An unset value
    (None) is '-', a mapping or list its JSON (as `--format json` writes it), never Python's
    'None' or repr."""
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {escape(_value_text(value))}\n" for name, value in rows)


def _value_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """'1 guest', '2 guests', '0 guests'; `plural_form` for nouns not made with -s."""
    return f"{count:,} {singular if count == 1 else plural_form or singular + 's'}"


def version_text(version: int | str | None) -> str | None:
    """A hypervisor version for people: libvirt's packed number (major * 1,000,000 +
    minor * 1,000 + release, as nova stores `hypervisor_version`) as 'major.minor.release'
    (7002022 -> '7.2.22'); text is returned as it is, None stays None."""
    if isinstance(version, bool) or not isinstance(version, int):
        return version
    return f"{version // 1_000_000}.{version // 1_000 % 1_000}.{version % 1_000}"
