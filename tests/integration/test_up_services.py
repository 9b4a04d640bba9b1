"""Every command the image and docker-compose.yml run, run here: `predictq serve`, `predictq worker` and each probe."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from predictq.localredis import free_port
from predictq.stack import Child

PREDICTQ = [sys.executable, "-c", "from predictq.cli import main; main()"]
PROBE = [sys.executable, "-m", "predictq.healthcheck"]
ROOT = Path(__file__).resolve().parents[2]


def probe(role: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROBE, role], env=env, capture_output=True, text=True, timeout=60, check=False)


def wait_for_probe(role: str, env: dict[str, str], child: Child, timeout: float = 60) -> str:
    """Run the probe until it passes (the service is starting); fail with the service's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.alive(), child.log_tail()
        result = probe(role, env)
        if result.returncode == 0:
            return result.stdout
        time.sleep(0.5)
    raise AssertionError(f"{role} probe never passed:\n{result.stderr}\n{child.log_tail()}")


@pytest.fixture
def service_env(redis_url: str) -> dict[str, str]:
    """The container's environment, pointed at the test Redis, with a key so the API can start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTQ_")}
    return {**env, "REDIS_URL": redis_url, "PREDICTQ_API_KEYS": "probe-key:probe", "PREDICTQ_API_WORKERS": "1"}


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Child]]:
    """Children started by a test, stopped (whole process group) afterwards."""
    children: list[Child] = []
    yield children
    for child in children:
        child.terminate()
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=30)  # type: ignore[union-attr]
        child.kill_group()


def test_serve_answers_the_api_probe(service_env: dict[str, str], started: list[Child], tmp_path: Path) -> None:
    port = free_port()
    env = {**service_env, "PREDICTQ_PORT": str(port)}
    # As in the container: `predictq serve` with the port from the environment and gunicorn's config module.
    api = Child("api", [*PREDICTQ, "serve"], tmp_path / "api.log")
    api.start(env)
    started.append(api)
    assert f"127.0.0.1:{port}/healthz answered 200" in wait_for_probe("api", env, api)
    assert f"Listening at: http://0.0.0.0:{port}" in api.log_tail(50)
    assert "Using worker: predictq.gunicorn_edge.JsonErrorWorker" in api.log_tail(50)


def test_worker_answers_the_worker_probe(service_env: dict[str, str], started: list[Child], tmp_path: Path) -> None:
    env = {**service_env, "PREDICTQ_WORKER_CONCURRENCY": "1"}
    worker = Child("worker", [*PREDICTQ, "worker"], tmp_path / "worker.log")
    worker.start(env)
    started.append(worker)
    assert "answered" in wait_for_probe("worker", env, worker, timeout=90)
    assert "concurrency: 1 (prefork)" in worker.log_tail(60)


def test_flower_command_from_compose_serves(redis_url: str, started: list[Child], tmp_path: Path) -> None:
    """The flower service's command, with the compose broker URL swapped for the test Redis, serves /healthcheck."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = list(compose["services"]["flower"]["command"])
    assert command[0] == "celery"
    port = free_port()
    swapped = {"--broker": f"--broker={redis_url}", "--port": f"--port={port}"}
    command = [swapped.get(arg.split("=", 1)[0], arg) for arg in command[1:]]
    flower = Child("flower", [sys.executable, "-m", "celery", *command, "--address=127.0.0.1"], tmp_path / "flower.log")
    flower.start(dict(os.environ))
    started.append(flower)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert flower.alive(), flower.log_tail()
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2).text == "OK":
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"flower never answered:\n{flower.log_tail()}")


def test_worker_probe_fails_when_no_worker_runs(service_env: dict[str, str]) -> None:
    result = probe("worker", {**service_env, "PREDICTQ_WORKER_NODE": "predictq@nowhere"})
    assert result.returncode == 1
    assert "did not answer a ping" in result.stderr


def test_redis_probe(service_env: dict[str, str]) -> None:
    assert probe("redis", service_env).returncode == 0
    dead = {**service_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    assert probe("redis", dead).returncode == 1


def test_model_probe_verifies_the_shipped_artifact(service_env: dict[str, str]) -> None:
    """The image build runs this probe; it must load the approved model and name its checksum."""
    result = probe("model", service_env)
    assert result.returncode == 0, result.stderr
    assert "sha256" in result.stdout and "verified" in result.stdout


def test_model_probe_fails_on_a_bad_artifact(service_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "model.json"
    bad.write_text('{"not": "a model"}')
    result = probe("model", {**service_env, "PREDICTQ_MODEL_PATH": str(bad)})
    assert result.returncode == 1
    assert "unhealthy" in result.stderr


def test_child_group_is_emptied_including_grandchildren(tmp_path: Path) -> None:
    """`predictq up` relies on this: killing a child's group also ends what the child started."""
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    child = Child("sleeper", [sys.executable, "-c", script], tmp_path / "sleeper.log")
    child.start({})
    time.sleep(0.5)
    assert child.group_alive()
    child.kill_group()
    assert not child.alive()
    deadline = time.monotonic() + 10
    while child.group_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not child.group_alive()
