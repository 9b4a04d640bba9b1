"""CPU seconds of each stage of a job's data path in the API: per GB uploaded and per million result rows sent.

Every figure is CPU time (user + system) of this process, the fastest of `--repeat` runs: on a shared machine
wall time moves with the load, CPU time much less. A body arrives over a real loopback socket from a sender
process (its CPU is not counted), read by gunicorn's own body reader as under `predictq serve`. Asserts nothing.

    python bench/bench_api_cpu.py                   # 1,000,000 rows (0.94 GB), 3 repeats
    python bench/bench_api_cpu.py --rows 200000     # quicker

Upload stages (s per GB): the socket floor, gunicorn's body reader, sha256, the quote count, cutting ranges,
writing them to a local store, and the whole path in one pass (socket, gunicorn, counted and hashed stream,
cut, store). Download stages (s per million rows): reading result files, decoding LZ4 Arrow IPC, numbering
rows, CSV encoding (the previous encoder beside the current one), gunicorn's chunk framing; the client's
own CPU for the hash it sends as Content-Digest. `predictq score` CPU against its wall time says how many
cores the in-process path uses.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from gunicorn.http.body import Body, LengthReader
from gunicorn.http.unreader import SocketUnreader

from api.heartbeat import HeartbeatStream
from api.uploads import LimitedStream, SocketBody
from jobs.blob_store import BlobStore
from jobs.staging import decode_table, encode_table
from model.ranges import parse_range, split_records
from model.scoring import load_scorer
from model.writers import iter_encoded

CHUNK_BYTES = 16 * 1024**2  # the API's default range size (PREDICTQ_CHUNK_BYTES)
BLOCK = 1 << 20  # what the API asks of its stream per read (model.readers.READ_BLOCK)
SEND_BLOCK = 1 << 20


def cpu_of(work: Callable[[], object], repeat: int) -> float:
    """Fewest CPU seconds (user + system, this process) of `repeat` runs of `work`."""
    best = float("inf")
    me = psutil.Process()
    for _ in range(repeat):
        before = me.cpu_times()
        work()
        after = me.cpu_times()
        best = min(best, (after.user - before.user) + (after.system - before.system))
    return best


# --- upload -------------------------------------------------------------------------------------------


def _send(path: str, port: int, block: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock, open(path, "rb") as source:
        while data := source.read(block):
            sock.sendall(data)


def over_socket(path: Path, receive: Callable[[socket.socket, int], object], block: int = SEND_BLOCK) -> None:
    """Send `path` from another process over loopback TCP; `receive(conn, size)` reads it here."""
    size = path.stat().st_size
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = multiprocessing.get_context("fork").Process(target=_send, args=(str(path), server.getsockname()[1],
                                                                                  block))
        sender.start()
        conn, _ = server.accept()
        with conn:
            receive(conn, size)
        sender.join()


def recv_floor(conn: socket.socket, size: int) -> None:
    """The kernel's copy and nothing else: recv_into one reused buffer."""
    view = memoryview(bytearray(BLOCK))
    got = 0
    while n := conn.recv_into(view):
        got += n
    assert got == size


def gunicorn_reader(conn: socket.socket, size: int) -> Body:
    """A Content-Length body as gunicorn hands it to the app (`wsgi.input`)."""
    return Body(LengthReader(SocketUnreader(conn), size))


def gunicorn_read(conn: socket.socket, size: int) -> None:
    body = gunicorn_reader(conn, size)
    got = 0
    while data := body.read(BLOCK):
        got += len(data)
    assert got == size


def socket_body_read(conn: socket.socket, size: int) -> None:
    stream = SocketBody.of(gunicorn_reader(conn, size))
    assert stream is not None
    got = 0
    while data := stream.read(BLOCK):
        got += len(data)
    assert got == size


def blocks_of(data: bytes) -> list[bytes]:
    return [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]


def hash_blocks(blocks: list[bytes]) -> None:
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(block)


def numpy_parity(blocks: list[bytes]) -> None:
    for block in blocks:
        np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == 34)


def bytes_count_parity(blocks: list[bytes]) -> None:
    for block in blocks:
        block.count(b'"')


