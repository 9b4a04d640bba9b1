"""The compose stack seen from the host: compose and engine commands, health, the predictq CLI, figures.

The engine and compose command come from the environment: PREDICTQ_CONTAINER_ENGINE (`podman` or `docker`) and
PREDICTQ_COMPOSE (e.g. `podman-compose` or `docker compose`); deploy/container-test.sh sets both.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
# What `compose up` starts: every service outside a profile.
SERVICES = sorted(name for name, service in COMPOSE_FILE["services"].items() if "profiles" not in service)
ENGINE = os.environ.get("PREDICTQ_CONTAINER_ENGINE", "")
COMPOSE = shlex.split(os.environ.get("PREDICTQ_COMPOSE", ""))
PROJECT = "predictq"
HEALTHY_WITHIN_SECONDS = 180
# Chunks small enough that one 100,000-row job spreads over every worker (a 5,000-row chunk scores in about 0.1 s);
# time limits short enough that chunks a killed worker held come back within a test: the reaper requeues a started
# chunk once its lease went PREDICTQ_CHUNK_LEASE_SECONDS without renewal, the broker redelivers a prefetched one
# after PREDICTQ_TASK_TIME_LIMIT + 60 s (the visibility timeout).
STACK_SETTINGS = {
    "PREDICTQ_CHUNK_ROWS": "5000",
    "PREDICTQ_CHUNK_BYTES": "4194304",  # about 23 ranges of the 100,000-row file: work for both workers
    "PREDICTQ_TASK_SOFT_TIME_LIMIT": "10",
    "PREDICTQ_TASK_TIME_LIMIT": "15",
    "PREDICTQ_REAPER_INTERVAL_SECONDS": "5",
    "PREDICTQ_CHUNK_LEASE_SECONDS": "20",
}

# Figures the tests record, printed at the end of the run: (what, value).
FIGURES: list[tuple[str, str]] = []


def record(what: str, value: Any) -> None:
    """Keep a figure for the summary at the end of the run."""
    FIGURES.append((what, str(value)))


class Stack:
    """docker-compose.yml run by the compose command, and its containers seen through the engine."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.url = f"http://127.0.0.1:{port}"

    def compose(self, *args: str, timeout: float = 600) -> str:
        """Run a compose command in the repository; fail the test with its output if it fails."""
        done = subprocess.run([*COMPOSE, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def engine(self, *args: str, check: bool = True) -> str:
        done = subprocess.run([ENGINE, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 or not check, f"{ENGINE} {shlex.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout.strip()

    def containers(self, service: str, *, every: bool = False) -> list[str]:
        """Names of the service's containers (running ones unless every), sorted."""
        names = self.engine("ps", *(["-a"] if every else []), "--format", "{{.Names}}",
                            "--filter", f"label=com.docker.compose.project={PROJECT}",
                            "--filter", f"label=com.docker.compose.service={service}")
        return sorted(names.split())

    def inspect(self, name: str, template: str) -> str:
        return self.engine("inspect", "--format", template, name)

    def logs(self, name: str) -> str:
        done = subprocess.run([ENGINE, "logs", name], env=self.env, capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def health(self, name: str) -> str:
        """The container's health status; podman without systemd runs no healthcheck timers, so run it here.

        `podman healthcheck run` runs the check the image or compose file defines, as the timer would, and
        records its result in the status that `inspect` shows.
        """
        if ENGINE == "podman":
            self.engine("healthcheck", "run", name, check=False)
        return self.inspect(name, "{{.State.Health.Status}}")

    def wait_healthy(self, services: dict[str, int] | None = None, workers: int = 1) -> float:
        """Wait until each service (default: all, with `workers` workers) has its number of running, healthy
        containers; return the seconds it took."""
        services = services or {name: workers if name == "worker" else 1 for name in SERVICES}
        start = time.monotonic()
        deadline = start + HEALTHY_WITHIN_SECONDS
        passed: set[str] = set()
        while True:
            unhealthy = {}
            for service, count in services.items():
                names = self.containers(service)
                states = {name: "healthy" if name in passed else self.health(name) for name in names}
                passed |= {name for name, state in states.items() if state == "healthy"}
                if len(names) != count or set(states.values()) != {"healthy"}:
                    unhealthy[service] = states
            if not unhealthy:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                logs = "\n".join(self.logs(name)[-3000:] for service in unhealthy for name in self.containers(service))
                pytest.fail(f"not healthy after {HEALTHY_WITHIN_SECONDS}s: {unhealthy}\n{logs}")
            time.sleep(1)

    def get(self, path: str, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.get(self.url + path, headers=headers, timeout=30, **kwargs)


def stack_env(port: int) -> dict[str, str]:
    """The host environment less any predictq setting, plus the test stack's settings and published port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREDICTQ_", "REDIS_", "API_"))}
    # A developer's .env must not change the stack under test: every variable it could set is set here.
    return env | STACK_SETTINGS | {
        "PREDICTQ_API_KEYS": "",
        "PREDICTQ_AUTH": "required",
        "PREDICTQ_PORT": str(port),
        "API_PUBLISH_ADDRESS": "127.0.0.1",
    }




def cli(*args: str, stack: Stack, key: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the host's predictq command against the stack; fail the test with its output if it fails."""
    env = {**os.environ, "PREDICTQ_URL": stack.url, "PREDICTQ_API_KEY": key}
    command = [str(Path(sys.executable).with_name("predictq")), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done
