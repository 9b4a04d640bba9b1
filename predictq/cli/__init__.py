"""The `predictq` command line: one group, subcommands grouped by concern in sibling modules."""

from __future__ import annotations

import click

from predictq import __version__
from predictq.cli import client_commands, model_commands, service_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="predictq")
def cli() -> None:
    """predictq: score rows with the approved GLM, in-process or as queued jobs."""


for _module in (model_commands, service_commands, client_commands):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli()
