"""The codebase's own rules: modules stay small, and unit tests never wait on the real clock."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MAX_MODULE_LINES = 400


def packages() -> list[str]:
    """The project's packages, as the import contract names them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return config["tool"]["importlinter"]["root_packages"]


def test_no_module_is_longer_than_the_limit() -> None:
    modules = [path for package in packages() for path in (ROOT / package).rglob("*.py")]
    assert len(modules) > 50
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in modules
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"split these along a real seam: {too_long}"


def sleeps(source: str) -> list[int]:
    """Lines that call `sleep` (time.sleep, asyncio.sleep, a bare imported sleep)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "sleep":
                found.append(node.lineno)
    return found


def test_sleeps_finds_every_spelling() -> None:
    source = "import time\nfrom time import sleep\ntime.sleep(1)\nsleep(0.1)\nclock.advance(5)\n"
    assert sleeps(source) == [3, 4]


def test_unit_tests_do_not_sleep() -> None:
    unit = ROOT / "tests" / "unit"
    found = {
        str(path.relative_to(ROOT)): lines
        for path in unit.rglob("*.py")
        if (lines := sleeps(path.read_text(encoding="utf-8")))
    }
    assert not found, f"advance a clock instead of sleeping: {found}"
