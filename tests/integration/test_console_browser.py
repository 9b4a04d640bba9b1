"""The console in a real browser (Debian's Chromium through chromedriver) against the real stack: gunicorn,
Celery workers and Redis. Upload 200,000 rows, watch both progress bars, read the histogram, download results,
score one row; client data renders as text; the key never reaches a URL, a log or localStorage.

Set PREDICTQ_SCREENSHOTS_DIR to a folder (e.g. docs) to save the screenshots the README shows.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from core.settings import Settings
from model.synth import write_synth
from tests.integration.servers import ApiServer, gunicorn_server

pytestmark = pytest.mark.slow

KEY = "console-browser-key-7d41c9"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROWS = 200_000
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1900")
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "rows.csv"
    write_synth(path, ROWS, seed=5)
    return path


@pytest.fixture(scope="module")
def hostile_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three rows, one with markup as its x5 level."""
    folder = tmp_path_factory.mktemp("hostile")
    write_synth(folder / "clean.csv", 3, seed=6)
    frame = pd.read_csv(folder / "clean.csv", dtype=str, keep_default_na=False)
    frame.loc[1, "x5"] = XSS
    frame.to_csv(folder / "hostile.csv", index=False)
    return folder / "hostile.csv"


@pytest.fixture
def worker_settings(worker_settings: Settings) -> Settings:
    return dataclasses.replace(worker_settings, chunk_rows=10_000)


