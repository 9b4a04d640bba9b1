"""`predictq submit/status/results/cancel` against a fake server that follows the API contract."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from predictq.cli import cli
from predictq.localredis import free_port


@pytest.fixture
def env(fake_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Server URL and key come from the environment, as the README tells users to set them."""
    monkeypatch.setenv("PREDICTQ_URL", fake_server.url)
    monkeypatch.setenv("PREDICTQ_API_KEY", fake_server.key)
    return fake_server


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("x5,x12\n" + "".join(f"{i},{i}\n" for i in range(5000)))
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_submit_prints_job_id_and_streams_whole_file_with_length(env: Any, data_csv: Path) -> None:
    code, out, _ = invoke("submit", str(data_csv))
    assert code == 0
    assert out.strip() == "job1"
    upload = env.uploads[0]
    assert upload["content_type"] == "text/csv"
    assert upload["length"] == data_csv.stat().st_size
    assert upload["body"] == data_csv.read_bytes()


@pytest.mark.parametrize(
    ("suffix", "content_type"), [(".ndjson", "application/x-ndjson"), (".json", "application/json")]
)
def test_submit_content_type_follows_extension(env: Any, tmp_path: Path, suffix: str, content_type: str) -> None:
    path = tmp_path / f"rows{suffix}"
    path.write_text('{"x5": 1}\n')
    assert invoke("submit", str(path))[0] == 0
    assert env.uploads[0]["content_type"] == content_type


def test_submit_refuses_unknown_extension(env: Any, tmp_path: Path) -> None:
    path = tmp_path / "rows.xlsx"
    path.write_bytes(b"PK")
    code, _, err = invoke("submit", str(path))
    assert code == 1
    assert "unknown_format" in err
    assert env.uploads == []


def test_submit_wait_downloads_results_in_format_of_output(env: Any, data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "scored.ndjson"
    code, _, err = invoke("submit", str(data_csv), "--wait", "-o", str(out), "--poll-interval", "0.05")
    assert code == 0, err
    assert env.polls["job1"] == env.polls_to_finish
    lines = out.read_text().splitlines()
    assert lines[0] == "row,phat,format"
    assert len(lines) == 1001
    assert lines[1].endswith(",ndjson")
    assert "succeeded" in err
    assert not list(tmp_path.glob(".*.part"))


def test_submit_wait_reports_failed_job(env: Any, data_csv: Path, tmp_path: Path) -> None:
    env.final_state = "failed"
    code, out, err = invoke("submit", str(data_csv), "--wait", "-o", str(tmp_path / "x.csv"), "--poll-interval", "0.05")
    assert code == 1
    assert '"state": "failed"' in out
    assert "ended failed" in err
    assert not (tmp_path / "x.csv").exists()


def test_output_without_wait_is_a_usage_error(env: Any, data_csv: Path) -> None:
    code, _, _ = invoke("submit", str(data_csv), "-o", "out.csv")
    assert code == 2
    assert env.uploads == []


def test_status_results_cancel(env: Any, data_csv: Path, tmp_path: Path) -> None:
    assert invoke("submit", str(data_csv))[0] == 0
    code, out, _ = invoke("status", "job1")
    assert code == 0
    assert '"state": "running"' in out
    out_path = tmp_path / "r.csv"
    code, _, err = invoke("results", "job1", "-o", str(out_path), "--format", "json")
    assert code == 0, err
    assert out_path.read_text().splitlines()[1] == "0,0.5,json"
    code, out, _ = invoke("cancel", "job1")
    assert code == 0
    assert env.cancelled == ["job1"]
    assert '"state": "cancelled"' in out


def test_results_to_stdout(env: Any, data_csv: Path) -> None:
    invoke("submit", str(data_csv))
    code, out, _ = invoke("results", "job1", "-o", "-")
    assert code == 0
    assert out.splitlines()[1] == "0,0.5,csv"


def test_missing_job_exits_2_with_server_message(env: Any) -> None:
    for command in ("status", "cancel"):
        code, _, err = invoke(command, "nope")
        assert code == 2
        assert "404 job_not_found: job not found" in err


def test_wrong_key_is_reported(fake_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREDICTQ_API_KEY", raising=False)
    code, _, err = invoke("status", "job1", "--url", fake_server.url, "--api-key", "wrong")
    assert code == 1
    assert "401 unauthorized" in err


def test_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # the client's backoff between attempts: recorded, not waited
    code, _, err = invoke("status", "job1", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "unreachable" in err
    assert len(waits) == 4, waits  # five attempts before giving up


def test_summary_prints_a_text_histogram_with_the_cutoff_and_warnings(env: Any, data_csv: Path) -> None:
    code, out, _ = invoke("submit", str(data_csv))
    job_id = out.strip()
    code, out, err = invoke("summary", job_id)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"job {job_id}: succeeded, 1,000 rows scored, 2 failed"
    bins = [line for line in lines if line.startswith("  0.") and "-" in line[:12]]
    assert len(bins) == 20
    assert "  0.15-0.20 " + "#" * 40 in out and out.count("<- cutoff 0.712") == 1
    assert next(line for line in bins if "<- cutoff" in line).startswith("  0.70-0.75")
    assert "business_outcome 1: 260 rows (26.0%); the cutoff was set for 25.0%" in out
    assert "monday 40.0% (14.7%)" in out and "rows failed by code: unknown_level 2" in out
    assert "the levels of x5 are not spread as in training: 'friday' 60.0% against 14.0%; 'monday' 40.0%" in out
    code, out, _ = invoke("summary", job_id, "--json")
    assert code == 0 and '"phat_histogram"' in out


def test_summary_of_a_missing_job_exits_2(env: Any) -> None:
    code, _, err = invoke("summary", "nope")
    assert code == 2 and "job not found" in err
