"""`predictq` subcommands: client."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
