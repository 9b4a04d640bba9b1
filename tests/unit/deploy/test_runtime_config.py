"""Gunicorn settings, health probes and the packaged files the image relies on."""

from __future__ import annotations

import http.server
import importlib
import os
import sys
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest

from predictq import healthcheck
from predictq.localredis import free_port
from tests.support.http_server import serve_handler


def load_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("predictq.gunicorn_conf", None)
    return importlib.import_module("predictq.gunicorn_conf")


def test_gunicorn_conf_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREDICTQ_PORT", "PREDICTQ_API_WORKERS", "PREDICTQ_API_THREADS", "PREDICTQ_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    conf = load_gunicorn_conf(monkeypatch)
    assert conf.bind == "0.0.0.0:1313"
    assert (conf.workers, conf.threads) == (2, 4)
    # gunicorn's gthread worker with JSON parse errors, and an access log without credentials
    assert conf.worker_class == "predictq.gunicorn_edge.JsonErrorWorker"
    assert conf.logger_class == "predictq.gunicorn_edge.RedactingLogger"
    assert conf.loglevel == "info"
    assert conf.preload_app is False


def test_gunicorn_conf_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_gunicorn_conf(
        monkeypatch,
        PREDICTQ_PORT="8080", PREDICTQ_API_WORKERS="5", PREDICTQ_API_THREADS="2", PREDICTQ_LOG_LEVEL="DEBUG",
    )
    assert (conf.bind, conf.workers, conf.threads, conf.loglevel) == ("0.0.0.0:8080", 5, 2, "debug")


def test_gunicorn_hooks_manage_the_metrics_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # setenv first so that monkeypatch restores the variable's absence: on_starting sets it in os.environ.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf = load_gunicorn_conf(monkeypatch)
    conf.on_starting(None)
    created = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert created.is_dir()
    conf.on_exit(None)
    assert not created.exists()

    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "counter_1.db").write_bytes(b"old")
    (configured / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(configured))
    conf = load_gunicorn_conf(monkeypatch)
    conf.on_starting(None)
    assert sorted(p.name for p in configured.iterdir()) == ["keep.txt"]
    conf.on_exit(None)
    assert configured.is_dir()


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def health_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Health]]:
    handler = type("Handler", (_Health,), {"status": 200})
    with serve_handler(handler) as url:
        monkeypatch.setenv("PREDICTQ_PORT", url.rsplit(":", 1)[1])
        monkeypatch.delenv("PREDICTQ_HEALTHCHECK_URL", raising=False)
        yield handler


def test_api_probe_healthy_and_unhealthy(health_server: type[_Health], capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["api"]) == 0
    assert "answered 200" in capsys.readouterr().out
    health_server.status = 503
    assert healthcheck.main(["api"]) == 1
    assert "503" in capsys.readouterr().err


def test_api_probe_with_nothing_listening(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PREDICTQ_HEALTHCHECK_URL", f"http://127.0.0.1:{free_port()}/healthz")
    assert healthcheck.main(["api"]) == 1
    assert "did not answer" in capsys.readouterr().err


def test_role_defaults_to_predictq_role(health_server: type[_Health], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREDICTQ_ROLE", "api")
    assert healthcheck.main([]) == 0
    monkeypatch.setenv("PREDICTQ_ROLE", "nonsense")
    assert healthcheck.main([]) == 2


def test_redis_probe_fails_on_dead_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert healthcheck.main(["redis"]) == 1
    assert "did not answer PING" in capsys.readouterr().err


def test_every_non_python_file_in_the_packages_is_package_data(root: Path) -> None:
    """The image installs the project as a wheel: data files outside package-data would be missing there."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"]["package-data"]
    missing = []
    for package in config["tool"]["importlinter"]["root_packages"]:
        for path in (root / package).rglob("*"):
            if not path.is_file() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(root / package).as_posix()
            if not any(fnmatch(relative, pattern) for pattern in package_data.get(package, [])):
                missing.append(f"{package}/{relative}")
    assert missing == []
