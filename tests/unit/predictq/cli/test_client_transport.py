"""The client's transport: request bodies leave in large blocks, not urllib3's default 16 KB."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from predictq.client import Client
from predictq.transport import UPLOAD_BLOCK_BYTES
from tests.support.http_server import serve_handler


class _Sink(BaseHTTPRequestHandler):
    """Reads the whole body, answers 202 with its length."""

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        received = len(self.rfile.read(length))
        body = f'{{"id": "j1", "received": {received}}}'.encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def sink_url() -> Iterator[str]:
    with serve_handler(_Sink) as url:
        yield url


def test_upload_is_read_and_sent_in_large_blocks(sink_url: str, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_bytes(b"x" * (3 * UPLOAD_BLOCK_BYTES + 5))
    reads: list[int] = []
    answer = Client(sink_url).submit(data, on_upload=reads.append)
    assert answer.data["received"] == data.stat().st_size
    assert reads == [UPLOAD_BLOCK_BYTES] * 3 + [5]
