"""The report's views, each drawn from :mod:`replay.history` (the log through the fold) with plotly.

Each view function returns its HTML; figures go on a :class:`Canvas`, which puts them inline (the static report)
or aside as plotly JSON (the live dashboard, which draws and redraws them itself). Views: the run's facts,
progress, size against score with the Pareto front, the lineage tree, the best tower and ensemble as blocks, the
trainers' leases over time, what worked, learning curves, several runs side by side, and the table of every trial.
A plotted point carries its trial id (``customdata``): the page links it to the trial's row.

Example::

    >>> canvas = Canvas()
    >>> html = progress_view(history("runs/m1d"), canvas)
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
from collections.abc import Callable
from typing import Any

from engine.state import TOWER, State, Trial
from replay.history import (
    MOST_POINTS,
    History,
    Outcome,
    bars,
    edges,
    fork_point,
    generations,
    origin,
    progress,
    thin,
    utilisation,
    what_worked,
)
from replay.report import pareto_front

ORIGIN_ORDER = ("initial", "random", "add", "replace", "remove", "hparam", "replica", "ensemble")
OUTCOME_COLOURS = {Outcome.COMPLETED: "#2ca02c", Outcome.STOPPED: "#ff7f0e", Outcome.PAUSED: "#bcbd22",
                   Outcome.FAILED: "#d62728", Outcome.LOST: "#7f7f7f", Outcome.RUNNING: "#1f77b4"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _shown(state: State, score: float | None) -> float | None:
    """A signed score back in the metric's own terms."""
    return None if score is None else score * state.ranking.sign


class Canvas:
    """Where the views put their figures: inline in a static page (the report), or aside as JSON for a page that
    draws them itself and redraws them as the run goes on (the dashboard, ``live``)."""

    def __init__(self, live: bool = False) -> None:
        self.live = live
        self.figures: dict[str, Any] = {}  # div id -> the figure as plotly JSON (live only)

    def figure(self, figure: Any, name: str) -> str:
        """The HTML of a figure, or (live) the empty div it is drawn into."""
        figure.update_layout(margin={"l": 50, "r": 20, "t": 30, "b": 40}, height=figure.layout.height or 420,
                             template="plotly_white")
        div = f"view-{name}"
        if self.live:
            self.figures[div] = json.loads(figure.to_json())
            return f'<div id="{div}" class="plotly-graph-div live-plot"></div>'
        return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div, config=PLOT_CONFIG)


def _hover(trials: list[Trial], every: int, info: str,
           describe: Callable[[Trial], str] | None = None) -> dict[str, Any]:
    """How points show what they are: each trial's key while a plot is small; past :data:`MOST_POINTS` points
    only its id and value (the table has the rest), which keeps a large run's page small."""
    if every > MOST_POINTS:
        return {"hovertemplate": "trial %{customdata}<br>%{y}<extra></extra>"}
    return {"hovertext": [(describe or _describe)(t) for t in trials], "hoverinfo": info}


def _describe(trial: Trial) -> str:
    """What hovering a candidate shows: its id, key (blocks and hyperparameters) and score."""
    return f"trial {trial.id}<br>{html.escape(trial.key)}"


# -- views --------------------------------------------------------------------------------------------------


def header(run: History) -> str:
    state, config = run.state, run.state.config
    best = state.best_trial()
    lost = sum(span.outcome is Outcome.LOST for span in run.spans)
    facts = [
        ("run", f"{state.run_id} ({run.run})"), ("space", config.space.kind),
        ("searcher", f"{config.search.algorithm} (seed {config.search.seed}), stopping {config.search.stopping}"),
        ("budget", f"{config.search.trials} trials" + (f", {config.search.minutes:g} minutes"
                                                       if config.search.minutes else "")),
        ("trials", f"{len(state.completed)} completed, {len(state.failed)} failed, {lost} leases lost, "
                   f"{len(state.queue)} queued, {len(state.leases)} running"),
        ("best", f"trial {best.id}: {config.search.metric} {_shown(state, best.score):.4g} ({best.key})"
         if best else "none yet"),
        ("wall time", f"{run.seconds / 60:.1f} minutes to event {state.seq}"),
        ("trainers", f"{len(run.trainers())} seen"),
        ("finished", state.finished or "not yet"),
    ]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    return f'<table class="facts" id="facts">{rows}</table>'


