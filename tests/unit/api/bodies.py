"""What the API tests send: the two tenants' API keys, request bodies in each upload format, a job submit."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

KEY_A, KEY_B = {"X-API-Key": "ka"}, {"X-API-Key": "kb"}


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    """`rows` as a CSV body with a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def to_ndjson(rows: list[dict[str, Any]]) -> bytes:
    """`rows` as an NDJSON body."""
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def multipart_body(data: bytes, filename: str, content_type: str) -> tuple[bytes, str]:
    """`data` as the file part of a multipart/form-data body; returns the body and its Content-Type."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def submit(client: Any, body: bytes, content_type: str, headers: dict[str, str] = KEY_A, query: str = "") -> Any:
    """POST /v1/jobs`query` with `body` as `content_type`."""
    return client.post(f"/v1/jobs{query}", data=body, headers={**headers, "Content-Type": content_type})
