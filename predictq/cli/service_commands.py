"""`predictq` subcommands: service (serve, worker, up)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

from core.settings import Settings, SettingsError
from predictq.devkey import DEV_TENANT, ensure_dev_key, needs_dev_key
from predictq.localredis import RedisUnavailable
from predictq.stack import Stack, StackError, celery_worker_argv, gunicorn_argv


def _settings() -> Settings:
    """Settings from the environment, or a usage error naming the bad variable."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _exec(argv: list[str]) -> None:
    """Replace this process with `argv`, so signals from a container runtime reach the server directly."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


@click.command()
@click.option("--bind", default=None, help="host:port to listen on [default 0.0.0.0:$PREDICTQ_PORT, port 1313].")
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Gunicorn workers [env PREDICTQ_API_WORKERS]."
)
def serve(bind: str | None, workers: int | None) -> None:
    """Serve the HTTP API under gunicorn (gthread workers; settings in predictq.gunicorn_conf)."""
    settings = _settings()
    if needs_dev_key(settings):
        key = ensure_dev_key(Path(settings.dev_key_file))
        os.environ["PREDICTQ_API_KEYS_FILE"] = settings.dev_key_file
        click.echo(
            f"predictq: no API key configured; development key for tenant '{DEV_TENANT}': {key}\n"
            f"predictq: (kept in {settings.dev_key_file}; set PREDICTQ_API_KEYS for real clients)",
            err=True,
        )
    _exec(gunicorn_argv(bind, workers))


@click.command()
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=None,
    help="Prefork processes [env PREDICTQ_WORKER_CONCURRENCY, default 2].",
)
@click.option("--hostname", "node", default="predictq@%h", show_default=True, help="Celery node name.")
def worker(concurrency: int | None, node: str) -> None:
    """Run a Celery worker that scores queued job chunks (queue from PREDICTQ_QUEUE)."""
    _exec(celery_worker_argv(_settings(), concurrency, node))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="API port [env PREDICTQ_PORT, 1313].")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Celery worker processes.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True, help="Pool size per worker.")
@click.option("--api-workers", type=click.IntRange(min=1), default=1, show_default=True, help="Gunicorn workers.")
@click.option("--private-redis", is_flag=True, help="Start a private Redis even when REDIS_URL answers.")
@click.option(
    "--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the children's logs go [default: a new temporary directory].",
)
def up(
    host: str, port: int | None, workers: int, concurrency: int, api_workers: int, private_redis: bool,
    log_dir: Path | None,
) -> None:
    """Run the whole stack on this machine without Docker: Redis, workers and the API, until Ctrl-C."""
    settings = _settings()
    # Until the run loop takes over signals, SIGTERM must unwind like Ctrl-C so started children are stopped.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = Stack(
        dict(os.environ), host=host, port=port or settings.api_port, workers=workers, concurrency=concurrency,
        api_workers=api_workers, private_redis=private_redis, log_dir=log_dir,
    )
    try:
        stack.start()
        stack.wait_ready()
    except (StackError, RedisUnavailable) as exc:
        stack.stop()
        click.echo(f"predictq up: {exc}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        stack.stop()
        raise SystemExit(130) from None
    click.echo(_banner(stack), nl=False)
    raise SystemExit(stack.run_until_signal())


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _banner(stack: Stack) -> str:
    """What a person needs to use the running stack: URL, key, one submit command, where the logs are."""
    redis_kind = "private" if stack.redis is not None else "existing"
    key_export = f" PREDICTQ_API_KEY={stack.api_key}" if stack.api_key else ""
    curl_auth = f' -H "Authorization: Bearer {stack.api_key}"' if stack.api_key else ""
    lines = [
        f"predictq is up at {stack.url}",
        f"  redis:   {stack.redis_url} ({redis_kind})",
        f"  workers: {stack.workers} x concurrency {stack.concurrency}",
        f"  logs:    {stack.log_dir}",
    ]
    if stack.api_key:
        lines.append(f"  API key: {stack.api_key} (tenant 'local', valid while this stack runs)")
    lines += [
        "Submit a job:",
        f"  export PREDICTQ_URL={stack.url}{key_export}",
        "  predictq submit data.csv --wait -o scored.csv",
        f"  curl{curl_auth} {stack.url}/healthz",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines) + "\n"


COMMANDS: list[click.Command] = [serve, worker, up]