def _colours(labels: list[str]) -> dict[str, str]:
    ordered = [o for o in ORIGIN_ORDER if o in labels] + sorted(set(labels) - set(ORIGIN_ORDER))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(ordered)}


def progress_view(run: History, canvas: Canvas) -> str:
    import plotly.graph_objects as go

    state, metric = run.state, run.state.config.search.metric
    points = progress(run)
    if not points:
        return '<p class="note">No trial has completed yet.</p>'
    colours = _colours([p.origin for p in points])
    # The best-so-far line only turns where the best changed (and ends at the last point).
    steps = [p for i, p in enumerate(points) if i == 0 or p.best != points[i - 1].best or i == len(points) - 1]
    out = []
    for axis, label, name in ((lambda p: p.order, "completed trials", "progress-trials"),
                              (lambda p: p.seconds / 60, "minutes since the start", "progress-time")):
        drawn = thin(points, axis, lambda p: p.score, keep=lambda p: p.score == p.best)
        figure = go.Figure()
        for kind, colour in colours.items():
            mine = [p for p in drawn if p.origin == kind]
            figure.add_trace(go.Scattergl(
                x=[axis(p) for p in mine], y=[_shown(state, p.score) for p in mine], mode="markers", name=kind,
                marker={"color": colour, "size": 6}, customdata=[p.trial for p in mine],
                **_hover([state.trials[p.trial] for p in mine], len(points), "text+y")))
        figure.add_trace(go.Scatter(x=[axis(p) for p in steps], y=[_shown(state, p.best) for p in steps],
                                    mode="lines", name="best so far", line={"color": "#000", "shape": "hv"}))
        figure.update_layout(xaxis_title=label, yaxis_title=metric)
        out.append(_thinned(drawn, points) + canvas.figure(figure, name))
    return "\n".join(out)


def _thinned(drawn: list, every: list) -> str:
    if len(drawn) == len(every):
        return ""
    return (f'<p class="note">{len(drawn):,} of {len(every):,} points drawn: one where several would overlap, '
            f"and every one that matters here (the table has them all)</p>")


def size_view(run: History, canvas: Canvas) -> str:
    import plotly.graph_objects as go

    state, metric = run.state, run.state.config.search.metric
    towers = [t for t in state.leaderboard() if isinstance((t.metrics or {}).get("params"), int | float)]
    if not towers:
        return '<p class="note">No completed tower reports its parameter count.</p>'
    front = sorted(pareto_front(state), key=lambda t: t.metrics["params"])  # the staircase, smallest first
    on_front = {t.id for t in front}
    every, towers = towers, thin(towers, lambda t: math.log10(max(t.metrics["params"], 1)), lambda t: t.score,
                                 keep=lambda t: t.id in on_front)
    figure = go.Figure()
    figure.add_trace(go.Scattergl(
        x=[t.metrics["params"] for t in towers], y=[_shown(state, t.score) for t in towers], mode="markers",
        name="towers", marker={"color": "#1f77b4", "size": 6, "opacity": 0.6}, customdata=[t.id for t in towers],
        **_hover(towers, len(every), "text+x+y")))
    figure.add_trace(go.Scatter(
        x=[t.metrics["params"] for t in front], y=[_shown(state, t.score) for t in front], mode="lines+markers",
        name="Pareto front", line={"color": "#d62728", "shape": "hv"}, customdata=[t.id for t in front],
        hovertext=[_describe(t) for t in front], hoverinfo="text+x+y"))
    figure.update_layout(xaxis_title="parameters", xaxis_type="log", yaxis_title=metric)
    return _thinned(towers, every) + canvas.figure(figure, "size")


