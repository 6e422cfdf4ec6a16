"""The default command: run the agent until SIGTERM or SIGINT (or once, with --once)."""

from __future__ import annotations


def run(args, conf) -> int:
    raise NotImplementedError
