"""The JSON-array reader: a top-level array of objects (or one object) read a block at a time, never whole."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from model.errors import RowError
from model.readers import jsontext
from model.readers.chunks import Piece, ReadError, check_columns
from model.readers.jsontext import columns_of, kept_values
from model.readers.source import MAX_RECORD_BYTES, Source, count_newlines

_WS = b" \t\r\n"
_AFTER_OBJECT = re.compile(rb"[ \t\r\n]*,")
# a string (possibly cut short by the end of the buffer) or one structural character
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{},]', re.S)
_ELEMENT_GAP = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")
_CANDIDATES = 4  # boundaries tried from the end of a block before falling back to the exact scanner
MAX_DEPTH = 512


def json_pieces(source: Source, required: list[str], keep: list[str]) -> Iterator[Piece]:
    """Parse a JSON array (or a single object) without loading it whole: see `_JsonArray`."""
    yield from _JsonArray(source, required, keep).pieces()


class _JsonArray:
    """Streams a top-level JSON array: cut each block after a `}` followed by a comma, parse the cut at once.

    A cut inside a string or inside a nested value cannot make `[` + cut + `]` valid JSON (the string or a
    bracket stays open), so a successful parse proves the cut sat between two top-level elements; when no
    candidate parses, a token scanner finds the true last top-level comma.
    """

    def __init__(self, source: Source, required: list[str], keep: list[str]) -> None:
        self.source = source
        self.required = required
        self.keep = keep
        self.buf = b""
        self.line = 1  # line number of buf[0]
        self.column = 1  # 1-based character column of buf[0]
        self.done = 0
        self.checked = False

    def pieces(self) -> Iterator[Piece]:
        """Pieces of consecutive elements, then the last ones with the closing bracket."""
        first = self._first_token()
        if first == b"{":
            yield self._piece([self._loads(self._read_rest(), whole=True)])
            return
        if first != b"[":
            raise self._malformed(0, "a JSON body must be an array of objects or one object")
        self._advance(1)
        while (piece := self._next_piece()) is not None:
            yield piece
        rest = self._read_rest()
        if self.done and rest.lstrip(_WS).startswith(b"]"):
            raise self._malformed(0, "a comma before the closing bracket")
        values = self._loads(b"[" + rest, whole=False)
        if values:
            yield self._piece(values)
        if self.done == 0:
            raise ReadError("empty", "the JSON array is empty")

    def _first_token(self) -> bytes:
        """The first non-blank byte of the body (raising `empty` when there is none)."""
        while True:
            stripped = self.buf.lstrip(_WS)
            self._advance(len(self.buf) - len(stripped))  # blanks are dropped as they come: none are held
            if stripped or self.source.eof:
                break
            self.buf += self.source.read()
        if not stripped:
            raise ReadError("empty", "the body is empty")
        return stripped[:1]

    def _next_piece(self) -> Piece | None:
        """The complete elements at the front of the buffer (parsed values freed on return), or None at the tail."""
        if self.checked and (piece := self._objects_piece()) is not None:
            return piece
        values = self._next_values()
        return None if values is None else self._piece(values)

    def _objects_piece(self) -> Piece | None:
        """The fast path: the block up to its last `},` split at every `},{` and each object parsed alone.

        Parsing objects one at a time and keeping only their kept values is about twice as fast as parsing
        the block as one array. If every part parses as an object, the parts are exactly the elements: a
        split inside a string or a nested value leaves a part that is not valid JSON. Otherwise None.
        """
        if len(self.buf) < self.source.block and not self.source.eof:
            self.buf += self.source.read(self.source.block - len(self.buf))
        cut = next(self._candidates(), None)
        if cut is None:
            return None
        # NUL cannot appear raw in valid JSON, so it is a safe separator
        parts = _ELEMENT_GAP.sub(b"}\x00{", self.buf[: cut - 1]).split(b"\x00")
        values = kept_values(parts, self.keep)
        if values is None:
            return None
        if max(map(len, parts)) > MAX_RECORD_BYTES:
            raise self._too_long()
        self._advance(cut)
        first, self.done = self.done, self.done + len(parts)
        return Piece(np.arange(first, self.done, dtype=np.int64), values, [], self.done)

    def _next_values(self) -> list[Any] | None:
        """The complete elements at the front of the buffer, or None when only the array's tail is left."""
        while True:
            if len(self.buf) < self.source.block and not self.source.eof:
                self.buf += self.source.read(self.source.block - len(self.buf))  # about one block parsed at a time
            for cut in self._candidates():
                try:
                    values = orjson.loads(b"[" + self.buf[: cut - 1] + b"]")
                except orjson.JSONDecodeError:
                    continue
                if len(values) == 1 and cut > MAX_RECORD_BYTES + 1:
                    raise self._too_long()
                self._advance(cut)
                return values
            cut, closed = self._scan()
            if cut is not None:
                values = self._loads(b"[" + self.buf[: cut - 1] + b"]", whole=False)
                self._advance(cut)
                return values
            if closed or self.source.eof:
                return None
            if len(self.buf) > MAX_RECORD_BYTES:
                raise self._too_long()
            self.buf += self.source.read()

    def _candidates(self) -> Iterator[int]:
        """Indices just past `},` (blanks allowed before the comma), from the end of the buffer."""
        end = len(self.buf)
        for _ in range(_CANDIDATES):
            end = self.buf.rfind(b"}", 0, end)
            while end >= 0 and not (match := _AFTER_OBJECT.match(self.buf, end + 1)):
                end = self.buf.rfind(b"}", 0, end)
            if end < 0:
                return
            yield match.end()

    def _scan(self) -> tuple[int | None, bool]:
        """Exact index past the last top-level comma in the buffer, and whether the array's `]` was seen."""
        depth = 0
        last = None
        for token in _TOKEN.finditer(self.buf):
            kind = token.group()[:1]
            if kind in b"[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ReadError("too_deep", f"the JSON body nests deeper than {MAX_DEPTH} levels", line=self.line)
            elif kind in b"]}":
                depth -= 1
                if depth < 0:
                    return last, True
            elif kind == b"," and depth == 0:
                last = token.end()
        return last, False

    def _read_rest(self) -> bytes:
        """The rest of the body, which holds at most one element plus the closing bracket."""
        while not self.source.eof:
            if len(self.buf) > MAX_RECORD_BYTES + self.source.block:
                raise self._too_long()
            self.buf += self.source.read()
        return self.buf

    def _loads(self, text: bytes, *, whole: bool) -> Any:
        """Parse `text` (a body or `[` + part of buf), accepting NaN/Infinity/overflow; else `malformed`."""
        try:
            return jsontext.loads(text)
        except orjson.JSONDecodeError as exc:
            raise self._malformed(exc.pos - (0 if whole else 1), str(exc.msg)) from None

    def _piece(self, values: list[Any]) -> Piece:
        """A piece from parsed elements: objects are records, anything else a row error."""
        records, rows, errors = [], [], []
        for index, value in enumerate(values, start=self.done):
            if type(value) is dict:
                records.append(value)
                rows.append(index)
            else:
                errors.append(RowError(index, None, "not a JSON object"))
        if not self.checked and records:
            check_columns(records[0], self.required, "the first record")
            self.checked = True
        self.done += len(values)
        return Piece(np.asarray(rows, dtype=np.int64), columns_of(records, self.keep), errors, self.done)

    def _advance(self, n: int) -> None:
        """Drop the first `n` bytes of the buffer, keeping track of line and column."""
        newlines = count_newlines(self.buf, 0, n)
        start = self.buf.rfind(b"\n", 0, n) + 1
        width = len(self.buf[start:n].decode("utf-8", "replace"))
        self.line += newlines
        self.column = width + 1 if newlines else self.column + width
        self.buf = self.buf[n:]

    def _malformed(self, pos: int, reason: str) -> ReadError:
        """A `malformed` (or `too_deep`) error at byte `pos` of the buffer, with its line and column."""
        pos = max(0, min(pos, len(self.buf)))
        newlines = self.buf.count(b"\n", 0, pos)
        start = self.buf.rfind(b"\n", 0, pos) + 1
        width = len(self.buf[start:pos].decode("utf-8", "replace"))
        line = self.line + newlines
        column = width + 1 if newlines else self.column + width
        code = "too_deep" if "depth" in reason else "malformed"
        return ReadError(code, f"the JSON body is malformed at line {line}, column {column}: {reason}", line, column)

    def _too_long(self) -> ReadError:
        return ReadError("line_too_long", f"a JSON element is longer than {MAX_RECORD_BYTES} bytes", line=self.line)

