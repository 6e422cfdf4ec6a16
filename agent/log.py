"""Logging: one line format with time, pid, level, module and the request id of the job run.

A request id (`req-<uuid>`) is new for every job run (start-up, each beat, each audit), so one
grep follows one operation across modules. It lives in a context variable: each thread and each
run sets its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import uuid
from typing import Iterator

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


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


def setup_logging(debug: bool = False, log_file: str | None = None) -> None:
    """Configure the root logger once: stderr (the journal under systemd) or `log_file`."""
    handler: logging.Handler
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # Libraries speak only when something is wrong, unless asked.
    for noisy in ("apscheduler", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
