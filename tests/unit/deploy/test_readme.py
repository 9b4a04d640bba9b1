"""The README stays true to the code: its settings table, its commands and its routes."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any

import click
import pytest
from flask import Flask
from werkzeug.exceptions import MethodNotAllowed, NotFound

from api.app import create_app
from core.settings import Settings, SettingsError
from predictq.cli import cli

# Values that a string setting accepts, tried in turn when the variable's default gives no probe of its own.
STRING_PROBES = (
    "disabled",
    "whsec_" + base64.b64encode(b"s" * 24).decode(),
    "acme=https://hooks.example.com/p",
    "probe",
)
SAMPLE_JOB_ID = "tpdtsm-e51798962bf2ea73f88a"
SOURCE_SUFFIXES = {".py", ".sh", ".yml", ".template", ".envsh"}


@pytest.fixture(scope="module")
def readme(root: Path) -> str:
    return (root / "README.md").read_text(encoding="utf-8")


def section(readme: str, title: str) -> str:
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def table(readme: str) -> dict[str, str]:
    """Variable -> the Default cell, for every row of the configuration table."""
    rows = [line for line in section(readme, "Configuration").splitlines() if line.startswith("| `")]
    documented: dict[str, str] = {}
    for row in rows:
        names_cell, default_cell = row.split(" | ")[:2]
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", names_cell):
            documented[name] = default_cell
    return documented


def probes(default_cell: str) -> list[str]:
    """Values to set a variable to so that its setting differs from the default."""
    literal = re.fullmatch(r"`([^`]*)`", default_cell.strip())
    value = literal[1] if literal else ""
    if re.fullmatch(r"\d+", value):
        return [str(int(value) + 1)]
    if re.fullmatch(r"\d+\.\d+", value):
        return [str(float(value) + 0.01)]
    return [probe for probe in STRING_PROBES if probe != value]


def governed_fields(name: str, default_cell: str) -> set[str]:
    """The Settings fields that setting `name` (and nothing else) changes."""
    defaults = dataclasses.asdict(Settings.from_env({}))
    for value in probes(default_cell):
        try:
            changed = dataclasses.asdict(Settings.from_env({name: value}))
        except SettingsError:
            continue
        return {field for field, setting in changed.items() if setting != defaults[field]}
    return set()


@pytest.fixture(scope="module")
def governs(table: dict[str, str]) -> dict[str, set[str]]:
    return {name: governed_fields(name, default) for name, default in table.items()}


def test_every_setting_is_governed_by_exactly_one_documented_variable(governs: dict[str, set[str]]) -> None:
    fields = {field.name for field in dataclasses.fields(Settings)}
    by_field = {field: [name for name, changed in governs.items() if field in changed] for field in fields}
    assert {field: names for field, names in by_field.items() if len(names) != 1} == {}


def test_each_documented_default_is_the_settings_default(table: dict[str, str], governs: dict[str, set[str]]) -> None:
    defaults = Settings()
    wrong = {}
    for name, fields in governs.items():
        for field in fields:
            expected = getattr(defaults, field)
            literal = re.fullmatch(r"`([^`]*)`", table[name].strip())
            shown: Any = literal[1] if literal else ""  # "*(empty...)*" documents an empty default
            if isinstance(expected, (int, float)):
                shown = type(expected)(shown)
            if shown != expected:
                wrong[name] = (table[name], expected)
    assert wrong == {}


def test_documented_variables_outside_settings_are_read_by_the_code(governs: dict[str, set[str]], root: Path) -> None:
    """A documented variable that nothing reads is a typo or a leftover."""
    elsewhere = {name for name, fields in governs.items() if not fields}
    sources = [
        path
        for path in root.rglob("*")
        if (path.suffix in SOURCE_SUFFIXES or path.name == "Dockerfile")
        and path.is_file()
        and not {".venv", "tests", ".git", "node_modules"} & set(path.relative_to(root).parts)
    ]
    text = "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in sources)
    assert len(elsewhere) >= 5, "the settings probe no longer tells Settings variables from the others"
    assert {name for name in elsewhere if name not in text} == set()


def test_every_variable_named_in_the_readme_is_in_the_configuration_section(readme: str) -> None:
    """The service's variables, that is; the test command's own are in its section."""
    service_text = readme.replace(section(readme, "Tests"), "")
    named = set(re.findall(r"\b((?:PREDICTQ|REDIS)_[A-Z0-9_]*[A-Z0-9])\b", service_text))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section(readme, "Configuration")))
    assert named - documented == set()


def test_quick_start_is_exactly_the_two_commands(readme: str, root: Path) -> None:
    block = section(readme, "Quick start").split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["docker compose up", "./run_tests.sh"]
    assert "./run_tests.sh" in (root / ".ci" / "run").read_text()


def cli_uses(readme: str) -> list[tuple[str, list[str]]]:
    """Every `predictq COMMAND ...` the README shows, in code blocks and in inline code: (command, options)."""
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    lines = [line.split(" #", 1)[0] for block in blocks for line in block.splitlines()]
    lines += re.findall(r"`(predictq [^`]+)`", readme)
    uses = []
    for line in lines:
        for match in re.finditer(r"(?:^|[\s(])predictq ([a-z]+)((?: [^\s|;&]+)*)", line):
            uses.append((match[1], re.findall(r"(?:^|\s|\[)(--?[a-z][a-z-]*)", match[2])))
    return uses


def test_every_command_and_option_the_readme_shows_exists(readme: str) -> None:
    uses = cli_uses(readme)
    assert len(uses) >= 15, "the pattern no longer finds the README's commands"
    missing = []
    for name, options in uses:
        command = cli.commands.get(name)
        if command is None:
            missing.append(name)
            continue
        known = {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts}
        missing += [f"{name} {option}" for option in options if option not in known | {"-h", "--help"}]
    assert missing == []


def test_every_cli_command_is_in_the_readme(readme: str) -> None:
    shown = {name for name, _ in cli_uses(readme)}
    assert set(cli.commands) - shown == set()


@pytest.fixture(scope="module")
def app() -> Flask:
    return create_app(Settings(auth_mode="disabled"), {"TESTING": True, "RATELIMIT_STORAGE_URI": "memory://"})


def routes_shown(readme: str) -> set[tuple[str, str]]:
    """(method, path) of every route the README names (`GET /path`) and of every curl command it shows."""
    shown = set(re.findall(r"`(GET|POST|DELETE) (/[^`\s]*)`", readme))
    for line in re.findall(r"curl (?:[^\n]*\\\n)*[^\n]*", readme):
        method = "DELETE" if "-X DELETE" in line else "POST" if re.search(r" (-d|--data-binary|-F) ", line) else "GET"
        for url in re.findall(r"\$PREDICTQ_URL(/[^\s\"?']*)", line):
            shown.add((method, url))
    return shown


def test_every_route_the_readme_shows_exists(readme: str, app: Flask) -> None:
    shown = routes_shown(readme)
    assert len(shown) >= 12, "the patterns no longer find the README's routes"
    adapter = app.url_map.bind("localhost")
    missing = []
    for method, path in sorted(shown):
        try:
            adapter.match(path.replace("{id}", SAMPLE_JOB_ID).replace("$JOB", SAMPLE_JOB_ID), method=method)
        except (NotFound, MethodNotAllowed):
            missing.append(f"{method} {path}")
    assert missing == []


def test_every_api_route_is_in_the_readme(readme: str, app: Flask) -> None:
    shown = {path.replace("$JOB", "{id}") for _, path in routes_shown(readme)}
    rules = {
        re.sub(r"<[^>]+>", "{id}", rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
    }  # Flask's own static route
    rules -= {"/console/{id}", "/docs"}  # the console's own files; the contract's HTML page
    assert rules - shown == set()
