"""``drylocal gc``: delete what expired now (the server does it hourly) and say what it freed."""

from __future__ import annotations

import argparse

from engine import Settings
from engine.database import open_database

__all__ = ("add_parser",)


def gc(args: argparse.Namespace) -> int:
    from engine.retention import collect

    settings = Settings.load()
    settings.ensure_dirs()
    print(f"drylocal gc: {collect(open_database(settings), settings)}")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("gc", help="delete expired results, leftover inputs and old job rows now; says what it freed")
    parser.set_defaults(func=gc)
