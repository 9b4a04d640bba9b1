"""api.uploads.SocketBody: a Content-Length body read from gunicorn's socket, gunicorn's reader kept exact."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader

from api.uploads import IncompleteBody, LimitedStream, SocketBody

BODY = bytes(range(256)) * 4096  # 1 MiB
NEXT = b"GET /next HTTP/1.1\r\n\r\n"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    with server, client:
        yield server, client


def gunicorn_body(server: socket.socket, length: int, buffered: bytes) -> Body:
    """What gunicorn hands the app: its reader holds `buffered` (received with the headers)."""
    unreader = SocketUnreader(server)
    unreader.buf.write(buffered)
    return Body(LengthReader(unreader, length))


def send_in_thread(client: socket.socket, data: bytes, close: bool = False) -> None:
    def send() -> None:
        client.sendall(data)
        if close:
            client.shutdown(socket.SHUT_WR)

    threading.Thread(target=send, daemon=True).start()


def read_all(stream: LimitedStream) -> bytes:
    parts = []
    while block := stream.read(1 << 16):
        parts.append(block)
    return b"".join(parts)


def test_reads_the_buffered_bytes_then_the_socket_and_stops_at_the_length(pair) -> None:
    server, client = pair
    body = gunicorn_body(server, len(BODY), BODY[:1000])
    send_in_thread(client, BODY[1000:] + NEXT)
    direct = SocketBody.of(body)
    assert direct is not None
    stream = LimitedStream(direct, len(BODY) + 1, len(BODY), ("sha-256",))
    assert read_all(stream) == BODY
    assert stream.finish().bytes_received == len(BODY)
    assert body.reader.length == 0
    assert body.read(1024) == b""  # gunicorn's drain finds nothing left of the body
    assert body.reader.unreader.read(len(NEXT)) == NEXT  # the next request is untouched


def test_bytes_past_the_body_stay_buffered_for_the_next_request(pair) -> None:
    server, _ = pair
    body = gunicorn_body(server, 100, BODY[:100] + NEXT)
    stream = LimitedStream(SocketBody.of(body), 1000, 100)
    assert read_all(stream) == BODY[:100]
    assert body.reader.unreader.read(len(NEXT)) == NEXT


def test_a_body_left_half_read_is_drained_exactly_by_gunicorn(pair) -> None:
    server, client = pair
    body = gunicorn_body(server, len(BODY), BODY[:10])
    send_in_thread(client, BODY[10:] + NEXT)
    direct = SocketBody.of(body)
    got = direct.read(10) + direct.read(5000)
    assert got == BODY[: len(got)]
    rest = b""
    while block := body.read(1 << 16):  # what gunicorn does before the next request
        rest += block
    assert got + rest == BODY
    assert body.reader.unreader.read(len(NEXT)) == NEXT


def test_a_connection_closed_early_is_an_incomplete_body(pair) -> None:
    server, client = pair
    body = gunicorn_body(server, len(BODY), b"")
    send_in_thread(client, BODY[:5000], close=True)
    stream = LimitedStream(SocketBody.of(body), len(BODY) + 1, len(BODY))
    with pytest.raises(IncompleteBody) as raised:
        read_all(stream)
    assert raised.value.received == 5000


def test_other_streams_are_left_to_their_own_reader(pair) -> None:
    server, _ = pair
    assert SocketBody.of(None) is None
    assert SocketBody.of(object()) is None
    chunked = Body(ChunkedReader(None, SocketUnreader(server)))
    assert SocketBody.of(chunked) is None
    started = gunicorn_body(server, 100, BODY[:100])
    assert started.read(10) == BODY[:10]  # partly read through gunicorn: its buffer holds the rest
    assert SocketBody.of(started) is None