def cut(data: bytes, columns: list[str]) -> list[list[bytes]]:
    """The ranges `split_records` cuts from the body (kept, so the store stage can write them)."""
    return list(split_records(io.BytesIO(data), "csv", target_bytes=CHUNK_BYTES, columns=columns).ranges)


def store_writes(store: BlobStore, ranges: list[list[bytes]]) -> None:
    for index, parts in enumerate(ranges):
        store.write(store.staged_path("bench", index, "csv"), parts)
    store.delete_job("bench")


def whole_upload(store: BlobStore, columns: list[str], direct: bool) -> Callable[[socket.socket, int], None]:
    """Socket, the body reader (gunicorn's, or `api.uploads.SocketBody` when `direct`), the counted and hashed
    stream, the cut, the store: the API's upload path without Flask and Redis."""

    def receive(conn: socket.socket, size: int) -> None:
        raw = gunicorn_reader(conn, size)
        body = LimitedStream((SocketBody.of(raw) if direct else None) or raw, size + 1, size, ("sha-256",))
        ranges = split_records(HeartbeatStream(body), "csv", target_bytes=CHUNK_BYTES, columns=columns)
        for index, parts in enumerate(ranges.ranges):
            store.write(store.staged_path("bench", index, "csv"), parts)
        body.finish()
        store.delete_job("bench")

    return receive


def upload_rows(path: Path, store: BlobStore, columns: list[str], repeat: int) -> list[tuple[str, float]]:
    gb = path.stat().st_size / 1e9
    data = path.read_bytes()
    blocks = blocks_of(data)
    ranges = cut(data, columns)
    rows = [
        ("socket recv_into, one reused buffer (floor)", cpu_of(lambda: over_socket(path, recv_floor), repeat)),
        ("gunicorn body reader, read(1 MiB) (socket included; previous)",
         cpu_of(lambda: over_socket(path, gunicorn_read), repeat)),
        ("api.uploads.SocketBody, read(1 MiB) (socket included; current)",
         cpu_of(lambda: over_socket(path, socket_body_read), repeat)),
        ("sha256 of 1 MiB blocks", cpu_of(lambda: hash_blocks(blocks), repeat)),
        ("quote count, numpy (used)", cpu_of(lambda: numpy_parity(blocks), repeat)),
        ("quote count, bytes.count", cpu_of(lambda: bytes_count_parity(blocks), repeat)),
        ("cut into ranges (split_records on memory, quote count included)", cpu_of(lambda: cut(data, columns),
                                                                                    repeat)),
        ("write the ranges to a local store", cpu_of(lambda: store_writes(store, ranges), repeat)),
        ("whole path, previous: socket + gunicorn's reader + LimitedStream(sha256) + cut + store",
         cpu_of(lambda: over_socket(path, whole_upload(store, columns, False)), repeat)),
        ("whole path, current: socket + SocketBody + LimitedStream(sha256) + cut + store",
         cpu_of(lambda: over_socket(path, whole_upload(store, columns, True)), repeat)),
    ]
    return [(name, seconds / gb) for name, seconds in rows]


# --- download -----------------------------------------------------------------------------------------


def result_files(path: Path, store: BlobStore, columns: list[str]) -> tuple[list[str], list[int]]:
    """Score the file chunk by chunk as the workers do and store each result as they do (LZ4 Arrow IPC)."""
    scorer = load_scorer()
    data = path.read_bytes()
    body = split_records(io.BytesIO(data), "csv", target_bytes=CHUNK_BYTES, columns=columns)
    paths, records = [], []
    for index, parts in enumerate(body.ranges):
        chunk = parse_range(b"".join(parts), "csv", body.header, columns=columns)
        table = scorer.score_frame(chunk.table).to_arrow()
        table = table.select(sorted(table.column_names))
        paths.append(store.output_path("bench", index, "t", "res"))
        store.write(paths[-1], encode_table(table))
        records.append(chunk.rows)
    return paths, records


def numbered(tables: list[pa.Table], records: list[int]) -> Iterator[pa.Table]:
    """The tables with global row numbers (as `JobService._iter_tables` does)."""
    offset = 0
    for table, count in zip(tables, records, strict=True):
        if offset:
            at = table.schema.get_field_index("row")
            table = table.set_column(at, "row", pc.add(table["row"], pa.scalar(offset, pa.int64())))
        yield table
        offset += count


