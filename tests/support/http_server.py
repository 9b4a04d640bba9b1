"""Loopback HTTP servers for tests: a WSGI app or a request handler served on a daemon thread, on a free port."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from werkzeug.serving import make_server

# How often the serving loop looks for a shutdown request: stopping a server waits up to this long.
POLL_SECONDS = 0.02


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[str]:
    """Serve `server` on a daemon thread for the block; yields its base URL; stops and closes it after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def serve_app(app: Callable[..., Any]) -> Any:
    """A WSGI app (a Flask app) served on 127.0.0.1 on a free port: `with serve_app(app) as url:`."""
    return serving(make_server("127.0.0.1", 0, app, threaded=True))


def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Any:
    """A request handler class served on 127.0.0.1 on a free port: `with serve_handler(Handler) as url:`."""
    return serving(ThreadingHTTPServer(("127.0.0.1", 0), handler))
