"""The API under gunicorn for integration tests: `gunicorn_server(env, log_path)` on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from predictq.localredis import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ApiServer:
    """A running gunicorn: its base URL, port and log file."""

    url: str
    port: int
    log: Path


@contextmanager
def gunicorn_server(env: dict[str, str], log_path: Path) -> Iterator[ApiServer]:
    """`api.wsgi:app` under gunicorn (predictq.gunicorn_conf) on a free loopback port with `env` (PREDICTQ_PORT is
    set here), until the block ends; ready once /readyz answers 200."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:predictq.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
            "api.wsgi:app"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env={**env, "PREDICTQ_PORT": str(port)}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if requests.get(f"{url}/readyz", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield ApiServer(url, port, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
