"""The ``drylocal`` command line: one module per command, each adding its own parser.

``serve`` runs the HTTP app (``server.app``); ``keys``/``account``, ``models``/``add``/``rm``, ``pull`` and
``gc`` work on the data folder directly; ``bench`` is a client of the API like any other.
"""

from __future__ import annotations

import argparse

from server.cli import accounts, bench, models, pull, retention, serve, worker

__all__ = ("build_parser", "main")

COMMANDS = (serve, worker, retention, accounts, models, pull, bench)
"""In the order ``drylocal --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drylocal", description="Serve the dryAPI HTTP API from your own GPU.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
