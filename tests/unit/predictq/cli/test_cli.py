"""The `predictq` entry point: every subcommand answers --help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from predictq.cli import cli


def test_top_level_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for name in cli.commands:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(cli.commands) or ["--version"])
def test_each_subcommand_has_help(name: str) -> None:
    args = [name, "--help"] if name in cli.commands else [name]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