def tree_view(run: History, canvas: Canvas) -> str:
    import plotly.graph_objects as go

    state = run.state
    links = edges(run)
    if not links:
        return '<p class="note">No candidate was made from a parent (random search, or too early).</p>'
    depth = generations(run)
    every = [t for t in state.trials.values() if t.kind == TOWER and t.score is not None]
    # On a large run: the beam, the best and every ancestor of theirs, and one trial per cell of the rest.
    lineage = set()
    for start in [*state.top, *([state.ensemble] if state.ensemble is not None else [])]:
        trial = state.trials.get(start)
        while trial is not None and trial.id not in lineage:
            lineage.add(trial.id)
            trial = state.trials.get(trial.parent) if trial.parent is not None else None
    scored = thin(every, lambda t: t.id, lambda t: depth[t.id], keep=lambda t: t.id in lineage)
    drawn = {t.id for t in scored}
    xs: list[float | None] = []
    ys: list[float | None] = []
    for edge in links:
        if edge.child in drawn and edge.parent in drawn:
            xs += [edge.parent, edge.child, None]
            ys += [depth[edge.parent], depth[edge.child], None]
    figure = go.Figure()
    figure.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", line={"color": "#ccc", "width": 1}, hoverinfo="skip",
                                  name="parent → child"))
    figure.add_trace(go.Scattergl(
        x=[t.id for t in scored], y=[depth[t.id] for t in scored], mode="markers", name="trials",
        marker={"color": [_shown(state, t.score) for t in scored], "colorscale": "Viridis", "size": 7,
                "colorbar": {"title": state.config.search.metric}},
        customdata=[t.id for t in scored],
        **_hover(scored, len(every), "text", lambda t: f"{_describe(t)}<br>{t.mutation or 'no parent'}")))
    marked = [(state.trials[t], "beam") for t in state.top[1:]]
    if state.best_trial() is not None:
        marked.append((state.best_trial(), "best"))
    for label, symbol in (("beam", "diamond-open"), ("best", "star")):
        chosen = [t for t, kind in marked if kind == label]
        figure.add_trace(go.Scatter(x=[t.id for t in chosen], y=[depth[t.id] for t in chosen], mode="markers",
                                    name=label, marker={"symbol": symbol, "size": 14, "color": "#d62728"},
                                    customdata=[t.id for t in chosen], hovertext=[_describe(t) for t in chosen],
                                    hoverinfo="text"))
    figure.update_layout(xaxis_title="trial (proposal order)", yaxis_title="generation (mutations from a root)",
                         legend={"orientation": "h", "y": -0.2})
    return _thinned(scored, every) + canvas.figure(figure, "tree")


def towers_view(run: History, params_of: Callable[[Trial], list[int] | None] | None = None) -> str:
    """The best tower and the best ensemble's members as rows of blocks; ``params_of`` gives each block's
    parameter count where it can be known (built by Keras), else the blocks show none."""
    state = run.state
    best, ensemble = state.best_trial(), state.best_ensemble()
    if best is None:
        return '<p class="note">No tower has completed yet.</p>'
    parts = [f"<h3>best tower: trial {best.id}</h3>", _tower_row(best, params_of)]
    if ensemble is not None:
        members = [state.trials[m] for m in ensemble.architecture["members"]]
        parts.append(f"<h3>best ensemble: trial {ensemble.id} ({ensemble.architecture['combiner']} of "
                     f"{len(members)})</h3>")
        parts += [_tower_row(member, params_of) for member in members]
    else:
        parts.append('<p class="note">No ensemble beat the best tower.</p>')
    return "\n".join(parts)


def _block_kind(name: str) -> str:
    try:
        from blocks import lookup

        return lookup(name).cls.__name__
    except Exception:  # noqa: BLE001 - a cell's operation, or a user block not importable here: named as it is
        return name


def _tower_row(trial: Trial, params_of: Callable[[Trial], list[int] | None] | None) -> str:
    architecture = trial.architecture if isinstance(trial.architecture, list) else []
    counts = params_of(trial) if params_of else None
    kinds = [_block_kind(block) for block in architecture]
    colours = _colours(sorted(set(kinds)))
    boxes = []
    for index, (block, kind) in enumerate(zip(architecture, kinds, strict=True)):
        detail = f"{counts[index]:,} params" if counts else kind
        boxes.append(f'<div class="block" style="background:{colours[kind]}" title="{html.escape(kind)}">'
                     f"{html.escape(block)}<small>{html.escape(detail)}</small></div>")
    total = (trial.metrics or {}).get("params")
    head = f"{counts[-1]:,} params" if counts else (f"{int(total):,} params in all" if total else "")
    boxes.append(f'<div class="block head">head<small>{head}</small></div>')
    hp = ", ".join(f"{k}={v}" for k, v in sorted(trial.hyperparameters.items()))
    return f'<div class="tower" data-trial="{trial.id}">{"".join(boxes)}</div><p class="note">{html.escape(hp)}</p>'


