"""The transport edge, with every part real: nginx (Debian's binary) running the repository's own proxy
configuration, deploy/nginx/predictq.conf.template, rendered as the nginx image renders it for compose, in front
of gunicorn with predictq.gunicorn_conf, and real Celery workers. Slow clients, streamed uploads, the JSON error
shape of errors the edge answers itself, and logs that never carry a credential."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import requests

from core.settings import Settings
from model.synth import write_synth
from predictq.localredis import free_port
from tests.integration.servers import ApiServer, gunicorn_server

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "predictq.conf.template"
UPLOAD_LIMIT = 12_000_000
START_TIMEOUT = 60.0


def nginx_binary() -> str:
    """Debian's nginx (run_tests.sh installs it when absent); the tests skip, saying so, without one."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip("nginx not found: run_tests.sh installs Debian's nginx when run as root (apt-get install nginx)")
    return found


def render_template(variables: dict[str, str]) -> str:
    """The proxy configuration as the nginx image's envsubst step writes it: each ${NAME} replaced."""
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
    # envsubst would also replace $NAME: nginx's own variables are lower case, so any upper-case one is ours.
    assert not re.findall(r"\$\{?[A-Z][A-Z0-9_]*", text), "a template variable was left unrendered"
    return text


@dataclasses.dataclass
class Process:
    """A server process started by a test, with its log files."""

    name: str
    process: subprocess.Popen[bytes]
    logs: list[Path]

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process group: `sig` first, SIGKILL if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def wait_until_answering(url: str, process: Process) -> None:
    """Poll `url` until it answers 200 (or fail with the process's log)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.process.poll() is None, process.log_text()[-4000:]
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=5).status_code == 200:
                return
        assert time.monotonic() < deadline, process.log_text()[-4000:]
        time.sleep(0.2)


def api_env(settings: Settings, keys: str) -> dict[str, str]:
    """The API's environment: the test's Redis and queue, `keys`, one gunicorn worker with two threads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREDICTQ_", "PROMETHEUS_"))}
    return env | {
        "REDIS_URL": settings.redis_url, "PREDICTQ_QUEUE": settings.queue_name,
        "PREDICTQ_CHUNK_ROWS": str(settings.chunk_rows), "PREDICTQ_API_KEYS": keys,
        "PREDICTQ_CHUNK_BYTES": str(settings.chunk_bytes), "PREDICTQ_STORE_URI": settings.store_uri,
        "PREDICTQ_STORE_RESERVE_BYTES": str(settings.store_reserve_bytes),
        "PREDICTQ_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "PREDICTQ_API_WORKERS": "1", "PREDICTQ_API_THREADS": "2",
        "PYTHONUNBUFFERED": "1",
    }


