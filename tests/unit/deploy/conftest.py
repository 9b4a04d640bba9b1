"""The deployment files, parsed once per test."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_PATH = ROOT / "docker-compose.yml"
SCHEMA_PATH = ROOT / "tests" / "data" / "compose-spec.json"
# ${NAME}, ${NAME:-default} and ${NAME-default}, as compose interpolates them.
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Resolve compose's ${VAR} and ${VAR:-default} throughout a parsed document."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, str):
        return INTERPOLATION.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), value)
    return value


@pytest.fixture(scope="session")
def compose_variables(compose_text: str) -> set[str]:
    """Every variable name the compose file interpolates."""
    return {m["name"] for m in INTERPOLATION.finditer(compose_text)}


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    """NAME=value pairs of .env.example (comments skipped)."""
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip(): value for name, value in pairs}


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def compose_text() -> str:
    return COMPOSE_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def compose_raw(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file with defaults filled in and no host environment leaking in."""
    return interpolate(compose_raw, {})


@pytest.fixture(scope="session")
def compose_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
