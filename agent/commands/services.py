"""`agent services ...`: the operator's view of the service registry."""

from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("services", help="list and manage registered services",
                                   parents=[common])
    parser.add_subparsers(dest="services_command", metavar="ACTION", required=True)
