"""The sample config is generated from the option declarations; the shipped copy must not
drift, and the sample itself must load."""

from __future__ import annotations

import pathlib
import re

from agent.cli import main
from agent.config import load_config
from agent.options import OPTIONS
from agent.sample_config import render_sample

SHIPPED = pathlib.Path(__file__).resolve().parents[2] / "etc" / "agent.conf.sample"


def test_shipped_sample_matches_declarations():
    assert SHIPPED.read_text() == render_sample(), (
        "etc/agent.conf.sample is out of date: regenerate it with "
        "'agent config sample > etc/agent.conf.sample'")


def test_every_option_appears_with_its_help():
    sample = render_sample()
    for opt in OPTIONS:
        assert re.search(rf"^#{re.escape(opt.name)} =", sample, re.M), opt.name
        # The whole help text, as the comment block above the option.
        comment = " ".join(line[2:] for line in _block_of(sample, opt.name)
                           if line.startswith("# ") and not line.startswith("# (type: "))
        assert opt.help in comment, opt.name


def test_sample_loads_and_uncommented_defaults_are_valid(tmp_path):
    uncommented = re.sub(r"^#(\w+ = .+)$", r"\1", render_sample(), flags=re.M)
    path = tmp_path / "agent.conf"
    path.write_text(uncommented)
    conf = load_config(str(path))
    assert conf.report_interval == 10
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    # Every uncommented value is the default it documents.
    assert dict(conf.values) == dict(load_config(str(empty)).values)


def test_config_sample_command_prints_it(capsys):
    assert main(["config", "sample"]) == 0
    assert capsys.readouterr().out == render_sample()


def _block_of(sample: str, name: str) -> list[str]:
    """The comment lines between the previous option (or section header) and `#name = `."""
    lines = sample.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith(f"#{name} ="))
    start = end
    while start > 0 and lines[start - 1].startswith("# "):
        start -= 1
    return lines[start:end]