@pytest.fixture
def server(worker_settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    """gunicorn (its access log on) on a free loopback port until the test ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREDICTQ_", "PROMETHEUS_"))}
    env |= {"REDIS_URL": worker_settings.redis_url, "PREDICTQ_QUEUE": worker_settings.queue_name,
            "PREDICTQ_CHUNK_ROWS": str(worker_settings.chunk_rows), "PREDICTQ_API_KEYS": f"{KEY}:acme",
            "PREDICTQ_CHUNK_BYTES": str(worker_settings.chunk_bytes), "PREDICTQ_STORE_URI": worker_settings.store_uri,
            "PREDICTQ_STORE_RESERVE_BYTES": str(worker_settings.store_reserve_bytes),
            "PREDICTQ_API_WORKERS": "2", "PREDICTQ_API_THREADS": "4", "PYTHONUNBUFFERED": "1"}
    with gunicorn_server(env, tmp_path / "gunicorn.log") as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium with a fresh profile, downloads into tmp_path/downloads."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("chromium and chromedriver are not installed (./run_tests.sh installs them when run as root: "
                    "apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, script: str, timeout: float = 120.0) -> Any:
    """Poll a JavaScript expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for: {script}"
        time.sleep(0.05)


def watch_bars(driver: Any, timeout: float = 300.0) -> tuple[list[float], list[float]]:
    """Sample both progress bars until the job's summary is shown; returns every value each bar showed."""
    upload, score = [], []
    deadline = time.monotonic() + timeout
    while True:
        up, sc, done = driver.execute_script(
            "return [document.getElementById('upload-progress').value, document.getElementById('score-progress').value,"
            " document.getElementById('outcome-text').dataset.final === 'true'];")
        upload.append(up)
        score.append(sc)
        if done:
            return upload, score
        assert time.monotonic() < deadline, f"no summary in {timeout}s; bars at {up}, {sc}"
        time.sleep(0.02)


def downloaded(folder: Path, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while True:
        files = [p for p in folder.iterdir() if not p.name.endswith(".crdownload")]
        if files and not list(folder.glob("*.crdownload")):
            return files[0]
        assert time.monotonic() < deadline, f"no download in {folder}"
        time.sleep(0.1)


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("PREDICTQ_SCREENSHOTS_DIR")
    if folder:
        driver.save_screenshot(str(Path(folder) / name))


def test_console_end_to_end(server: ApiServer, celery_workers: Any, browser: Any, big_csv: Path,
                            hostile_csv: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    celery_workers.start(concurrency=2)
    browser.get(server.url + "/")
    assert "predictq" in browser.title
    browser.find_element(By.ID, "api-key").send_keys(KEY + Keys.ENTER)  # the keyboard alone unlocks the console
    wait_for(browser, "document.getElementById('model-line').textContent.includes('cutoff 0.712')")

    # Upload 200,000 rows: the upload bar (bytes sent) and the scoring bar (the job's progress) both move.
    browser.find_element(By.ID, "file-input").send_keys(str(big_csv))
    upload, score = watch_bars(browser)
    assert any(0 < v < 1 for v in upload) and upload[-1] == 1, sorted(set(upload))[:10]
    assert any(0 < v < 1 for v in score) and score[-1] == 1, sorted(set(score))[:10]
    job_id = browser.find_element(By.ID, "job-id").text
    job = requests.get(f"{server.url}/v1/jobs/{job_id}", headers=AUTH, timeout=30).json()
    assert (job["state"], job["rows_done"], job["rows_failed"]) == ("succeeded", ROWS, 0)
    assert f"{ROWS:,} of {ROWS:,} rows" in browser.find_element(By.ID, "score-text").text

    # The histogram drawn is the one /summary gives, and so is the outcome count.
    summary = requests.get(f"{server.url}/v1/jobs/{job_id}/summary", headers=AUTH, timeout=30).json()
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#histogram rect.bar')].map(b => Number(b.dataset.count));")
    assert bars == summary["phat_histogram"]["counts"] and sum(bars) == ROWS
    assert browser.execute_script("return document.querySelector('#histogram line.cutoff').dataset.cutoff") == "0.712"
    outcome = browser.find_element(By.ID, "outcome-text")
    assert int(outcome.get_attribute("data-count")) == summary["business_outcome_1"]["count"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#quality-table tbody tr")
    assert [r.get_attribute("data-column") for r in rows] == [i["column"] for i in summary["inputs"]]
    browser.execute_script("document.getElementById('job-view').scrollIntoView()")
    screenshot(browser, "console-job.png")

    # The CSV download equals the API's results, byte for byte.
    browser.find_element(By.CSS_SELECTOR, "button[data-kind=results][data-format=csv]").click()
    got = downloaded(browser.downloads)
    expected = requests.get(f"{server.url}/v1/jobs/{job_id}/results?format=csv", headers=AUTH, timeout=120)
    assert got.name == f"{job_id}-results.csv" and got.read_bytes() == expected.content

    # One row, typed and sent with the keyboard, scores as /predict does.
    for name, value in {"x12": "$1,234.50", "x44": "0.5", "x53": "0.4", "x56": "0.1", "x58": "0.2", "x62": "-0.3",
                        "x91": "0.25"}.items():
        browser.find_element(By.ID, f"predict-{name}").send_keys(value)
    for name, level in {"x5": "monday", "x31": "germany", "x81": "July"}.items():
        browser.find_element(By.CSS_SELECTOR, f"#predict-{name} option[value={level}]").click()
    browser.find_element(By.ID, "predict-x91").send_keys(Keys.ENTER)
    phat = wait_for(browser, "document.getElementById('predict-result').dataset.phat")
    direct = requests.post(f"{server.url}/predict", headers=AUTH, timeout=30, json={
        "x12": "$1,234.50", "x44": 0.5, "x53": 0.4, "x56": 0.1, "x58": 0.2, "x62": -0.3, "x91": 0.25, "x5": "monday",
        "x31": "germany", "x81": "July"}).json()
    assert float(phat) == direct["phat"]
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, "console.png")

    # Markup in a client's value is shown as text in the row-errors table, and nothing runs.
    browser.find_element(By.ID, "file-input").send_keys(str(hostile_csv))
    wait_for(browser, "document.querySelectorAll('#errors-table tbody tr').length === 1")
    message = browser.find_element(By.CSS_SELECTOR, "#errors-table tbody tr td:nth-child(3)").text
    assert XSS in message and "unknown level" in message
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018

    # Cancel while the upload still runs (uploads throttled to 4 MB/s so there is time to press the button).
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 4_000_000})
    browser.find_element(By.ID, "file-input").send_keys(str(big_csv))
    hostile_id = browser.find_element(By.ID, "job-id").text
    wait_for(browser, f"!['{job_id}', '{hostile_id}'].includes(document.querySelector('#jobs-table tbody tr')"
                      ".dataset.jobId) && ['queued', 'running'].includes(document.querySelector('#jobs-table tbody tr')"
                      ".dataset.state)")
    cancelled_id = browser.execute_script("return document.querySelector('#jobs-table tbody tr').dataset.jobId")
    wait_for(browser, "!document.getElementById('cancel-job').disabled")
    browser.find_element(By.ID, "cancel-job").send_keys(Keys.ENTER)
    wait_for(browser, "document.getElementById('upload-error').textContent.includes('cancelled')")
    cancelled = requests.get(f"{server.url}/v1/jobs/{cancelled_id}", headers=AUTH, timeout=30).json()
    assert cancelled["state"] == "cancelled" and not cancelled["upload_complete"], cancelled
    assert browser.execute_script("return document.getElementById('upload-progress').value") < 1

    # The key went only in headers: not in any URL the page loaded, not in the access log, not in localStorage.
    urls = browser.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)];")
    assert len(urls) > 10 and not [u for u in urls if KEY in u]
    assert browser.execute_script("return localStorage.length") == 0
    assert browser.execute_script("return sessionStorage.getItem('predictq.apiKey')") == KEY
    log = server.log.read_text()
    # The access log names the route the console called, never its path (nor the key).
    assert '"GET /v1/jobs/<job_id>/summary HTTP/1.1" 200' in log and KEY not in log