def trainers_view(run: History, canvas: Canvas) -> str:
    import plotly.graph_objects as go

    if not run.spans:
        return '<p class="note">No lease was handed out yet.</p>'
    shares = utilisation(run)
    figure = go.Figure()
    drawn = bars(run)
    for outcome, colour in OUTCOME_COLOURS.items():
        mine = [bar for bar in drawn if bar.outcome is outcome]
        if not mine:
            continue
        figure.add_trace(go.Bar(
            base=[bar.start / 60 for bar in mine], x=[(bar.end - bar.start) / 60 for bar in mine],
            y=[bar.trainer for bar in mine], orientation="h", name=str(outcome), marker={"color": colour},
            customdata=[bar.trial for bar in mine],
            hovertext=[f"trial {bar.trial}" if bar.leases == 1 else f"{bar.leases} leases from trial {bar.trial}"
                       for bar in mine], hoverinfo="text"))
    figure.update_layout(barmode="overlay", xaxis_title="minutes since the start", yaxis_title="trainer",
                         height=max(200, 40 * len(shares) + 120))
    summary = ", ".join(f"{trainer} {share:.0%}" for trainer, share in shares.items())
    merged = (f'<p class="note">{len(run.spans):,} leases drawn as {len(drawn):,} bars: a trainer\'s leases in a row '
              f"that ended the same way make one</p>") if len(drawn) < len(run.spans) else ""
    return (f'<p id="utilisation">time holding a lease: {html.escape(summary)}</p>\n' + merged
            + canvas.figure(figure, "trainers"))


def worked_view(run: History) -> str:
    tables = []
    for title, tallies in what_worked(run).items():
        if not any(t.children for t in tallies):
            continue
        rows = "".join(
            f"<tr><td>{html.escape(t.label)}</td><td>{t.children}</td><td>{t.better}</td>"
            f"<td>{'' if t.rate is None else format(t.rate, '.0%')}</td>"
            f"<td>{'' if t.median_gain is None else format(t.median_gain, '+.4f')}</td></tr>" for t in tallies)
        tables.append(f"<h3>by {html.escape(title)}</h3><table><tr><th>{html.escape(title)}</th><th>children</th>"
                      f"<th>beat their parent</th><th>share</th><th>median gain</th></tr>{rows}</table>")
    return "\n".join(tables) or '<p class="note">No child has completed beside its parent yet.</p>'


def curves_view(run: History, canvas: Canvas, most: int = 200) -> str:
    import plotly.graph_objects as go

    state, metric = run.state, run.state.config.search.metric
    trials = [t for t in state.trials.values() if t.curve]
    if not trials:
        return '<p class="note">This log has no per-epoch figures (its trainers did not report epochs).</p>'
    # The best curves are the ones worth reading; the rest would be a tangle at this size.
    trials = sorted(trials, key=lambda t: -(t.score if t.score is not None else -math.inf))[:most]
    figure = go.Figure()
    for trial in sorted(trials, key=lambda t: t.id):
        values = [(p.epoch, p.metrics.get(metric)) for p in trial.curve if p.metrics.get(metric) is not None]
        figure.add_trace(go.Scatter(x=[e for e, _ in values], y=[v for _, v in values], mode="lines+markers",
                                    name=f"trial {trial.id}", customdata=[trial.id] * len(values),
                                    hovertext=_describe(trial), hoverinfo="text+x+y", marker={"size": 4},
                                    showlegend=False))
    figure.update_layout(xaxis_title="epoch", yaxis_title=metric)
    return canvas.figure(figure, "curves")