def start_proxy(upstream: str, log_dir: Path, *, wait_for: str | None = "/healthz") -> tuple[Process, int]:
    """nginx running the repository's template (rendered for loopback ports) in front of `upstream`."""
    port = free_port()
    conf_dir = log_dir / "nginx"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / "predictq.conf").write_text(render_template({
        "PROXY_LISTEN": f"127.0.0.1:{port}", "PROXY_UPSTREAM": upstream, "NGINX_LOCAL_RESOLVERS": "127.0.0.1",
        "PREDICTQ_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    }))
    # The image's own nginx.conf does this part: process settings, temp paths, and `include` of the template.
    temp = "\n".join(f"    {kind}_temp_path {conf_dir}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private temp folder
    (conf_dir / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {conf_dir}/nginx.pid;\n"
        f"error_log {log_dir}/proxy-main-error.log notice;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n{temp}\n    include {conf_dir}/predictq.conf;\n}}\n"
    )
    logs = [log_dir / "proxy-access.log", log_dir / "proxy-error.log", log_dir / "proxy-main-error.log"]
    argv = [nginx_binary(), "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e", str(logs[2])]
    # The template logs to /dev/stdout and /dev/stderr, as in the container: here they are files.
    with logs[0].open("ab") as out, logs[1].open("ab") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    proxy = Process("proxy", process, logs)
    if wait_for:
        wait_until_answering(f"http://127.0.0.1:{port}{wait_for}", proxy)
    else:
        deadline = time.monotonic() + START_TIMEOUT
        while not port_open(port):
            assert process.poll() is None and time.monotonic() < deadline, proxy.log_text()
            time.sleep(0.1)
    return proxy, port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclasses.dataclass
class Edge:
    """gunicorn and nginx in front of it, both on loopback."""

    api: ApiServer
    proxy: Process
    proxy_port: int
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def api_port(self) -> int:
        return self.api.port


def test_keys() -> dict[str, str]:
    """Two configured keys (tenants acme and globex), and one that is not configured (a typo is a secret too)."""
    return {name: f"{name}-{os.urandom(12).hex()}" for name in ("acme", "globex", "unknown")}


test_keys.__test__ = False  # a helper, not a test


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    return dataclasses.replace(worker_settings, chunk_rows=2_000, chunk_bytes=1_800_000)


@contextlib.contextmanager
def running_edge(settings: Settings, keys: dict[str, str], log_dir: Path) -> Iterator[Edge]:
    """gunicorn (1 worker x 2 threads) with `keys` (tenant -> key; "unknown" is not configured) behind nginx,
    both stopped on exit."""
    configured = ",".join(f"{key}:{tenant}" for tenant, key in keys.items() if tenant != "unknown")
    with gunicorn_server(api_env(settings, configured), log_dir / "api.log") as api:
        proxy, proxy_port = start_proxy(f"127.0.0.1:{api.port}", log_dir)
        try:
            yield Edge(api, proxy, proxy_port, keys)
        finally:
            proxy.stop(signal.SIGQUIT)  # nginx's graceful stop


@pytest.fixture
def edge(worker_settings: Settings, tmp_path: Path) -> Iterator[Edge]:
    """The edge for one test, on the test's settings (workers started by the test see the same queue)."""
    with running_edge(worker_settings, test_keys(), tmp_path) as stack:
        yield stack


def raw_exchange(port: int, data: bytes, timeout: float = 15.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (or `timeout` passes)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def split_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), answer[:300]
    headers = dict(line.split(":", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, v in headers.items()}, body


def assert_json_error(answer: bytes, status: int, code: str) -> dict[str, Any]:
    """The answer is `status` with the one JSON error shape and the `code` given."""
    got, headers, body = split_answer(answer)
    assert got == status, answer[:400]
    assert headers["content-type"] == "application/json", headers
    error = orjson.loads(body)["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code, error
    assert isinstance(error["message"], str) and isinstance(error["details"], dict)
    return error


def csv_body(tmp_path: Path, rows: int) -> bytes:
    path = tmp_path / f"rows-{rows}.csv"
    write_synth(path, rows, seed=5)
    return path.read_bytes()


def wait_for_job(url: str, key: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := requests.get(url, headers={"X-API-Key": key}, timeout=10).json())["state"] not in states:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


# ---- credentials never reach a log ----

def credential_requests(key: str, job_id: str) -> list[bytes]:
    """Raw requests carrying `key` in every place a client might put it, well formed or not."""
    basic_user = base64.b64encode(f"{key}:".encode()).decode()
    basic_password = base64.b64encode(f":{key}".encode()).decode()
    head = "Host: edge\r\nConnection: close\r\n"
    lines = [
        f"GET /v1/jobs/{job_id} HTTP/1.1\r\n{head}Authorization: Bearer {key}\r\n",
        f"GET /v1/jobs/{job_id} HTTP/1.1\r\n{head}X-API-Key: {key}\r\n",
        f"GET /v1/jobs/{job_id} HTTP/1.1\r\n{head}Authorization: Basic {basic_user}\r\n",
        f"GET /v1/jobs HTTP/1.1\r\n{head}Authorization: Basic {basic_password}\r\n",
        f"GET /v1/jobs?api_key={key} HTTP/1.1\r\n{head}",
        f"GET /v1/jobs?limit=2&token={key}&access_token={key}&key={key} HTTP/1.1\r\n{head}",
        f"GET /v1/jobs/{key} HTTP/1.1\r\n{head}X-API-Key: {key}\r\n",
        f"GET /v1/jobs/{key}/results?api_key={key} HTTP/1.1\r\n{head}",
        f"GET /{key} HTTP/1.1\r\n{head}Referer: http://client.example/?api_key={key}\r\n",
        f"GET /predict/{quote(key)}%2F HTTP/1.1\r\n{head}",
        f"{key} /v1/jobs HTTP/1.1\r\n{head}",  # a key where the method goes
        f"GET /v1/jobs {key}\r\n{head}",  # where the version goes
        f"GET /v1/jobs?api_key={key} HTTP/9.9\r\n{head}",
        f"GET /v1/jobs?api_key={key} HTTP/1.1\r\n{head}{key}\x01: x\r\n",  # an invalid header name
        f"GET /v1/jobs?api_key={key}&pad={'a' * 9000} HTTP/1.1\r\n{head}",  # 414
        f"GET /v1/jobs?api_key={key} HTTP/1.1\r\n{head}X-Pad: {key}{'a' * 9000}\r\n",  # 431
        f"POST /v1/jobs?api_key={key} HTTP/1.1\r\n{head}Authorization: Bearer {key}\r\n"
        f"Transfer-Encoding: chunked\r\nContent-Type: text/csv\r\n\r\nzz{key}\r\n",  # bad chunk size
    ]
    return [(line if line.endswith("\r\n\r\n") else line + "\r\n").encode("latin-1") for line in lines]


def test_no_key_reaches_any_log(edge: Edge, celery_workers: Any, tmp_path: Path) -> None:
    """Keys sent every way, to the proxy and to gunicorn directly, with a real job scored on the way: afterwards
    no log file of nginx, gunicorn or the Celery worker holds any key, nor its base64 or percent-encoded form."""
    worker_log = celery_workers.start().split("@")[0] + ".log"
    keys = edge.keys
    answered = requests.post(f"{edge.url}/v1/jobs", data=csv_body(tmp_path, 3_000), timeout=60,
                             auth=(keys["acme"], ""), headers={"Content-Type": "text/csv"})
    assert answered.status_code == 202, answered.text
    job_id = answered.json()["id"]
    job = wait_for_job(f"{edge.url}/v1/jobs/{job_id}?api_key={keys['acme']}", keys["acme"], {"succeeded", "failed"})
    assert job["state"] == "succeeded"
    statuses: dict[tuple[str, int], list[bytes]] = {}
    for name, key in keys.items():
        for port in (edge.proxy_port, edge.api_port):
            for request in credential_requests(key, job_id):
                answer = raw_exchange(port, request)
                status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else b"closed"
                statuses.setdefault((name, port), []).append(status)
    for port in (edge.proxy_port, edge.api_port):
        # Bearer, X-API-Key, Basic user, Basic password: one tenant mapping (globex cannot see acme's job).
        assert statuses["acme", port][:4] == [b"200"] * 4
        assert statuses["globex", port][:4] == [b"404", b"404", b"404", b"200"]
        assert statuses["unknown", port][:4] == [b"401"] * 4
        assert {b"400", b"404", b"414", b"431"} <= set(statuses["acme", port][4:])

    edge.proxy.stop(signal.SIGQUIT)  # everything is written; gunicorn writes each line as it logs it
    celery_workers.stop_all()
    logs = sorted(tmp_path.rglob("*.log"))
    assert {p.name for p in logs} == {"api.log", "proxy-access.log", "proxy-error.log", "proxy-main-error.log",
                                      worker_log}
    text = {p.name: p.read_text(errors="replace") for p in logs}
    # The logs did record all this (so the test can fail): routes and statuses, the worker's job.
    assert '"GET /v1/jobs/<job_id> HTTP/1.1" 200' in text["proxy-access.log"]
    assert '"GET /v1/jobs/<job_id> HTTP/1.1" 200' in text["api.log"]
    assert '"OTHER - -" 400' in text["proxy-access.log"]
    assert "invalid request from ip=127.0.0.1: InvalidRequestMethod" in text["api.log"]
    assert job_id in text[worker_log]
    for key in keys.values():
        forms = {key, quote(key), base64.b64encode(f"{key}:".encode()).decode()[:-4],
                 base64.b64encode(f":{key}".encode()).decode()[4:-4]}
        for name, content in text.items():
            leaked = [line for line in content.splitlines() if any(form in line for form in forms)]
            assert not leaked, f"{name} holds a key: {leaked[:5]}"


# ---- slow clients ----

class Tricklers:
    """Connections that send a request's header one line at a time, slowly, and never finish it on their own."""

    def __init__(self, port: int, count: int, interval: float = 0.25) -> None:
        self.interval = interval
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n")
        self.lines_sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        line = 0
        while not self._stop.wait(self.interval):
            line += 1
            for sock in self.sockets:
                sock.sendall(b"X-Trickle-%d: 1\r\n" % line)
            self.lines_sent = line

    def finish(self) -> list[int]:
        """Stop trickling, end every header, and return each connection's answer status (0: none)."""
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.sockets:
            sock.sendall(b"\r\n")
        statuses = []
        for sock in self.sockets:
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head and (more := sock.recv(65536)):
                    head += more
            status = head.split(b" ", 2)[1] if head.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in head else b"0"
            statuses.append(int(status))
        return statuses

    def close(self) -> None:
        self._stop.set()
        for sock in self.sockets:
            sock.close()


def probe_seconds(url: str, probes: int = 15) -> list[float]:
    """Wall time of `probes` /healthz requests, each on a new connection."""
    times = []
    for _ in range(probes):
        started = time.perf_counter()
        assert requests.get(f"{url}/healthz", timeout=5, headers={"Connection": "close"}).status_code == 200
        times.append(time.perf_counter() - started)
    return times


def test_trickling_clients_do_not_starve_the_api_behind_the_proxy(edge: Edge) -> None:
    """50 connections trickling their headers: /healthz through nginx still answers, median under 100 ms."""
    baseline = statistics.median(probe_seconds(edge.url))
    tricklers = Tricklers(edge.proxy_port, 50)
    try:
        while tricklers.lines_sent < 2:  # every connection is open and has sent part of its header
            time.sleep(0.05)
        loaded = probe_seconds(edge.url)
        trickled = tricklers.lines_sent
        statuses = tricklers.finish()
    finally:
        tricklers.close()
    print(f"/healthz through nginx: median {baseline * 1000:.1f} ms idle, {statistics.median(loaded) * 1000:.1f} ms "
          f"with 50 trickling connections (max {max(loaded) * 1000:.1f} ms)")
    # The proxy held all 50 requests open while the probes ran, and answered each once its header was complete.
    assert trickled >= 2 and statuses == [200] * 50
    assert baseline < 0.1
    assert statistics.median(loaded) < 0.1


def test_trickling_clients_starve_gunicorn_alone(edge: Edge) -> None:
    """The same 50 connections straight at gunicorn hold its threads: /healthz gets no answer until they finish."""
    tricklers = Tricklers(edge.api_port, 50)
    try:
        while tricklers.lines_sent < 2:
            time.sleep(0.05)
        with pytest.raises(requests.Timeout):
            requests.get(f"{edge.api_url}/healthz", timeout=3)
        statuses = tricklers.finish()
    finally:
        tricklers.close()
    assert statuses.count(200) >= 2  # those the threads were waiting on
    assert requests.get(f"{edge.api_url}/healthz", timeout=30).status_code == 200


# ---- uploads through the proxy ----

def test_upload_streams_through_the_proxy(edge: Edge, celery_workers: Any, tmp_path: Path) -> None:
    """A multi-MB chunked upload through nginx reaches the API while it is still being sent, and succeeds."""
    celery_workers.start()
    body = csv_body(tmp_path, 10_000)
    key = {"X-API-Key": edge.keys["acme"]}
    seen_mid_upload: list[dict[str, Any]] = []

    def send() -> Iterator[bytes]:
        half = len(body) // 2
        yield from (body[i : min(i + 65536, half)] for i in range(0, half, 65536))
        # Hold back the second half until the API has staged chunks of the first: nginx did not buffer the body.
        deadline = time.monotonic() + 60
        while not seen_mid_upload and time.monotonic() < deadline:
            jobs = requests.get(f"{edge.url}/v1/jobs", headers=key, timeout=10).json()["items"]
            seen_mid_upload.extend(job for job in jobs if not job["upload_complete"] and job["chunks_total"] >= 2)
            time.sleep(0.1)
        yield from (body[i : i + 65536] for i in range(half, len(body), 65536))

    answered = requests.post(f"{edge.url}/v1/jobs", data=send(), timeout=120,
                             headers={**key, "Content-Type": "text/csv"})
    assert answered.status_code == 202, answered.text
    assert len(body) > 5_000_000 and seen_mid_upload, "the API saw nothing of the upload before it ended"
    job = wait_for_job(f"{edge.url}/v1/jobs/{answered.json()['id']}", edge.keys["acme"], {"succeeded", "failed"})
    assert (job["state"], job["rows_total"], job["rows_done"]) == ("succeeded", 10_000, 10_000)


def listed_jobs(edge: Edge, key: str) -> list[dict[str, Any]]:
    """The first page of the key's jobs, through the proxy."""
    return requests.get(f"{edge.url}/v1/jobs", headers={"X-API-Key": key}, timeout=10).json()["items"]


def wait_until_all_failed(edge: Edge, key: str) -> list[dict[str, Any]]:
    """Poll the job listing until every job in it has failed; none may ever show as succeeded."""
    deadline = time.monotonic() + 60
    while True:
        items = listed_jobs(edge, key)
        assert all(job["state"] != "succeeded" for job in items), items
        if all(job["state"] == "failed" for job in items):
            return items
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


def send_cut_upload(port: int, key: str, body: bytes, cut: int, *, chunked: bool) -> socket.socket:
    """Start a CSV upload of `body` but send only its first `cut` bytes (the socket stays open)."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: edge\r\nX-API-Key: {key}\r\nContent-Type: text/csv\r\n"
                 f"{framing}\r\n\r\n".encode())
    for start in range(0, cut, 65536):
        piece = body[start : min(start + 65536, cut)]
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    return sock


@pytest.mark.parametrize(
    ("where", "chunked", "how"),
    [
        ("mid_record", False, "close"),
        ("record_boundary", False, "half_close"),
        ("inside_first_chunk", False, "close"),
        ("after_many_chunks", True, "close"),  # a chunked body that never sends its last chunk
        ("after_many_chunks", True, "bad_chunk_size"),
    ],
)
def test_an_upload_cut_behind_the_proxy_fails_its_job(edge: Edge, celery_workers: Any, job_service: Any,
                                                      tmp_path: Path, where: str, chunked: bool, how: str) -> None:
    """A client that stops mid-body at the proxy: nginx closes its connection to the API, and the API fails the
    job (`upload_incomplete`, nothing staged left), never seals it; the service carries on."""
    celery_workers.start()
    key = edge.keys["acme"]
    body = csv_body(tmp_path, 10_000)
    boundary = body.rindex(b"\n", 0, len(body) * 2 // 3) + 1
    cut = {"mid_record": boundary + 25, "record_boundary": boundary, "inside_first_chunk": 50_000,
           "after_many_chunks": boundary}[where]
    sock = send_cut_upload(edge.proxy_port, key, body, cut, chunked=chunked)
    listed: list[dict[str, Any]] = []
    with sock:
        deadline = time.monotonic() + 60
        while where != "inside_first_chunk" and not listed:  # the API is staging chunks: cut only now
            items = listed_jobs(edge, key)
            listed = [job for job in items if job["chunks_total"] >= 2]
            assert time.monotonic() < deadline, items
            time.sleep(0.1)
        if how == "bad_chunk_size":
            sock.sendall(b"zz\r\n")
            answer = b""
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while chunk := sock.recv(65536):
                    answer += chunk
            assert_json_error(answer, 400, "bad_request")  # nginx's answer; the API's body was cut
        if how == "half_close":
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while chunk := sock.recv(65536):
                    answer += chunk
            # nginx drops a client that ends its body early (logged as 400, nothing sent); the API's 400
            # incomplete_body for the cut body it received goes no further than nginx.
            assert answer == b""
    items = wait_until_all_failed(edge, key)
    if where == "inside_first_chunk":
        assert len(items) <= 1
    else:
        assert [job["id"] for job in items] == [listed[0]["id"]]
    for job in items:
        assert job["reason_code"] == "upload_incomplete", job
        # Nothing of it stays in the store: a chunk a worker was scoring when the upload broke deletes what it
        # wrote when its commit is refused (bounded wait for that worker to finish).
        deadline = time.monotonic() + 60
        while job["id"] in job_service.blobs.job_ids():
            assert time.monotonic() < deadline, f"files of {job['id']} left in the store"
            time.sleep(0.2)
    # Nothing else is affected: the next upload through the proxy succeeds.
    answered = requests.post(f"{edge.url}/v1/jobs", data=body[:boundary], timeout=60,
                             headers={"X-API-Key": key, "Content-Type": "text/csv"})
    assert answered.status_code == 202, answered.text
    job = wait_for_job(f"{edge.url}/v1/jobs/{answered.json()['id']}", key, {"succeeded", "failed"})
    assert job["state"] == "succeeded"



def test_a_streamed_upload_over_the_limit_is_refused_by_the_proxy(edge: Edge, tmp_path: Path) -> None:
    """nginx holds PREDICTQ_MAX_UPLOAD_BYTES too: past it, the client gets nginx's 413 and the API, whose body
    was cut, fails whatever job it had started (never a succeeded job)."""
    key = edge.keys["acme"]
    body = csv_body(tmp_path, 14_000)
    assert len(body) > UPLOAD_LIMIT
    sock = send_cut_upload(edge.proxy_port, key, body, 0, chunked=True)
    answer = b""
    with sock:
        with contextlib.suppress(OSError):  # nginx stops reading once it has answered
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert_json_error(answer, 413, "too_large")
    items = wait_until_all_failed(edge, key)
    assert all(job["reason_code"] == "upload_incomplete" for job in items), items


# ---- errors the edge answers itself: the one JSON shape ----

@pytest.fixture(scope="module")
def edge_for_errors(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """One gunicorn + nginx pair for the malformed-request cases (they change nothing in Redis)."""
    log_dir = tmp_path_factory.mktemp("edge-errors")
    settings = dataclasses.replace(Settings(), redis_url=redis_server, queue_name="predictq-edge-errors")
    with running_edge(settings, {"acme": ERRORS_KEY}, log_dir) as stack:
        yield stack


HOST = b"Host: edge\r\n"
ERRORS_KEY = "edge-errors-key"
AUTH = b"X-API-Key: edge-errors-key\r\n"
MALFORMED = {
    "bad_request_line": b"GARBAGE\r\n\r\n",
    "key_as_method": b"s3cr3t-key /v1/jobs HTTP/1.1\r\n" + HOST + b"\r\n",
    "bad_version": b"GET /healthz HTTP/9.9\r\n" + HOST + b"\r\n",
    "bad_header_name": b"GET /healthz HTTP/1.1\r\n" + HOST + b"Bad Name: x\r\n\r\n",
    "long_uri": b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
    "large_header": b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
    "many_headers": b"GET /healthz HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
    "unsupported_coding": b"POST /v1/jobs HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n",
    "missing_host": b"GET /healthz HTTP/1.1\r\n\r\n",
    "trace": b"TRACE /healthz HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
    "declared_too_large": b"POST /v1/jobs HTTP/1.1\r\n" + HOST + AUTH + b"Content-Type: text/csv\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (UPLOAD_LIMIT + 1),
    "bad_chunk_size": b"POST /v1/jobs HTTP/1.1\r\n" + HOST + AUTH + b"Content-Type: text/csv\r\n"
                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nx\r\n",
    "unknown_route": b"GET /nowhere HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
}


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("bad_request_line", 400, "bad_request"),
        ("key_as_method", 400, "bad_request"),
        ("bad_version", 505, "http_version_not_supported"),
        ("bad_header_name", 400, "bad_request"),
        ("long_uri", 414, "uri_too_long"),
        ("large_header", 431, "headers_too_large"),
        ("unsupported_coding", 501, "not_implemented"),
        ("missing_host", 400, "bad_request"),
        ("trace", 405, "method_not_allowed"),
        ("declared_too_large", 413, "too_large"),
        ("bad_chunk_size", 400, "bad_request"),
        ("unknown_route", 404, "not_found"),  # the API's own answer, passed through untouched
    ],
)
def test_proxy_answers_malformed_http_in_the_json_shape(edge_for_errors: Edge, case: str, status: int,
                                                        code: str) -> None:
    answer = raw_exchange(edge_for_errors.proxy_port, MALFORMED[case])
    assert_json_error(answer, status, code)
    assert b"s3cr3t" not in answer and b"aaaa" not in answer  # nothing of the request is echoed


def test_proxy_answers_http09_with_the_json_body_only(edge_for_errors: Edge) -> None:
    """HTTP/0.9 has no status line or headers: the client gets the JSON body alone, and the API nothing."""
    answer = raw_exchange(edge_for_errors.proxy_port, b"GET /healthz\r\n")
    assert orjson.loads(answer)["error"]["code"] == "http_version_not_supported"


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("bad_request_line", 400, "bad_request_line"),
        ("key_as_method", 400, "bad_request_line"),
        ("bad_version", 400, "bad_request_line"),
        ("bad_header_name", 400, "bad_header"),
        ("long_uri", 414, "uri_too_long"),
        ("large_header", 431, "headers_too_large"),
        ("many_headers", 431, "headers_too_large"),
        ("unsupported_coding", 400, "bad_header"),  # gunicorn refuses any coding but chunked as a bad header
        ("trace", 405, "method_not_allowed"),  # the app's own answers from here on
        ("declared_too_large", 413, "too_large"),
        ("bad_chunk_size", 400, "incomplete_body"),
        ("unknown_route", 404, "not_found"),
    ],
)
def test_gunicorn_answers_malformed_http_in_the_json_shape(edge_for_errors: Edge, case: str, status: int,
                                                           code: str) -> None:
    answer = raw_exchange(edge_for_errors.api_port, MALFORMED[case])
    assert_json_error(answer, status, code)
    assert b"s3cr3t" not in answer and b"aaaa" not in answer


def test_proxy_answers_502_in_the_json_shape_when_the_api_is_down(tmp_path: Path) -> None:
    proxy, port = start_proxy(f"127.0.0.1:{free_port()}", tmp_path, wait_for=None)
    try:
        answer = raw_exchange(port, b"GET /v1/jobs HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n")
    finally:
        proxy.stop(signal.SIGQUIT)
    error = assert_json_error(answer, 502, "upstream_unavailable")
    assert split_answer(answer)[1]["retry-after"] == "5" and "retry later" in error["message"]


def test_proxy_answers_504_in_the_json_shape_when_the_api_does_not_accept(tmp_path: Path) -> None:
    """An API whose listen queue is full (it accepts nothing) times out nginx's 5 s connect: 504, JSON."""
    with socket.socket() as stuck:
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        queued = socket.create_connection(stuck.getsockname(), timeout=5)  # fills a backlog of 0; later SYNs drop
        proxy, port = start_proxy(f"127.0.0.1:{stuck.getsockname()[1]}", tmp_path, wait_for=None)
        try:
            answer = raw_exchange(port, b"GET /healthz HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n", 30)
        finally:
            proxy.stop(signal.SIGQUIT)
            queued.close()
    assert_json_error(answer, 504, "upstream_timeout")


def test_proxy_drops_a_client_that_stalls_its_header(edge_for_errors: Edge) -> None:
    """client_header_timeout (10 s): the connection is closed with no answer at all (nginx sends no 408)."""
    started = time.monotonic()
    answer = raw_exchange(edge_for_errors.proxy_port, b"GET /healthz HTTP/1.1\r\n" + HOST, timeout=40)
    assert answer == b""
    assert time.monotonic() - started < 40  # closed by nginx, not by this test's own timeout
