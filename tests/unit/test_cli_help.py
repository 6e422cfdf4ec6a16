"""`agent --help` and every command's help: no word (a path, an option, a command name) is
broken at a hyphen across lines, and an option a command requires is shown as required."""

from __future__ import annotations

import argparse
import re

import pytest

from agent.cli import build_parser, main

# A word split after a hyphen at the end of a line: "/etc/compute-" then "agent/agent.conf".
BROKEN_AT_HYPHEN = re.compile(r"\w-\n\s*\w")


def all_parsers(parser: argparse.ArgumentParser, path=("agent",)):
    """(command path, parser) for `parser` and every subcommand under it."""
    yield path, parser
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_parsers(sub, (*path, name))


PARSERS = list(all_parsers(build_parser()))


def test_every_command_is_covered():
    names = {" ".join(path) for path, _ in PARSERS}
    assert {"agent", "agent services delete", "agent db seed", "agent evacuate",
            "agent fleet", "agent config sample"} <= names


@pytest.mark.parametrize("columns", ["60", "80", "132"])
@pytest.mark.parametrize("path, parser", PARSERS, ids=[" ".join(p) for p, _ in PARSERS])
def test_help_never_breaks_a_word_at_a_hyphen(monkeypatch, columns, path, parser):
    monkeypatch.setenv("COLUMNS", columns)
    text = parser.format_help()
    assert BROKEN_AT_HYPHEN.search(text) is None, text
    if path == ("agent",):
        assert "/etc/compute-agent/agent.conf" in text


REQUIRES_HOST = [("services", "enable"), ("services", "disable"), ("services", "force-down"),
                 ("services", "delete"), ("evacuate", "--to", "compute-2")]


@pytest.mark.parametrize("argv", REQUIRES_HOST, ids=[" ".join(a[:2]) for a in REQUIRES_HOST])
def test_a_required_host_is_shown_required_and_is_required(tmp_path, capsys, argv):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    usage = capsys.readouterr().out
    assert " --host NAME" in usage and "[--host NAME]" not in usage
    status = main([*argv, "--db", f"sqlite:///{tmp_path}/agent.sqlite"])
    assert status != 0
    assert "--host is required" in capsys.readouterr().err


def test_host_stays_optional_where_it_is(capsys):
    parser = build_parser()
    for _path, sub in all_parsers(parser):
        sub.format_help()  # formatting a command that requires --host changes nothing else
    for argv in (["--help"], ["services", "list", "--help"], ["db", "seed", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "[--host NAME]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, says", [
    (["server", "create"], "--host H considers only host H"),
    (["server", "list"], "--host H shows only host H's"),
    (["services", "list"], "--host H shows only host H's"),
])
def test_a_command_that_filters_by_host_says_so(capsys, argv, says):
    """The common --host reads "this host's name"; a command where it names the host to act
    on or list says what it does there."""
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    assert says in " ".join(capsys.readouterr().out.split())
