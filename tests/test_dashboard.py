"""``engine dashboard``: a read-only page over a run that follows it as events are committed, with a slider through
its history; served on loopback by default, refusing every request that is not a GET."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port
from test_report import SECTIONS, _browser, handmade_run, ticking

from engine.log import EventLog
from engine.runs import open_run
from engine.scheduler import Scheduler
from engine.state import Artifact, Epoch
from replay.dashboard import Dashboard
from replay.history import history


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Dashboard]:
    dashboard = Dashboard(handmade_run(tmp_path), port=0)
    thread = threading.Thread(target=dashboard.serve_forever, daemon=True)
    thread.start()
    yield dashboard
    dashboard.close()
    thread.join(5)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_it_serves_the_views_of_the_latest_and_any_earlier_event_on_loopback(served: Dashboard) -> None:
    assert served.server.server_address[0] == "127.0.0.1"
    with EventLog.open_reader(served.run) as log:
        head = log.head
    wait_for(lambda: served.head() == head)
    status, page = get(served.url)
    assert status == 200 and "Plotly" in page and 'id="at"' in page
    views = json.loads(get(served.url + "views")[1])
    assert views["seq"] == views["head"] == head and [s["name"] for s in views["sections"]] == list(SECTIONS)
    assert set(views["figures"]) == {"view-progress-trials", "view-progress-time", "view-size", "view-tree",
                                     "view-trainers", "view-curves"}
    earlier = json.loads(get(served.url + "views?at=30")[1])
    assert earlier["seq"] == 30 and "at event 30" in earlier["title"] and earlier["head"] == head
    for bad in ("0", "-3", "x", "1.5"):
        status, text = get(served.url + f"views?at={bad}")
        assert status == 400 and text.count("\n") == 1
    assert get(served.url + "nothing")[0] == 404


def test_no_request_can_change_a_run(served: Dashboard) -> None:
    with EventLog.open_reader(served.run) as log:
        before = log.head
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        request = urllib.request.Request(served.url + "views", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405 and refused.value.headers["Allow"] == "GET"
    with EventLog.open_reader(served.run) as log:
        assert log.head == before


def test_a_folder_that_is_not_a_run_and_a_port_in_use_get_one_line(tmp_path: Path, engine_cli) -> None:
    result = engine_cli("dashboard", "--run", str(tmp_path / "nothing"), "--port", "0", check=False)
    assert result.returncode == 1 and "has no event log" in result.stderr and len(result.stderr.splitlines()) == 1
    run = handmade_run(tmp_path)
    with Dashboard(run, port=0) as taken:
        port = taken.server.server_address[1]
        result = engine_cli("dashboard", "--run", str(run), "--port", str(port), check=False)
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def append_trials(run: Path, count: int) -> None:
    """Resume a run with a larger budget and hand out and complete ``count`` more candidates, as a live engine
    would."""
    log, state = open_run(run, None, budget={"search.trials": 1000}, sync=False)
    with log:
        scheduler = Scheduler(state, now=0.0, clock=ticking(1.0))
        for item in scheduler.assign("t9", count):
            scheduler.progress(item.lease, [Epoch(1, {"val_accuracy": 0.5, "val_loss": 1.0})])
            scheduler.complete(item.lease, {"val_accuracy": 0.99, "val_loss": 0.1, "params": 5000.0, "epochs": 1.0},
                               {Artifact.WEIGHTS: "cd" * 32})
        log.append([raw for _, raw in scheduler.take()], expected_head=log.head)


def test_the_page_follows_a_live_search_and_its_slider_travels_in_time(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = handmade_run(tmp_path)
    browser = _browser()
    dashboard = Dashboard(run, port=free_port())
    thread = threading.Thread(target=dashboard.serve_forever, daemon=True)
    thread.start()
    try:
        browser.get(dashboard.url)
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: "following the run" in b.find_element(By.ID, "at-label").text)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) == 6)
        trials = len(history(run).state.trials)
        assert browser.execute_script("return rows.length") == trials
        assert len(browser.find_elements(By.CSS_SELECTOR, "#trial-rows tr")) == min(trials, 100)
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        # Another process appends, as a live engine does (a process opens its log's writer before any reader).
        writer = multiprocessing.get_context("spawn").Process(target=append_trials, args=(run, 1))
        writer.start()
        writer.join(60)
        appended = time.monotonic()
        assert writer.exitcode == 0
        new = max(history(run).state.trials)
        wait.until(lambda b: b.execute_script("return rows.some(row => row[0] === arguments[0])", new))
        assert time.monotonic() - appended < 5, "a new trial shows within a few seconds"
        slider = browser.find_element(By.ID, "at")
        browser.execute_script("arguments[0].value = 30; arguments[0].dispatchEvent(new Event('input'))", slider)
        wait.until(lambda b: "at event 30" in b.find_element(By.ID, "title").text)
        assert "following" not in browser.find_element(By.ID, "at-label").text
        assert not browser.execute_script("return rows.some(row => row[0] === arguments[0])", new)
    finally:
        browser.quit()
        dashboard.close()
        thread.join(5)
