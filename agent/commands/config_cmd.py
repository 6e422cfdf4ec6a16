"""`agent config sample`: print the sample configuration generated from the declarations."""

from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("config", help="configuration helpers", parents=[common],
                                   description="Configuration helpers.")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    sample = sub.add_parser("sample", parents=[common],
                            help="print a sample config with every option, its default and help")
    sample.set_defaults(func=run_sample)


def run_sample(args, conf) -> int:
    from agent.sample_config import render_sample

    print(render_sample(), end="")
    return 0
