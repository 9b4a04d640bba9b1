"""The stack on four hosts (network namespaces): A runs Redis, B the API, C and D a worker each.

Needs root, iproute2 (`ip`), nftables (`nft`) and `tc`; skips, saying which, when one is missing
(./run_tests.sh installs iproute2 and nftables as root). Processes are started with the project's own entry
points (`predictq serve`, `predictq worker`) and only the namespaces' addresses are used; the test process is
the client, on the bridge's address. The blob store is a directory every host reaches at the same path (the
namespaces share the file system); real hosts share an `s3://` bucket instead (docs/hosts.md).

The checker's figures of every fault are printed at the end of the run (terminal summary), so CI logs show
them with `-q`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from predictq.localredis import redis_server_argv
from tests.multihost.checker import FIGURES, Figures
from tests.multihost.hosts import Host, Network, clean_leftovers

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "multihost-test-key"
TENANT = "acme"
REDIS_PORT = 6379
API_PORT = 1313
READY_TIMEOUT = 90.0

# The timings of the test stack (docs/hosts.md has the production defaults and what each one does).
STACK_SETTINGS = {
    "PREDICTQ_CHUNK_BYTES": "1000000",  # about 1,000 synthetic CSV rows per chunk: many chunks per job
    "PREDICTQ_REDIS_SOCKET_TIMEOUT": "2",
    "PREDICTQ_CHUNK_LEASE_SECONDS": "6",  # renewed every 2 s; a cut-off worker's chunk is taken back after 6 s
    "PREDICTQ_REAPER_INTERVAL_SECONDS": "1",
    "PREDICTQ_TASK_SOFT_TIME_LIMIT": "20",  # a cut-off attempt tries its commit again for up to 20 s
    "PREDICTQ_TASK_TIME_LIMIT": "25",  # visibility timeout: 85 s
    "PREDICTQ_STUCK_JOB_SECONDS": "240",
    "PREDICTQ_UPLOAD_IDLE_SECONDS": "8",
    "PREDICTQ_MAX_CHUNK_ATTEMPTS": "5",
    "PREDICTQ_STORE_RESERVE_BYTES": "0",
    "PREDICTQ_RATE_LIMIT_POLL": "100000/minute",
    "PREDICTQ_RATE_LIMIT_SUBMIT": "1000/minute",
    "PREDICTQ_API_WORKERS": "1",
    "PREDICTQ_WORKER_CONCURRENCY": "1",
    "PREDICTQ_LOG_LEVEL": "info",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here is a multihost test (select them with `-m multihost`, leave them out with `-m 'not ...'`)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.multihost)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the checker's figures of every fault that ran (also under -q)."""
    if not FIGURES:
        return
    terminalreporter.section("multihost: every row of every job, per fault")
    for figures in FIGURES:
        terminalreporter.write_line(figures.line())


