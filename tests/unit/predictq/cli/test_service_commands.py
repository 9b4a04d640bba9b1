"""`predictq serve/worker/up` build the right command lines; the stack helpers behave without starting anything."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.settings import Settings
from predictq.cli import cli, service_commands
from predictq.cli.service_commands import _banner
from predictq.stack import CELERY_APP, GUNICORN_CONFIG, WSGI_TARGET, Stack, celery_worker_argv, gunicorn_argv


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Capture what `serve` and `worker` would exec instead of replacing the test process."""
    calls: list[list[str]] = []
    monkeypatch.setattr(service_commands.os, "execv", lambda path, argv: calls.append(list(argv)))
    return calls


def test_serve_execs_gunicorn_with_predictq_config(exec_calls: list[list[str]]) -> None:
    result = CliRunner().invoke(cli, ["serve", "--bind", "127.0.0.1:9999", "--workers", "3"])
    assert result.exit_code == 0, result.output
    (argv,) = exec_calls
    assert argv[:3] == [sys.executable, "-m", "gunicorn"]
    assert argv[argv.index("--config") + 1] == GUNICORN_CONFIG
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:9999"
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[-1] == WSGI_TARGET == "api.wsgi:app"


def test_worker_execs_celery_with_queue_pool_and_concurrency_from_env(
    exec_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREDICTQ_QUEUE", "scoring")
    monkeypatch.setenv("PREDICTQ_WORKER_CONCURRENCY", "5")
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 0, result.output
    (argv,) = exec_calls
    assert argv[:6] == [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker"]
    assert CELERY_APP == "worker.celery_app"
    options = dict(zip(argv[6::2], argv[7::2], strict=True))
    assert options == {
        "--queues": "scoring", "--pool": "prefork", "--concurrency": "5", "--hostname": "predictq@%h",
        "--loglevel": "INFO",
    }


def test_worker_concurrency_option_beats_environment(
    exec_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREDICTQ_WORKER_CONCURRENCY", "5")
    CliRunner().invoke(cli, ["worker", "--concurrency", "1"])
    argv = exec_calls[0]
    assert argv[argv.index("--concurrency") + 1] == "1"


@pytest.mark.parametrize("command", ["serve", "worker", "up"])
def test_bad_settings_are_a_usage_error_naming_the_variable(
    command: str, exec_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREDICTQ_WORKER_CONCURRENCY", "zero")
    result = CliRunner().invoke(cli, [command])
    assert result.exit_code == 2
    assert "PREDICTQ_WORKER_CONCURRENCY" in result.output
    assert exec_calls == []


def test_gunicorn_argv_without_overrides_leaves_bind_to_config() -> None:
    argv = gunicorn_argv()
    assert "--bind" not in argv
    assert "--workers" not in argv


def test_celery_argv_node_name() -> None:
    argv = celery_worker_argv(Settings(), 2, node="predictq-3@%h")
    assert argv[argv.index("--hostname") + 1] == "predictq-3@%h"


def test_child_env_generates_a_key_only_when_auth_needs_one(tmp_path: Path) -> None:
    stack = Stack({"PATH": "/bin"}, log_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    env = stack._child_env()
    assert stack.api_key and len(stack.api_key) >= 32
    assert env["PREDICTQ_API_KEYS"] == f"{stack.api_key}:local"
    assert env["REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert env["PATH"] == "/bin", "the given environment is passed on"

    configured = Stack({"PREDICTQ_API_KEYS": "k:t"}, log_dir=tmp_path, redis_url="redis://x")
    assert configured._child_env()["PREDICTQ_API_KEYS"] == "k:t", "configured keys are passed on unchanged"
    assert configured.api_key is None
    disabled = Stack({"PREDICTQ_AUTH": "disabled"}, log_dir=tmp_path, redis_url="redis://x")
    disabled._child_env()
    assert disabled.api_key is None


def test_banner_tells_how_to_submit(tmp_path: Path) -> None:
    stack = Stack({}, port=4321, log_dir=tmp_path, redis_url="redis://127.0.0.1:7/0", api_key="abc")
    text = _banner(stack)
    assert "predictq is up at http://127.0.0.1:4321" in text
    assert "export PREDICTQ_URL=http://127.0.0.1:4321 PREDICTQ_API_KEY=abc" in text
    assert "predictq submit data.csv --wait -o scored.csv" in text
    assert str(tmp_path) in text


@pytest.mark.parametrize(("host", "url"), [("0.0.0.0", "http://127.0.0.1:80"), ("127.0.0.2", "http://127.0.0.2:80")])
def test_stack_url_is_reachable_from_this_machine(host: str, url: str) -> None:
    assert Stack({}, host=host, port=80).url == url


def test_serve_writes_and_reuses_a_development_key_when_none_is_configured(
    exec_calls: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "state" / "dev-api-key"
    monkeypatch.delenv("PREDICTQ_API_KEYS", raising=False)
    monkeypatch.delenv("PREDICTQ_API_KEYS_FILE", raising=False)
    monkeypatch.setenv("PREDICTQ_DEV_KEY_FILE", str(key_file))
    first = CliRunner().invoke(cli, ["serve"])
    assert first.exit_code == 0, first.output
    key, tenant = key_file.read_text().strip().rsplit(":", 1)
    assert tenant == "local" and len(key) >= 32 and key in first.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert service_commands.os.environ["PREDICTQ_API_KEYS_FILE"] == str(key_file)
    monkeypatch.delenv("PREDICTQ_API_KEYS_FILE")  # a restarted container starts from the same environment
    second = CliRunner().invoke(cli, ["serve"])
    assert key in second.stderr and key_file.read_text().strip() == f"{key}:local"


def test_serve_leaves_configured_keys_alone(
    exec_calls: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREDICTQ_API_KEYS", "real-key:acme")
    monkeypatch.setenv("PREDICTQ_DEV_KEY_FILE", str(tmp_path / "dev-api-key"))
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 0 and "development key" not in result.stderr
    assert not (tmp_path / "dev-api-key").exists()
