"""Request and job ids on every log line: context variables set around a request or a task, and a filter
that copies them onto each log record as `%(log_context)s` ("request_id=... job_id=... " or "")."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("predictq_request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("predictq_job_id", default=None)

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(log_context)s%(message)s"


def context_text() -> str:
    """"request_id=<id> job_id=<id> " for what is set in this context (each part only when set)."""
    parts = [f"{name}={value}" for name, value in (("request_id", request_id_var.get()), ("job_id", job_id_var.get()))
             if value]
    return " ".join(parts) + " " if parts else ""


class LogContextFilter(logging.Filter):
    """Adds `log_context` to every record (never drops one), so formats may use `%(log_context)s`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "log_context"):
            record.log_context = context_text()
        return True


@contextmanager
def log_context(*, request_id: str | None = None, job_id: str | None = None) -> Iterator[None]:
    """Within the block, log lines carry these ids (values left None keep what the outer context set)."""
    tokens = []
    if request_id is not None:
        tokens.append((request_id_var, request_id_var.set(request_id)))
    if job_id is not None:
        tokens.append((job_id_var, job_id_var.set(job_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def add_filter(handlers: list[logging.Handler]) -> None:
    """Give each handler the context filter once."""
    for handler in handlers:
        if not any(isinstance(f, LogContextFilter) for f in handler.filters):
            handler.addFilter(LogContextFilter())


def configure_process_logging(level: str = "info") -> None:
    """For a process whose own loggers have no handler yet (the API under gunicorn): one stderr handler on the
    root logger with the context in its format; a process that has handlers already only gets the filter."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(level.upper())
    add_filter(root.handlers)