def missing_tools() -> str | None:
    """Why the harness cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (iproute2 and nftables; ./run_tests.sh installs them as root)"
    return None


@dataclass
class Stack:
    """The four hosts and what runs on each."""

    network: Network
    env: dict[str, str]
    redis_dir: Path
    store_dir: Path

    @property
    def a(self) -> Host:
        return self.network.hosts["a"]

    @property
    def b(self) -> Host:
        return self.network.hosts["b"]

    @property
    def c(self) -> Host:
        return self.network.hosts["c"]

    @property
    def d(self) -> Host:
        return self.network.hosts["d"]

    @property
    def workers(self) -> list[Host]:
        return [self.c, self.d]

    @property
    def redis_url(self) -> str:
        return f"redis://{self.a.address}:{REDIS_PORT}/0"

    @property
    def api_url(self) -> str:
        return f"http://{self.b.address}:{API_PORT}"

    def redis(self) -> redis.Redis:
        """A client of host A's Redis from the test process (the observer)."""
        return redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def entry_point(self) -> list[str]:
        """The `predictq` command (the project's console script next to this Python, else the module)."""
        script = Path(sys.executable).with_name("predictq")
        return [str(script)] if script.exists() else [sys.executable, "-c", "from predictq.cli import main; main()"]

    # Host A: Redis with its append-only file.
    def start_redis(self) -> None:
        argv = redis_server_argv(REDIS_PORT, self.redis_dir, appendonly=True)
        argv[argv.index("127.0.0.1")] = self.a.address
        self.a.start("redis", [*argv, "--protected-mode", "no"], self.env, ROOT)
        wait_until(lambda: self._redis_answers(), "host A's Redis answers", self.a.log("redis"))

    def _redis_answers(self) -> bool:
        try:
            return bool(self.redis().ping())
        except redis.RedisError:
            return False

    def kill_redis(self) -> None:
        """SIGKILL host A's Redis (the AOF keeps every write it answered)."""
        self.a.kill_all()

    # Host B: the API under gunicorn.
    def start_api(self) -> None:
        argv = [*self.entry_point(), "serve", "--bind", f"{self.b.address}:{API_PORT}"]
        self.b.start("api", argv, self.env, ROOT)
        wait_until(lambda: self._api_ready(), "host B's API is ready", self.b.log("api"))

    def _api_ready(self) -> bool:
        try:
            return requests.get(f"{self.api_url}/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    # Hosts C and D: one Celery worker each.
    def start_worker(self, host: Host) -> None:
        argv = [*self.entry_point(), "worker", "--hostname", f"{host.name}@%h"]
        host.start("worker", argv, self.env, ROOT)
        wait_until(
            lambda: " ready." in host.log("worker"), f"host {host.name.upper()}'s worker is ready", host.log("worker")
        )

    def worker_alive(self, host: Host) -> bool:
        process = host.processes.get("worker")
        return process is not None and process.poll() is None

    def restore(self) -> None:
        """Heal every fault and start again whatever is not running (between tests)."""
        self.network.heal_all()
        if not self._redis_answers():
            self.a.kill_all()
            self.start_redis()
        if not self._api_ready():
            self.b.kill_all()
            self.start_api()
        for host in self.workers:
            if not self.worker_alive(host):
                host.kill_all()
                self.start_worker(host)

    # The client side.
    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        return session

    def refused_commits(self) -> dict[str, int]:
        """`predictq_chunk_commits_refused_total` by reason, as the API's /metrics shows it."""
        text = requests.get(f"{self.api_url}/metrics", timeout=10).text
        found = {}
        for line in text.splitlines():
            if line.startswith("predictq_chunk_commits_refused_total{"):
                reason = line.split('reason="', 1)[1].split('"', 1)[0]
                found[reason] = int(float(line.rsplit(" ", 1)[1]))
        return found


def wait_until(check: Any, what: str, log: str = "", timeout: float = READY_TIMEOUT) -> None:
    """Poll `check()` until true; fail naming `what` (and the end of a log) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting until {what}\n{log[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The four hosts with Redis, the API and two workers running; everything is torn down afterwards."""
    why = missing_tools()
    if why:
        pytest.skip(f"multi-host tests skipped: {why}")
    base = tmp_path_factory.mktemp("multihost")
    for folder in ("logs", "redis", "store", "metrics"):
        (base / folder).mkdir()
    try:
        network = Network.create({"a": 10, "b": 11, "c": 12, "d": 13}, base / "logs")
    except RuntimeError as exc:
        clean_leftovers()
        if "Operation not permitted" in str(exc):
            pytest.skip(f"multi-host tests skipped: this kernel refuses network namespaces here ({exc})")
        raise
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTQ_")}
    env |= STACK_SETTINGS
    env |= {
        "REDIS_URL": f"redis://{network.hosts['a'].address}:{REDIS_PORT}/0",
        "PREDICTQ_STORE_URI": str(base / "store"),
        "PREDICTQ_QUEUE": f"predictq-multihost-{uuid.uuid4().hex[:6]}",
        "PREDICTQ_API_KEYS": f"{API_KEY}:{TENANT}",
        "PROMETHEUS_MULTIPROC_DIR": str(base / "metrics"),
        # The checkout's code in every process, whichever environment the console script belongs to.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    stack = Stack(network, env, base / "redis", base / "store")
    try:
        stack.start_redis()
        stack.start_api()
        for host in stack.workers:
            stack.start_worker(host)
        yield stack
    finally:
        network.destroy()


@pytest.fixture
def hosts(stack: Stack) -> Iterator[Stack]:
    """The stack healed and complete before the test; healed after it, whatever happened."""
    stack.restore()
    try:
        yield stack
    finally:
        stack.network.heal_all()


__all__ = ["FIGURES", "Figures", "Stack"]
