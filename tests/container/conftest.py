"""The compose stack in real containers, started and removed by these fixtures (deploy/container-test.sh
runs them). Without a configured engine (see tests/container/compose_stack.py) every test here skips. The image
must already be built (the script builds it); the stack is started from the unchanged docker-compose.yml."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from predictq.localredis import free_port
from tests.container.compose_stack import COMPOSE, ENGINE, FIGURES, ROOT, Stack, record, stack_env


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("container stack figures")
        width = max(len(what) for what, _ in FIGURES)
        for what, value in FIGURES:
            terminalreporter.write_line(f"{what.ljust(width)}  {value}")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """`compose up -d` with one worker, healthy; `compose down --volumes --remove-orphans` afterwards, pass or fail."""
    if not (ENGINE and COMPOSE):
        pytest.skip("no container engine configured: deploy/container-test.sh runs these tests")
    port = free_port()
    stack = Stack(stack_env(port), port)
    stack.compose("down", "--volumes", "--remove-orphans")
    try:
        start = time.monotonic()
        stack.compose("up", "-d")
        stack.wait_healthy()
        record("stack up and healthy (1 worker)", f"{time.monotonic() - start:.1f} s")
        yield stack
    finally:
        subprocess.run([*COMPOSE, "down", "--volumes", "--remove-orphans"], cwd=ROOT, env=stack.env,
                       capture_output=True, timeout=600)


@pytest.fixture(scope="session")
def api_key(stack: Stack) -> str:
    """The development key the API container wrote, read as the README shows."""
    line = stack.compose("exec", "-T", "api", "cat", "/var/lib/predictq/dev-api-key").strip()
    key, _, tenant = line.partition(":")
    assert tenant == "local" and len(key) >= 32, line
    return key