def compare_view(runs: list[History], canvas: Canvas) -> str:
    """Several runs on the same axes: each one's best so far against completed trials and against time, with the
    point where a fork parted from its parent marked."""
    import plotly.graph_objects as go

    state, metric = runs[0].state, runs[0].state.config.search.metric
    rows, parts = [], []
    figures = {name: go.Figure() for name in ("compare-trials", "compare-time")}
    for index, run in enumerate(runs):
        colour = PALETTE[index % len(PALETTE)]
        points = progress(run)
        label = f"{run.run.name} ({run.state.config.search.algorithm})"
        best = run.state.best_trial()
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{len(run.state.completed)}</td><td>"
                    f"{'' if best is None else format(_shown(run.state, best.score), '.4g')}</td><td>"
                    f"{'' if best is None else best.id}</td><td>{run.seconds / 60:.1f}</td></tr>")
        for name, axis in (("compare-trials", lambda p: p.order), ("compare-time", lambda p: p.seconds / 60)):
            figures[name].add_trace(go.Scatter(x=[axis(p) for p in points], y=[_shown(state, p.best) for p in points],
                                               mode="lines", name=label, line={"color": colour, "shape": "hv"}))
        parted = fork_point(run, [other for other in runs if other is not run])
        if parted is not None:
            parent, trials = parted
            figures["compare-trials"].add_vline(x=trials, line={"dash": "dash", "color": colour},
                                                annotation_text=f"{run.run.name} parts from {parent.run.name}")
            parts.append(f"{run.run.name} is a fork of {parent.run.name}: the same {trials} completed trials up "
                         f"to event {run.state.forked_from['seq']}, then its own")
    figures["compare-trials"].update_layout(xaxis_title="completed trials", yaxis_title=f"best {metric} so far")
    figures["compare-time"].update_layout(xaxis_title="minutes since the start", yaxis_title=f"best {metric} so far")
    table = ("<table><tr><th>run</th><th>completed</th><th>best score</th><th>best trial</th><th>minutes</th></tr>"
             + "".join(rows) + "</table>")
    notes = "".join(f'<p class="note">{html.escape(part)}</p>' for part in parts)
    return table + notes + "".join(canvas.figure(figure, name) for name, figure in figures.items())


TABLE_COLUMNS = ("trial", "status", "origin", "parent", "score", "params", "epochs", "stop", "key")


def table_rows(state: State) -> list[list[Any]]:
    """The trial table's rows, one per trial, in the order of :data:`TABLE_COLUMNS`."""
    rows = []
    for trial in state.trials.values():
        metrics = trial.metrics or {}
        score = _shown(state, trial.score)
        rows.append([trial.id, str(trial.status), origin(state, trial), trial.parent,
                     None if score is None else round(score, 6), metrics.get("params"), metrics.get("epochs"),
                     trial.stop.rule if trial.stop else None, trial.key])
    return rows


def table_view(run: History) -> str:
    rows = table_rows(run.state)
    data = json.dumps(rows, separators=(",", ":"))
    if len(rows) > MOST_POINTS:  # a large run's table is gzipped (the browser unpacks it): a tenth of the bytes
        data, encoding = base64.b64encode(gzip.compress(data.encode(), mtime=0)).decode(), "gzip"
    else:
        data, encoding = data.replace("</", "<\\/"), "json"
    return (f'<p><input id="trial-filter" placeholder="filter: any text in a row" oninput="filterRows()"> '
            f'<button onclick="turn(-1)">previous</button> <span id="trial-page"></span> '
            f'<button onclick="turn(1)">next</button></p>'
            f'<table id="trials"><thead><tr id="trial-head"></tr></thead><tbody id="trial-rows"></tbody></table>'
            f'<script type="application/json" id="trial-data" data-encoding="{encoding}">{data}</script>'
            f'<script type="application/json" id="trial-columns">{json.dumps(TABLE_COLUMNS)}</script>')


def keras_block_params(state: State) -> Callable[[Trial], list[int] | None]:
    """Each block's parameter count of a tower (the head's last), by building it with Keras on the run's data
    shapes; None for a tower that cannot be built here (no Keras, data not on this machine, a cell space)."""
    def params_of(trial: Trial) -> list[int] | None:
        try:
            from blocks.tower import build_tower
            from trainers.datasets import load_dataset

            model = build_tower(trial.architecture, trial.hyperparameters, load_dataset(state.config.data).spec,
                                head=state.config.space.head)
        except Exception:  # noqa: BLE001 - the report draws the blocks without their sizes then
            return None
        counts = [0] * (len(trial.architecture) + 1)
        for layer in model.layers:
            index = next((i for i in range(len(trial.architecture)) if layer.name.startswith(f"b{i}_")),
                         len(trial.architecture))
            counts[index] += layer.count_params()
        return counts

    return params_of
