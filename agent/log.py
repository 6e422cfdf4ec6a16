"""Logging: one line format with time, pid, level, module and the request id of the job run.

A request id (`req-<uuid>`) is new for every job run (start-up, each beat, each audit), so one
grep follows one operation across modules. It lives in a context variable: each thread and each
run sets its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import uuid
from typing import Iterable, Iterator

from agent.errors import ConfigError
from agent.files import open_append
from agent.redact import redact_text

FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [%(request_id)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def current_request_id() -> str:
    return _request_id.get()


@contextlib.contextmanager
def request_context(request_id: str | None = None) -> Iterator[str]:
    """Stamp every log line inside the block with a (new) request id."""
    rid = request_id or new_request_id()
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


def caller_request_id(request_id: str, global_request_id: str | None = None,
                      user_id: str | None = None, project_id: str | None = None) -> str:
    """The request-id field of an operation sent by another service, as nova-compute logs it
    (logging_context_format_string): '<global_request_id> <request_id> <user> <project>', '-'
    for what the caller did not send. A grep for either id finds every line."""
    return " ".join(value or "-" for value in (global_request_id, request_id, user_id,
                                               project_id))


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class RedactingFormatter(logging.Formatter):
    """The agent's line format, with passwords removed from the whole line, traceback included
    (`agent.redact.redact_text`): URLs and key=value pairs by their form, and the configured
    secrets wherever a library quoted them."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__(FORMAT, DATE_FORMAT)
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record), self._secrets)


class PrivateFileHandler(logging.StreamHandler):
    """Appends to a log file created with mode 0640 (`agent.files`), never through a symbolic
    link planted at its name."""

    def __init__(self, path: str, where: str = "[DEFAULT] log_file"):
        try:
            fd = open_append(path)
        except OSError as exc:
            why = "a symbolic link, not followed" if os.path.islink(path) else exc.strerror
            raise ConfigError(f"{where} = {path!r}: cannot open it for appending: "
                              f"{why}") from None
        super().__init__(os.fdopen(fd, "a", encoding="utf-8"))

    def close(self) -> None:
        try:
            self.flush()
            self.stream.close()
        finally:
            super().close()


def setup_logging(debug: bool = False, log_file: str | None = None,
                  secrets: Iterable[str] = (), where: str = "[DEFAULT] log_file") -> None:
    """Configure the root logger once: stderr (the journal under systemd) or `log_file`.
    Every line goes through `RedactingFormatter` with `secrets` (`Config.secrets()`). A log file
    that cannot be opened is a ConfigError naming it after `where` (`Config.where`: the file
    and line, or the flag, that set it)."""
    handler: logging.Handler
    handler = (PrivateFileHandler(log_file, where) if log_file
               else logging.StreamHandler(sys.stderr))
    handler.setFormatter(RedactingFormatter(secrets))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # Libraries speak only when something is wrong, unless asked.
    for noisy in ("apscheduler", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
