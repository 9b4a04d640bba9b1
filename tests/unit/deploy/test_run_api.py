"""run_api.sh: finds Docker Compose, writes a first .env with a fresh key, passes its arguments to `compose up`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

FAKE_DOCKER = """#!/usr/bin/env bash
# Stands in for the docker CLI: answers `compose version`, records every other call.
if [ "$1 $2" = "compose version" ]; then echo "Docker Compose version v2"; exit 0; fi
echo "$@" >> "$(dirname "$0")/calls.txt"
"""


@pytest.fixture
def project(tmp_path: Path, root: Path) -> Path:
    """A copy of the script and .env.example in an empty folder (the real checkout's .env stays untouched)."""
    for name in ("run_api.sh", ".env.example"):
        shutil.copy2(root / name, tmp_path / name)
    return tmp_path


def run(project: Path, path_dirs: list[Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"])}
    return subprocess.run(
        ["bash", str(project / "run_api.sh"), *args], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def fake_docker(folder: Path) -> Path:
    folder.mkdir()
    docker = folder / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return folder


def test_first_run_writes_env_with_a_fresh_key_and_starts_compose(project: Path, tmp_path: Path) -> None:
    bin_dir = fake_docker(tmp_path / "bin")
    result = run(project, [bin_dir], "-d", "--scale", "worker=2")
    assert result.returncode == 0, result.stderr
    assert (bin_dir / "calls.txt").read_text().splitlines() == ["compose up --build -d --scale worker=2"]
    env_file = project / ".env"
    keys = [line for line in env_file.read_text().splitlines() if line.startswith("PREDICTQ_API_KEYS=")]
    assert len(keys) == 1
    key, tenant = keys[0].split("=", 1)[1].rsplit(":", 1)
    assert tenant == "default" and len(key) >= 40 and key != "change-me-to-a-long-random-key"
    assert key in result.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    again = run(project, [bin_dir])
    assert again.returncode == 0
    assert env_file.read_text().count(key) == 1, "an existing .env is kept"


def test_without_compose_it_says_so(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(project, [empty])
    if shutil.which("docker-compose", path="/usr/bin:/bin"):
        pytest.skip("a docker-compose binary is installed in /usr/bin")
    assert result.returncode == 1
    assert "Docker Compose not found" in result.stderr
    assert not (project / ".env").exists()