_FORMULA_START = r"^[=+\-@\t\r]"


def _previous_csv_safe(table: pa.Table) -> pa.Table:
    """`model.writers._csv_safe` before it skipped columns with nothing to change."""
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.match_substring_regex(column, _FORMULA_START)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        elif pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))
        columns.append(column)
    names = [f"'{n}" if re.match(_FORMULA_START, n) else n for n in table.column_names]
    return pa.table(columns, names=names)


def previous_csv(tables: Iterator[pa.Table]) -> Iterator[bytes]:
    """The CSV encoder before this change: every float column rewritten, 20,000-row slices, BytesIO."""
    first = True
    for table in tables:
        table = table.select(sorted(table.column_names))
        for start in range(0, table.num_rows, 20_000):
            out = io.BytesIO()
            pacsv.write_csv(_previous_csv_safe(table.slice(start, 20_000)), out,
                            write_options=pacsv.WriteOptions(include_header=first))
            first = False
            yield out.getvalue()


def chunk_framing(blocks: Iterator[bytes]) -> None:
    """gunicorn's chunked transfer framing of each block (`gunicorn.util.write_chunk` without the send)."""
    for block in blocks:
        b"".join([f"{len(block):X}\r\n".encode(), block, b"\r\n"])


def drain(blocks: Iterator[bytes]) -> int:
    return sum(len(b) for b in blocks)


def download_rows(store: BlobStore, paths: list[str], records: list[int], repeat: int) -> list[tuple[str, float]]:
    millions = sum(records) / 1e6
    raw = [store.read(p) for p in paths]
    tables = [decode_table(b) for b in raw]
    rows = [
        ("read result files from the store", cpu_of(lambda: [store.read(p) for p in paths], repeat)),
        ("decode LZ4 Arrow IPC", cpu_of(lambda: [decode_table(b) for b in raw], repeat)),
        ("number rows (offset add)", cpu_of(lambda: list(numbered(tables, records)), repeat)),
        ("CSV encoding, previous (every float column rewritten, BytesIO)",
         cpu_of(lambda: drain(previous_csv(iter(tables))), repeat)),
        ("CSV encoding, current (model.writers.iter_encoded)", cpu_of(lambda: drain(iter_encoded(tables, "csv")),
                                                                     repeat)),
        ("CSV encoding (current) and gunicorn's chunk framing of each block",
         cpu_of(lambda: chunk_framing(iter_encoded(tables, "csv")), repeat)),
        ("whole path: read + decode + number + encode (current, 1 thread)",
         cpu_of(lambda: drain(iter_encoded(numbered([decode_table(store.read(p)) for p in paths], records), "csv")),
                repeat)),
    ]
    out = [(name, seconds / millions) for name, seconds in rows]
    for threads in (1, 2):
        start, cpu = time.perf_counter(), cpu_of(lambda t=threads: drain(iter_encoded(tables, "csv", threads=t)), 1)
        wall = time.perf_counter() - start
        out.append((f"CSV encoding on {threads} thread(s): wall s per million rows (CPU {cpu / millions:.3f})",
                    wall / millions))
    return out


