"""The README's configuration table and quick start stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def readme(root: Path) -> str:
    return (root / "README.md").read_text(encoding="utf-8")


def test_every_variable_settings_reads_is_in_the_configuration_table(readme: str, root: Path) -> None:
    source = (root / "core" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r'env(?:\.get)?\(\s*(?:env,\s*)?"([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'_(?:int|str)\(env, "([A-Z][A-Z0-9_]+)"', source))
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert len(read) > 20, "the pattern no longer finds the variables settings.py reads"
    assert read - documented == set()


def test_quick_start_is_exactly_the_two_commands(readme: str, root: Path) -> None:
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["docker compose up", "./run_tests.sh"]
    assert "./run_tests.sh" in (root / ".ci" / "run").read_text()


def test_readme_has_architecture_diagram_and_threat_model(readme: str) -> None:
    assert "```mermaid\nflowchart" in readme
    threat = readme.split("## Threat model", 1)[1].split("\n## ", 1)[0]
    for topic in ("Tenant isolation", "Keys hashed", "Limits", "Backpressure", "Input hardening", "TTLs", "TLS"):
        assert topic in threat, topic
