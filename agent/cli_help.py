"""How the command line presents itself: the parser class every `agent` command uses.

Three things argparse does not do on its own: help text is wrapped only at spaces (argparse also
breaks after hyphens, which split `/etc/compute-agent/agent.conf` and `force-down` across
lines); an option that a command requires although it comes from the common options
(`agent services delete --host H`) is shown as required, with the command's own help line; and
a usage error is one line saying where the help is, not the whole usage again.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from contextlib import contextmanager
from typing import Iterator, Mapping

_WHITESPACE = re.compile(r"\s+")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's default layout, wrapping lines at spaces only."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(_WHITESPACE.sub(" ", text).strip(), width,
                             break_on_hyphens=False, break_long_words=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(_WHITESPACE.sub(" ", text).strip(), width,
                             initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False, break_long_words=False)


class AgentArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser with HelpFormatter. `required_options` maps an option string the
    command requires but takes from the common options (e.g. '--host') to the help line it has
    in this command; usage and help show it without brackets. The command itself checks that
    it was given (it may come before or after the command's name)."""

    def __init__(self, *args, required_options: Mapping[str, str] | None = None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.required_options = dict(required_options or {})

    def error(self, message: str):
        """A usage error on one line, saying where the help is, instead of the whole usage
        (exit status 2, as argparse's)."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def format_usage(self) -> str:
        with self._shown_required():
            return super().format_usage()

    def format_help(self) -> str:
        with self._shown_required():
            return super().format_help()

    @contextmanager
    def _shown_required(self) -> Iterator[None]:
        # The common options' actions are shared by every parser: changed only while this
        # parser formats its text, and put back at once.
        saved = []
        for action in self._actions:
            help_line = next((self.required_options[o] for o in action.option_strings
                              if o in self.required_options), None)
            if help_line is not None:
                saved.append((action, action.required, action.help))
                action.required, action.help = True, help_line
        try:
            yield
        finally:
            for action, required, help_line in saved:
                action.required, action.help = required, help_line