def budget(path: Path, rows: int) -> None:
    """One 2-worker job against `predictq up`, every process's CPU seconds: the client (this thread), the API
    (gunicorn processes, upload and download apart), the workers (Celery pool processes)."""
    from loadtest import local_stack
    from run_all import Sampler, processes, stack_env

    from predictq.client import Client

    with tempfile.TemporaryDirectory(prefix="predictq-bench-") as logs, local_stack(
        2, Path(logs), stack_env(Path(logs))
    ) as stack:
        client = Client(stack.url, stack.key, timeout=600)
        api_up, api_down = Sampler(lambda: processes(stack, "gunicorn")), Sampler(lambda: processes(stack, "gunicorn"))
        workers = Sampler(lambda: processes(stack, "celery"))
        with workers.running():
            start, cpu = time.perf_counter(), time.thread_time()
            with api_up.running():
                job = client.submit(path)
            uploaded, cpu_up = time.perf_counter(), time.thread_time()
            final = client.wait(job.id, interval=0.05, timeout=1800)
            done, cpu_wait = time.perf_counter(), time.thread_time()
            with open(os.devnull, "wb") as sink, api_down.running():
                client.download(job.id, sink, "csv")
            end, cpu_down = time.perf_counter(), time.thread_time()
    assert final["state"] == "succeeded" and final["rows_done"] == rows, final
    per = 1e6 / rows
    parts = [("client submit (sha256 pass + send)", (cpu_up - cpu) * per),
             ("client polling", (cpu_wait - cpu_up) * per),
             ("client download (receive, write to /dev/null)", (cpu_down - cpu_wait) * per),
             ("API upload (all gunicorn processes)", api_up.cpu_seconds * per),
             ("API download, CSV", api_down.cpu_seconds * per),
             ("workers (all pool processes, whole job)", workers.cpu_seconds * per)]
    print(f"\n| one {rows:,}-row job, 2 worker processes | CPU s per million rows |\n|---|---|")
    for name, value in parts:
        print(f"| {name} | {value:.2f} |")
    total = sum(v for _, v in parts)
    print(f"| sum | {total:.2f} |")
    print(f"\njob wall {end - start:.2f} s: upload {uploaded - start:.2f} + score {done - uploaded:.2f} + "
          f"download {end - done:.2f}; CPU floor on 2 cores {total / per / 2:.2f} s", flush=True)


# --- client and in-process ----------------------------------------------------------------------------


def client_hash(path: Path, repeat: int) -> float:
    """CPU of the client's separate pass that hashes the file for Content-Digest (predictq.client.submit)."""

    def work() -> None:
        with path.open("rb") as stream:
            hashlib.file_digest(stream, "sha256")

    return cpu_of(work, repeat) / (path.stat().st_size / 1e9)


def score_cores(path: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `predictq score` process (its children included)."""
    predictq = str(Path(sys.executable).with_name("predictq"))
    start = time.perf_counter()
    before = os.times()
    subprocess.run([predictq, "score", str(path), "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
    after = os.times()
    wall = time.perf_counter() - start
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the synthetic CSV (default 1,000,000).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each stage; the fewest CPU seconds count.")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/predictq-bench"), help="Data files (kept).")
    parser.add_argument("--no-score", action="store_true", help="Skip the `predictq score` core count.")
    parser.add_argument("--stack", action="store_true", help="Also run one job on `predictq up` and print the "
                        "CPU seconds of the client, the API and the workers (the 2-core budget).")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"synth_{args.rows}.csv"
    if not path.exists():
        predictq = str(Path(sys.executable).with_name("predictq"))
        subprocess.run([predictq, "synth", "--rows", str(args.rows), "--seed", "1", "-o", str(path)], check=True,
                       stdout=subprocess.DEVNULL)
    scorer_columns = list(load_scorer().required_columns)
    print(f"bench_api_cpu: {path.name} ({path.stat().st_size / 1e9:.2f} GB), best of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="predictq-bench-cpu-"))
    try:
        store = BlobStore.from_uri(str(folder / "store"))
        print("\n| upload stage | CPU s per GB |\n|---|---|", flush=True)
        for name, value in upload_rows(path, store, scorer_columns, args.repeat):
            print(f"| {name} | {value:.3f} |", flush=True)
        paths, records = result_files(path, store, scorer_columns)
        print("\n| download stage (CSV) | CPU s per million rows |\n|---|---|", flush=True)
        for name, value in download_rows(store, paths, records, args.repeat):
            print(f"| {name} | {value:.3f} |", flush=True)
        print(f"\nclient: sha256 pass over the file for Content-Digest: {client_hash(path, args.repeat):.3f} "
              "CPU s per GB", flush=True)
        if args.stack:
            budget(path, args.rows)
        if not args.no_score:
            wall, cpu = score_cores(path, folder / "scored.csv")
            print(f"`predictq score` {args.rows:,} rows: {wall:.2f} s wall, {cpu:.2f} CPU s: "
                  f"{cpu / wall:.2f} cores busy on average", flush=True)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
