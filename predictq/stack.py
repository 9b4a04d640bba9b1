"""Process supervision for `predictq up`: Redis (reused or private), N Celery workers and the API, stopped together."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from core.settings import Settings
from predictq.devkey import DEV_TENANT
from predictq.localredis import free_port, redis_answers, redis_server_argv

WSGI_TARGET = "api.wsgi:app"
CELERY_APP = "worker.celery_app"
GUNICORN_CONFIG = "python:predictq.gunicorn_conf"


class StackError(RuntimeError):
    """A part of the local stack failed to start or died while running."""


def gunicorn_argv(bind: str | None = None, workers: int | None = None) -> list[str]:
    """Command line that serves the API under gunicorn with predictq's settings."""
    argv = [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG]
    if bind:
        argv += ["--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    return [*argv, WSGI_TARGET]


def celery_worker_argv(settings: Settings, concurrency: int | None = None, node: str = "predictq@%h") -> list[str]:
    """Command line of one Celery worker consuming the predictq queue with a prefork pool."""
    return [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
        "--queues", settings.queue_name,
        "--pool", "prefork",
        "--concurrency", str(concurrency or settings.worker_concurrency),
        "--hostname", node,
        "--loglevel", settings.log_level.upper(),
    ]


def private_redis_argv(workdir: Path, port: int) -> list[str]:
    """A loopback-only redis-server keeping an append-only file in `workdir`, refusing writes when full."""
    workdir.mkdir(parents=True, exist_ok=True)
    return redis_server_argv(port, workdir, appendonly=True)


@dataclass
class Child:
    """One supervised process, in its own process group so a terminal's Ctrl-C reaches only the supervisor."""

    name: str
    argv: Sequence[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: Mapping[str, str]) -> None:
        """Start the process with stdout and stderr going to its log file."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, "child not started"
        return self.process.pid

    def alive(self) -> bool:
        """True while the main process has not exited."""
        return self.process is not None and self.process.poll() is None

    def group_alive(self) -> bool:
        """True while any process of the child's group (pool processes included) still exists."""
        if self.process is None:
            return False
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def terminate(self) -> None:
        """Ask the main process to stop (warm shutdown for Celery, graceful for gunicorn)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    def kill_group(self) -> None:
        """SIGKILL whatever is left in the child's process group, then reap the main process."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log, to explain an unexpected exit."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """Redis + workers + API on this machine; `start()`, `wait_ready()`, then `stop()` (idempotent).

    `env` is the children's environment (the caller's, usually) and the source of the stack's own settings,
    so the supervisor and its children always read the same configuration.
    """

    env: Mapping[str, str]
    host: str = "127.0.0.1"
    port: int = 1313
    workers: int = 2
    concurrency: int = 1
    api_workers: int = 1
    private_redis: bool = False
    log_dir: Path | None = None
    redis_url: str = ""
    api_key: str | None = None
    settings: Settings = field(init=False)
    redis: Child | None = field(default=None, init=False)
    children: list[Child] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.settings = Settings.from_env(self.env)

    @property
    def url(self) -> str:
        """Where clients on this machine reach the API (a wildcard bind is reached through loopback)."""
        host = "127.0.0.1" if self.host in {"0.0.0.0", ""} else self.host
        return f"http://{host}:{self.port}"

    def _ensure_redis(self) -> str:
        """REDIS_URL when it answers (unless a private server is asked for), else a private redis-server."""
        if not self.private_redis and redis_answers(self.settings.redis_url):
            return self.settings.redis_url
        assert self.log_dir is not None
        # Supervised like the other children (own process group) so a terminal's Ctrl-C cannot stop Redis
        # before the workers have finished with it.
        port = free_port()
        self.redis = Child("redis", private_redis_argv(self.log_dir / "redis", port), self.log_dir / "redis.log")
        self.redis.start(self.env)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 15
        while not redis_answers(url, timeout=0.2):
            if not self.redis.alive() or time.monotonic() > deadline:
                raise StackError(f"private redis-server did not start:\n{self.redis.log_tail()}")
            time.sleep(0.05)
        return url

    def _child_env(self) -> dict[str, str]:
        """The children's environment: `env`, plus the Redis URL and (when auth is on and unset) a fresh key."""
        env = dict(self.env)
        env["REDIS_URL"] = self.redis_url
        env["PYTHONUNBUFFERED"] = "1"
        needs_key = self.settings.auth_mode == "required" and not (
            self.settings.api_keys.strip() or self.settings.api_keys_file
        )
        if needs_key:
            self.api_key = secrets.token_urlsafe(24)
            env["PREDICTQ_API_KEYS"] = f"{self.api_key}:{DEV_TENANT}"
        return env

    def start(self) -> None:
        """Start Redis (if needed), the workers, then the API; on any failure stop what was started."""
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="predictq-up-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis_url = self._ensure_redis()
            env = self._child_env()
            for i in range(1, self.workers + 1):
                argv = celery_worker_argv(self.settings, self.concurrency, node=f"predictq-{i}@%h")
                self.children.append(Child(f"worker-{i}", argv, self.log_dir / f"worker-{i}.log"))
            bind = f"{self.host}:{self.port}"
            self.children.append(Child("api", gunicorn_argv(bind, self.api_workers), self.log_dir / "api.log"))
            for child in self.children:
                child.start(env)
        except BaseException:
            self.stop()
            raise

    def dead_child(self) -> Child | None:
        """The first child (the private Redis included) whose main process has exited, if any."""
        supervised = [*self.children, *([self.redis] if self.redis is not None else [])]
        return next((child for child in supervised if not child.alive()), None)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until GET /readyz answers 200; fail early, with its log, if a child dies meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = self.dead_child()
            if dead is not None:
                raise StackError(f"{dead.name} exited with code {dead.process.returncode}:\n{dead.log_tail()}")  # type: ignore[union-attr]
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise StackError(f"the API at {self.url} was not ready within {timeout:.0f}s (logs in {self.log_dir})")

    def stop(self, grace: float = 20.0) -> None:
        """Stop the API, then the workers, then a private Redis; SIGKILL what outlives `grace` seconds."""
        api_first = sorted(self.children, key=lambda child: child.name != "api")
        for child in api_first:
            child.terminate()
            if child.name == "api":
                _wait_exit([child], grace)
        _wait_exit(api_first, grace)
        for child in api_first:
            child.kill_group()
        if self.redis is not None:
            self.redis.terminate()
            _wait_exit([self.redis], grace)
            self.redis.kill_group()

    def run_until_signal(self, poll: float = 0.5) -> int:
        """Block until SIGINT/SIGTERM (exit 0) or a child dies (exit 1), then stop everything."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            while not stop.wait(poll):
                dead = self.dead_child()
                if dead is not None:
                    print(f"predictq up: {dead.name} exited unexpectedly:\n{dead.log_tail()}", file=sys.stderr)
                    code = 1
                    break
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code


def _wait_exit(children: Sequence[Child], timeout: float) -> None:
    """Wait until every child's process group is empty, or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.process is not None:
                child.process.poll()  # reap the main process so its group can empty
        if not any(child.group_alive() for child in children):
            return
        time.sleep(0.1)
