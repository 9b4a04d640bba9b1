"""The `predictq` entry point: every command its modules declare is registered once, under its own name, and the
version it reports is the package's."""

from __future__ import annotations

from click.testing import CliRunner

from predictq import __version__
from predictq.cli import cli, client_commands, model_commands, service_commands


def test_every_declared_command_is_registered_once() -> None:
    declared = [c.name for m in (model_commands, service_commands, client_commands) for c in m.COMMANDS]
    assert len(declared) == len(set(declared)), "two modules declare a command of the same name"
    assert sorted(cli.commands) == sorted(declared)


def test_the_version_shown_is_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["predictq,", "version", __version__]
