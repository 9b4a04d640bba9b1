"""predictq.stack in this process (so its supervision code is measured): private or existing Redis, stop, signals."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import requests

from predictq.localredis import free_port, redis_answers
from predictq.stack import Stack


def gone(stack: Stack) -> bool:
    """No process of any child's group is left."""
    everyone = [*stack.children, *([stack.redis] if stack.redis else [])]
    return all(not child.group_alive() for child in everyone)


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without predictq settings, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PREDICTQ_")}, **extra}


def test_private_redis_stack_runs_until_sigint(tmp_path: Path) -> None:
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    stack = Stack(base_env(REDIS_URL=dead_url), port=free_port(), workers=1, log_dir=tmp_path)
    try:
        stack.start()
        stack.wait_ready()
        assert stack.redis is not None and redis_answers(stack.redis_url)
        assert stack.redis_url != dead_url
        headers = {"Authorization": f"Bearer {stack.api_key}"}
        assert requests.get(f"{stack.url}/v1/jobs", headers=headers, timeout=10).status_code == 200
        assert stack.dead_child() is None
        assert stack.redis.alive()
        # SIGINT arrives while the run loop waits: it must return 0 after stopping everything.
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        assert stack.run_until_signal(poll=0.1) == 0
    finally:
        stack.stop()
    assert gone(stack)
    assert not redis_answers(stack.redis_url)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the previous handler is restored"
    assert {p.name for p in tmp_path.iterdir()} >= {"api.log", "worker-1.log", "redis.log", "redis"}


def test_existing_redis_is_used_and_left_running(redis_url: str, tmp_path: Path) -> None:
    stack = Stack(base_env(REDIS_URL=redis_url, PREDICTQ_API_KEYS="k:t"), port=free_port(), workers=1, log_dir=tmp_path)
    try:
        stack.start()
        stack.wait_ready()
        assert stack.redis is None
        assert stack.redis_url == redis_url
        assert stack.api_key is None, "configured keys are kept, none is generated"
        assert requests.get(f"{stack.url}/v1/jobs", headers={"X-API-Key": "k"}, timeout=10).status_code == 200
    finally:
        stack.stop()
    assert gone(stack)
    assert redis_answers(redis_url)


def test_run_loop_reports_a_child_that_dies(redis_url: str, tmp_path: Path) -> None:
    stack = Stack(base_env(REDIS_URL=redis_url, PREDICTQ_API_KEYS="k:t"), port=free_port(), workers=1, log_dir=tmp_path)
    try:
        stack.start()
        stack.wait_ready()
        worker = next(child for child in stack.children if child.name == "worker-1")
        os.killpg(worker.pid, signal.SIGKILL)
        assert stack.run_until_signal(poll=0.1) == 1
    finally:
        stack.stop()
    assert gone(stack)


def test_run_loop_reports_the_private_redis_dying(tmp_path: Path) -> None:
    env = base_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    stack = Stack(env, port=free_port(), workers=1, log_dir=tmp_path)
    try:
        stack.start()
        stack.wait_ready()
        assert stack.redis is not None
        os.killpg(stack.redis.pid, signal.SIGKILL)
        assert stack.run_until_signal(poll=0.1) == 1
    finally:
        stack.stop()
    assert gone(stack)
