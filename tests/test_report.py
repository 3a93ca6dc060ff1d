"""``engine report``: the data of each view, drawn from the log through the fold (checked against the log itself
on random histories), the page it writes, and its refusals."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import commands, drive, nb201_config, tower_config

from engine import events as ev
from engine.log import EventLog
from engine.runs import create_run, open_run
from engine.scheduler import Scheduler
from engine.state import Artifact, Epoch
from replay.history import Outcome, bars, edges, generations, history, progress, thin, utilisation, what_worked
from replay.page import render, write_report
from replay.report import pareto_front
from replay.views import TABLE_COLUMNS, table_rows

SECTIONS = ("header", "progress", "size", "tree", "towers", "trainers", "worked", "curves", "table")


def ticking(step: float = 1.5):
    """A clock that starts now (when the run's SearchStarted was just written) and moves on by ``step`` seconds each
    time it is read, so spans have lengths."""
    counter, start = itertools.count(), time.time()
    return lambda: start + step * next(counter)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=commands)
def test_the_views_data_agree_with_the_log_on_any_history(tmp_path_factory, script) -> None:
    run = tmp_path_factory.mktemp("report") / "run"
    log, state = create_run(run, nb201_config(search__trials=12, search__beam__initial=3), sync=False)
    with log:
        drive(log, state, script, clock=ticking())
        events = list(log.read())
    found = history(run)
    proposed = {e.seq: e.payload for e in events if e.type == ev.CANDIDATE_PROPOSED}
    assert [(e.child, e.parent) for e in edges(found)] == [
        (seq, p["parent"]) for seq, p in proposed.items() if p["parent"] is not None], "the log's parent links"
    depth = generations(found)
    assert all(depth[e.child] == depth[e.parent] + 1 for e in edges(found))
    points = progress(found)
    assert [p.best for p in points] == list(itertools.accumulate((p.score for p in points), max)), "monotone"
    assert len(points) == sum(e.type == ev.TRIAL_COMPLETED and e.payload["metrics"].get("val_acc") is not None
                              for e in events)
    # Each lease's span runs from its TrialAssigned to the event that ended it, on the clock of the log.
    started = {e.seq: (e.payload["trainer"], e.at - events[0].at) for e in events if e.type == ev.TRIAL_ASSIGNED}
    ended = {e.payload["lease"]: (e.type, e.at - events[0].at) for e in events
             if e.type in (ev.TRIAL_COMPLETED, ev.TRIAL_FAILED, ev.TRIAL_LOST) and e.payload["lease"] is not None}
    assert [s.lease for s in found.spans] == sorted(started)
    for span in found.spans:
        assert (span.trainer, span.start) == started[span.lease]
        if span.lease in ended:
            kind, at = ended[span.lease]
            assert span.end == at and span.outcome is {ev.TRIAL_COMPLETED: Outcome.COMPLETED,
                                                       ev.TRIAL_FAILED: Outcome.FAILED,
                                                       ev.TRIAL_LOST: Outcome.LOST}[kind]
        else:
            assert span.end is None and span.outcome is Outcome.RUNNING and span.lease in state.leases
    for trainer, share in utilisation(found).items():
        mine = [s for s in found.spans if s.trainer == trainer]
        ends = [found.seconds if s.end is None else s.end for s in mine]
        busy = sum(end - s.start for s, end in zip(mine, ends, strict=True))
        whole = max(ends) - min(s.start for s in mine)
        assert share == pytest.approx(busy / whole if whole else 1.0)
    tallies = what_worked(found)
    children = [t for t in state.trials.values() if t.parent is not None and t.score is not None
                and state.trials[t.parent].score is not None]
    assert sum(t.children for t in tallies["mutation"]) == len(children)
    assert sum(t.better for t in tallies["mutation"]) == sum(t.score > state.trials[t.parent].score for t in children)


@settings(max_examples=40, deadline=None)
@given(points=st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 1)), min_size=1, max_size=9000),
       most=st.integers(1, 6000))
def test_thinning_keeps_what_matters_and_one_point_per_cell_in_order(points, most) -> None:
    marked = set(range(0, len(points), 97))
    indexed = list(enumerate(points))
    drawn = thin(indexed, lambda p: p[1][0], lambda p: p[1][1], keep=lambda p: p[0] in marked, most=most,
                 cells=(50, 20))
    if len(points) <= most:
        assert drawn == indexed
        return
    assert [p[0] for p in drawn] == sorted(p[0] for p in drawn), "in their order"
    assert marked <= {p[0] for p in drawn}
    assert len(drawn) <= 50 * 20 + len(marked)


def test_the_pareto_front_is_what_nothing_beats_on_both_score_and_size(tmp_path: Path) -> None:
    run = handmade_run(tmp_path)
    state = history(run).state
    front = pareto_front(state)
    towers = [t for t in state.leaderboard() if "params" in t.metrics]
    for member in front:
        assert not any(o.score >= member.score and o.metrics["params"] < member.metrics["params"] for o in towers)
    on_front = {t.id for t in front}
    for other in (t for t in towers if t.id not in on_front):
        assert any(m.score >= other.score and m.metrics["params"] <= other.metrics["params"] for m in front)


def handmade_run(tmp_path: Path) -> Path:
    """A Keras search's log written by the real scheduler with no training: 24 candidates on 2 trainers that
    report curves, parameter counts and weights; ASHA stops some; one lease is lost and one candidate fails."""
    run = tmp_path / "run"
    config = tower_config(evaluator__kind="keras", search__trials=24, search__beam__initial=6,
                          search__stopping="asha", search__asha__min_epochs=2, training__epochs=6)
    log, state = create_run(run, config, sync=False)
    scheduler = Scheduler(state, now=0.0, clock=ticking(2.0))
    for round_ in itertools.count():
        work = scheduler.assign(f"t{round_ % 2}", 2)
        if not work:
            break
        for index, item in enumerate(work):
            quality = ((item.trial * 37) % 100) / 100
            if round_ == 3 and index == 0:
                scheduler.lose(item.lease, "no heartbeat")
                continue
            if round_ == 5 and index == 1:
                scheduler.fail(item.lease, "it diverged")
                continue
            curve = [Epoch(e, {"val_accuracy": quality * e / 6, "val_loss": 2 - quality}) for e in range(1, 7)]
            scheduler.progress(item.lease, curve[:2])
            stopped = state.trials[item.trial].stop
            reported = curve[:2] if stopped else curve
            scheduler.progress(item.lease, reported)
            scheduler.complete(item.lease, {**reported[-1].metrics, "params": 1000 + 97 * item.trial,
                                            "epochs": len(reported)}, {Artifact.WEIGHTS: "ab" * 32})
        log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
    scheduler.finish_if_done()
    log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
    log.close()
    return run


def test_the_report_page_holds_every_view_and_a_table_row_per_trial(tmp_path: Path) -> None:
    run = handmade_run(tmp_path)
    out = write_report(run, tmp_path / "report.html", block_params=False)
    page = out.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}"' in page
    assert not re.search(r"<script[^>]*\bsrc=|<link\b", page), "nothing loaded from elsewhere: it opens offline"
    assert page.count('class="plotly-graph-div"') == 6, "progress (2), size, tree, trainers, curves"
    data = re.search(r'<script type="application/json" id="trial-data"[^>]*>(.*?)</script>', page).group(1)
    rows = json.loads(data)
    state = history(run).state
    assert len(rows) == len(state.trials) and all(len(row) == len(TABLE_COLUMNS) for row in rows)
    assert {row[0] for row in rows} == set(state.trials)


def test_a_report_at_an_earlier_event_shows_the_search_as_it_stood_then(tmp_path: Path) -> None:
    run = handmade_run(tmp_path)
    early = history(run, at=40)
    assert early.state.seq == 40 and len(table_rows(early.state)) < len(history(run).state.trials)
    assert "at event 40" in render(early)


def test_bad_report_requests_get_one_line_and_write_nothing(tmp_path: Path, engine_cli, engine_here) -> None:
    run = handmade_run(tmp_path)
    with EventLog.open_reader(run) as log:
        head = log.head
    for args, message in (
            (["--run", str(tmp_path / "nothing")], "has no event log"),
            (["--run", str(run), "--at", str(head + 1)], f"--at {head + 1} is outside the log"),
            (["--run", str(run), "--at", "0"], "--at 0 is outside the log")):
        result = engine_here("report", *args, "--out", str(tmp_path / "r.html"), check=False)
        assert result.returncode != 0 and message in result.stderr and len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "r.html").exists()
    result = engine_cli("report", "--run", str(run), "--at", "30", "--out", str(tmp_path / "r.html"))
    assert "wrote" in result.stdout and (tmp_path / "r.html").stat().st_size > 1_000_000  # plotly inside


# -- in a real browser --------------------------------------------------------------------------------------


def _browser():
    selenium = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    if not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists():
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1300,900"):
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return selenium.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def test_the_report_renders_in_a_real_browser_and_a_plot_point_finds_its_table_row(tmp_path: Path) -> None:
    run = handmade_run(tmp_path)
    out = write_report(run, tmp_path / "report.html", block_params=False)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
        browser.get(out.as_uri())
        WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".main-svg")) >= 6)
        for section in SECTIONS:
            assert browser.find_element(By.ID, section).is_displayed()
        plots = {element.get_attribute("id") for element in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")}
        assert plots == {"view-progress-trials", "view-progress-time", "view-size", "view-tree", "view-trainers",
                         "view-curves"}
        assert browser.find_elements(By.CSS_SELECTOR, "#view-size .scatterlayer .point, #view-size canvas")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#trial-rows tr")) == len(history(run).state.trials)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
        best = history(run).state.best_trial().id
        browser.execute_script("document.getElementById('view-size').emit('plotly_click', "
                               "{points: [{customdata: arguments[0]}]})", best)
        picked = browser.find_element(By.CSS_SELECTOR, "tr.picked")
        assert picked.get_attribute("id") == f"trial-{best}"
        browser.find_element(By.ID, "trial-filter").send_keys("stopped-nowhere")
        assert browser.find_elements(By.CSS_SELECTOR, "#trial-rows tr") == []
    finally:
        browser.quit()


def test_tensorboard_summaries_hold_each_trials_hyperparameters_metrics_and_curve(tmp_path: Path, engine_cli) -> None:
    pytest.importorskip("tensorflow")
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = handmade_run(tmp_path)
    result = engine_cli("tensorboard", "--run", str(run), "--out", str(tmp_path / "tb"), timeout=300)
    state = history(run).state
    completed = [t for t in state.trials.values() if t.status == "completed"]
    assert f"wrote {len(completed)} trials" in result.stdout
    assert sorted(p.name for p in (tmp_path / "tb").iterdir() if p.is_dir()) == sorted(
        f"trial-{t.id}" for t in completed)
    trial = state.best_trial()
    [events] = (tmp_path / "tb" / f"trial-{trial.id}").glob("events.out.tfevents.*")
    scalars, hparams = {}, {}
    for event in tf.compat.v1.train.summary_iterator(str(events)):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                hparams.update({k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                                for k, v in data.session_start_info.hparams.items()})
            else:
                scalars[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    assert hparams["architecture"] == " > ".join(trial.architecture) and hparams["origin"]
    assert hparams["learning_rate"] == pytest.approx(trial.hyperparameters["learning_rate"])
    epochs = int(trial.metrics["epochs"])
    assert scalars[("val_accuracy", epochs)] == pytest.approx(trial.metrics["val_accuracy"])
    assert scalars[("params", epochs)] == trial.metrics["params"]
    assert [scalars[("epoch/val_accuracy", p.epoch)] for p in trial.curve] == pytest.approx(
        [p.metrics["val_accuracy"] for p in trial.curve])


def test_a_fork_beside_its_parent_shows_where_they_part_and_other_spaces_are_refused(tmp_path: Path,
                                                                                     engine_cli) -> None:
    from replay.fork import fork

    run = handmade_run(tmp_path)
    fork(run, 40, tmp_path / "fork", ["search.stopping=none"])
    log, state = open_run(tmp_path / "fork", None, sync=False)
    with log:
        scheduler = Scheduler(state, now=0.0, clock=ticking(1.0))
        for item in scheduler.assign("t5", 4):
            scheduler.complete(item.lease, {"val_accuracy": 0.97, "val_loss": 0.2, "params": 3000.0, "epochs": 6.0},
                               {Artifact.WEIGHTS: "ef" * 32})
        log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
    with EventLog.open_reader(run) as reader:
        shared = sum(e.type == ev.TRIAL_COMPLETED for e in reader.read(1, 40))
    page = write_report(tmp_path / "fork", tmp_path / "both.html", block_params=False, compare=[run]).read_text()
    assert '<section id="compare"' in page and 'id="view-compare-trials"' in page and 'id="view-compare-time"' in page
    assert f"fork is a fork of run: the same {shared} completed trials up to event 40, then its own" in page

    other = tmp_path / "nb"
    log, _ = create_run(other, nb201_config(), sync=False)
    log.close()
    result = engine_cli("report", "--run", str(run), "--compare", str(other), "--out", str(tmp_path / "x.html"),
                        check=False)
    assert result.returncode == 1 and "searches another space (nb201)" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "x.html").exists()


def test_a_large_runs_leases_are_drawn_as_fewer_bars_that_cover_them_all(tmp_path: Path) -> None:
    found = history(handmade_run(tmp_path))
    assert [(b.trainer, b.start, b.leases) for b in bars(found)] == [(s.trainer, s.start, 1) for s in found.spans]
    merged = bars(found, most=5, width=50)
    assert len(merged) < len(found.spans) and sum(b.leases for b in merged) == len(found.spans)
    for span in found.spans:  # each lease lies within a bar of its trainer that ended the same way
        end = found.seconds if span.end is None else span.end
        assert any(b.trainer == span.trainer and b.outcome is span.outcome and b.start <= span.start and end <= b.end
                   for b in merged), span
