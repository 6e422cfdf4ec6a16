"""Secrets out of everything the agent prints, logs or stores.

Database URLs (and, later, messaging transport URLs such as ``rabbit://user:pass@host:5672/``)
carry passwords in two places: the user-info (``user:PASSWORD@host``) and the query string
(``?password=...``, libpq's ``&password=``, ``sslpassword``, PyMySQL's ``passwd``, tokens). Every
path that shows a URL or a message that may quote one goes through this module:

- `check_url` refuses, before anything uses it, a URL whose credentials cannot be told apart
  from its host, path or query (an unencoded '@', '/', '?', '#' or ',' in a password, blanks);
- `redact_url` shows a URL with every password replaced by ``***``;
- `redact_text` does the same inside free text (exception messages, log lines, tracebacks);
- `secrets_of` lists a URL's secret values, so that a formatter can also remove them where a
  library quoted them outside any URL.

The masking follows what oslo.utils' ``mask_password`` does for nova's logs (secret keys by
name, whatever the quoting) and what SQLAlchemy's ``URL.render_as_string(hide_password=True)``
does for the user-info, extended to the query string, which SQLAlchemy shows as written.
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import unquote, unquote_plus

MASK = "***"

# Query keys (and key=value pairs in text) whose values are secrets, matched anywhere in the
# key, any case: password, PASSWORD, sslpassword, passwd, pwd, secret, token, api_key, auth...
_SECRET_KEY = r"[\w.-]*(?:pass|pwd|secret|token|key|auth|cred)[\w.-]*"
_SECRET_KEY_RE = re.compile(_SECRET_KEY, re.IGNORECASE)
# key=value, key: value, 'key': 'value', "key"="value" in free text, for a secret key. A key
# starts only where a word starts and is matched possessively: no backtracking inside words.
_SECRET_PAIR_RE = re.compile(
    r"(?<![\w.-])(?=[\w.-]*?(?:pass|pwd|secret|token|key|auth|cred))(?P<key>[\w.-]++)"
    r"(?P<sep>['\"]?\s*[=:]\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\"}<>)\]]+)",
    re.IGNORECASE)
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "cred")  # as in _SECRET_KEY
_SCHEME_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<slashes>//)?")
# A URL inside free text: scheme:// up to a blank, a quote or a bracket.
_URL_IN_TEXT_RE = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*+://[^\s'\"<>]*")
_FORBIDDEN_IN_URL_RE = re.compile(r"[\s'\"<>\\]")
_CONTROL_IN_URL_RE = re.compile(r"[\x00-\x1f\x7f]")
_HOSTPORT_RE = re.compile(r"(?:\[[0-9A-Fa-f:.%\w]*\]|[^:\[\]]*)(?::\d*)?")
# Shorter secrets are masked only where they appear as a password (URL, key=value): masking
# every occurrence of "ab" would garble the log without protecting anything.
MIN_LITERAL_SECRET = 4


class UnsafeURL(ValueError):
    """A URL whose credentials cannot be told apart safely; the message never quotes it."""


def check_url(url: str) -> None:
    """Raise `UnsafeURL` (message without any part of `url`) unless `url` is
    ``scheme://[user[:password]@]host[:port][,...][/path][?query][#fragment]`` with every '@',
    '/', '?', '#' and ',' inside a user name or password percent-encoded, no control
    character, and no blank, quote or backslash (in the query only, for a URL without
    user-info and host such as sqlite:////path). Those are the URLs `redact_url` can show
    without any secret."""
    _split(url)


def redact_url(url: str) -> str:
    """`url` with the password of every user-info and the value of every secret query key
    replaced by ``***`` ('postgresql://u:pw@h/db?sslpassword=x' ->
    'postgresql://u:***@h/db?sslpassword=***'). A URL `check_url` refuses is shown as its
    scheme only ('postgresql+psycopg://***'), text without a scheme as ``***``."""
    try:
        scheme, authority, rest = _split(url)
    except UnsafeURL:
        match = _SCHEME_RE.match(url)
        return match.group(0) + MASK if match else MASK
    entries = []
    for entry in authority.split(","):
        userinfo, at, hostport = entry.rpartition("@")
        if at:
            user, colon, _password = userinfo.partition(":")
            entry = f"{user}:{MASK}@{hostport}" if colon else entry
        entries.append(entry)
    return scheme + ",".join(entries) + _redact_query(rest)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every one of `secrets` at least `MIN_LITERAL_SECRET` characters long replaced
    by ``***`` wherever it appears as a whole token (not inside a longer word), then every URL
    in it passed through `redact_url` and every secret ``key=value`` (``password=x``,
    ``'password': 'x'``) masked."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= MIN_LITERAL_SECRET and secret in text:
            text = _literal_re(secret).sub(MASK, text)
    if "://" in text:
        parts = _URL_IN_TEXT_RE.split(text)  # text, URL, text, URL, ..., text
        urls = _URL_IN_TEXT_RE.findall(text)
        out = [_mask_pairs_in(parts[0])]
        for url, after in zip(urls, parts[1:]):
            out += [redact_url(url), _mask_pairs_in(after)]
        text = "".join(out)
    else:
        text = _mask_pairs_in(text)
    return text


def _literal_re(secret: str) -> re.Pattern:
    """`secret` as a whole token: an edge that is a word character (letter, digit, '_') must
    not continue a longer word, so RabbitMQ's default password 'guest' is masked in 'guest:'
    or "'guest'" but not in 'guests' (a log line that speaks of guests stays readable)."""
    before = r"(?<!\w)" if re.match(r"\w", secret) else ""
    after = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return re.compile(before + re.escape(secret) + after)


def secrets_of(url: str) -> tuple[str, ...]:
    """The secret values in `url`, as written and percent-decoded: user-info passwords (but
    not one equal to its user name, which every masked URL shows anyway) and the values of
    secret query keys. For an unsafe URL, everything after the scheme."""
    try:
        _scheme, authority, rest = _split(url)
    except UnsafeURL:
        match = _SCHEME_RE.match(url)
        tail = url[match.end():] if match else url
        return tuple(v for v in {tail, unquote(tail)} if v)
    found: set[str] = set()
    for entry in authority.split(","):
        userinfo, at, _hostport = entry.rpartition("@")
        user, colon, password = userinfo.partition(":")
        # A password equal to its user name (RabbitMQ's guest:guest) is shown with every masked
        # URL already: masking that word in free text would hide nothing and garble the log.
        if at and colon and password and unquote(password) != unquote(user):
            found.update((password, unquote(password)))
    for pair in rest.partition("?")[2].split("&"):
        key, eq, value = pair.partition("=")
        if eq and value and _SECRET_KEY_RE.fullmatch(unquote(key)):
            found.update((value, unquote(value), unquote_plus(value)))
    return tuple(sorted(found))


def _split(url: str) -> tuple[str, str, str]:
    """('scheme://', authority, '/path?query#fragment') or UnsafeURL. Without an authority
    (sqlite:////path) no password can be in the path: blanks and '@' are allowed there."""
    if _CONTROL_IN_URL_RE.search(url):
        raise UnsafeURL("it contains a control character")
    match = _SCHEME_RE.match(url)
    if not match or not match.group("slashes"):
        raise UnsafeURL("it does not start with SCHEME://")
    rest = url[match.end():]
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    checked = url if authority else tail.partition("?")[2]
    if _FORBIDDEN_IN_URL_RE.search(checked):
        raise UnsafeURL("it contains a blank, a quote or a backslash")
    if "@" in (tail if authority else checked):
        raise UnsafeURL("an '@' follows the host part; write '@', '/', '?' and '#' in a user "
                        "name or password percent-encoded (%40, %2F, %3F, %23)")
    entries = authority.split(",")
    if len(entries) > 1 and "@" in authority and not all("@" in e for e in entries):
        raise UnsafeURL("a ',' in the user-info; write ',' in a user name or password as %2C")
    for entry in entries:
        userinfo, _at, hostport = entry.rpartition("@")
        if "@" in userinfo:
            raise UnsafeURL("more than one '@' before the host; write '@' in a user name or "
                            "password as %40")
        if not _HOSTPORT_RE.fullmatch(hostport):
            raise UnsafeURL("the host part is not HOST[:PORT]; write ':', ',' and '@' in a "
                            "user name or password percent-encoded (%3A, %2C, %40)")
    return match.group(0), authority, tail


def _redact_query(rest: str) -> str:
    """The query is everything after the first '?', split at '&' only (as SQLAlchemy and
    libpq read it: a '#' or ';' belongs to the value)."""
    path, question, query = rest.partition("?")
    if not question:
        return rest
    pairs = []
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        if eq and value and _SECRET_KEY_RE.fullmatch(unquote(key)):
            pair = f"{key}={MASK}"
        pairs.append(pair)
    return path + question + "&".join(pairs)


def _mask_pairs_in(text: str) -> str:
    # The pair pattern looks ahead for a secret word at every position (tens of us on a log
    # line); a line without any such word cannot match it, and substring tests tell in about
    # 1 us: every log line (an RPC operation writes two) is formatted through here.
    if "=" not in text and ":" not in text:
        return text
    lowered = text.casefold()  # as wide as re.IGNORECASE (the long s, the Kelvin sign)
    if not any(word in lowered for word in _SECRET_WORDS):
        return text
    return _SECRET_PAIR_RE.sub(_mask_pair, text)


def _mask_pair(match: re.Match) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{match.group('sep')}{quote}{MASK}{quote}"
