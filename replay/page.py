"""The report page: one self-contained HTML file of a run's history (``engine report``).

It puts the views of :mod:`replay.views` in order, with plotly's JavaScript (it ships inside the Python package)
written into the page once, so the file opens offline, and a small script for the trial table (sort, filter,
pages) that every plotted point links to. The dashboard (:mod:`replay.dashboard`) serves the same sections live.

Example::

    >>> write_report("runs/m1d")                   # runs/m1d/report.html
    >>> write_report("runs/nb-evo", "both.html", compare=["runs/nb"])
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.state import Trial
from replay.history import History, comparable, history
from replay.views import (
    Canvas,
    compare_view,
    curves_view,
    header,
    keras_block_params,
    progress_view,
    size_view,
    table_view,
    towers_view,
    trainers_view,
    tree_view,
    worked_view,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 2px 8px; text-align: left; }
th { cursor: pointer; background: #f4f4f4; } tr.picked { background: #fff3b0; }
.facts td:first-child { color: #666; } .note { color: #666; font-style: italic; }
.tower { display: flex; flex-wrap: wrap; gap: 4px; align-items: stretch; margin: 0.4em 0; }
.block { border-radius: 4px; padding: 4px 8px; color: #fff; font-size: 0.8em; min-width: 5em; }
.block small { display: block; opacity: 0.85; } .head { background: #555; }
"""
TABLE_SCRIPT = """
let rows = [], shown = [], page = 0, sortColumn = null, ascending = true;
const pageSize = 100;
function cell(value) { return value === null || value === undefined ? '' : String(value); }
function draw() {
  const body = document.getElementById('trial-rows');
  body.innerHTML = '';
  for (const row of shown.slice(page * pageSize, (page + 1) * pageSize)) {
    const tr = document.createElement('tr');
    tr.id = 'trial-' + row[0];
    for (const value of row) {
      const td = document.createElement('td'); td.textContent = cell(value); tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  const pages = Math.max(1, Math.ceil(shown.length / pageSize));
  document.getElementById('trial-page').textContent = `page ${page + 1} of ${pages} (${shown.length} trials)`;
}
function filterRows() {
  const text = document.getElementById('trial-filter').value.toLowerCase();
  shown = rows.filter(row => row.some(value => cell(value).toLowerCase().includes(text)));
  page = 0; draw();
}
function sortBy(index) {
  ascending = sortColumn === index ? !ascending : true; sortColumn = index;
  const key = row => row[index];
  shown = [...shown].sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
    return (x < y ? -1 : 1) * (ascending ? 1 : -1);
  });
  page = 0; draw();
}
function turn(step) {
  const pages = Math.max(1, Math.ceil(shown.length / pageSize));
  page = Math.min(pages - 1, Math.max(0, page + step)); draw();
}
function showTrial(id) {
  document.getElementById('trial-filter').value = '';
  shown = rows; const at = rows.findIndex(row => row[0] === id);
  if (at < 0) return;
  page = Math.floor(at / pageSize); draw();
  const tr = document.getElementById('trial-' + id);
  document.querySelectorAll('tr.picked').forEach(other => other.classList.remove('picked'));
  tr.classList.add('picked'); tr.scrollIntoView({block: 'center'});
}
async function readRows() {
  const element = document.getElementById('trial-data');
  if (element.dataset.encoding !== 'gzip') return JSON.parse(element.textContent);
  const bytes = Uint8Array.from(atob(element.textContent), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return JSON.parse(await new Response(stream).text());
}
async function setupTable() {  // (again) from the table view's data, keeping the filter typed so far
  rows = await readRows();
  const columns = JSON.parse(document.getElementById('trial-columns').textContent);
  const head = document.getElementById('trial-head');
  head.innerHTML = '';
  columns.forEach((name, index) => {
    const th = document.createElement('th'); th.textContent = name; th.onclick = () => sortBy(index);
    head.appendChild(th);
  });
  sortColumn = null; filterRows();
}
function linkPlots() {  // a click on a plot's point shows that trial's row
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    if (plot.linked) continue;
    plot.linked = true;
    plot.on('plotly_click', event => {
      const id = event.points[0].customdata;
      if (typeof id === 'number') showTrial(id);
    });
  }
}
"""


def _section(name: str, title: str, body: str) -> str:
    return f'<section id="{name}" class="view"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


# -- the page -----------------------------------------------------------------------------------------------


#: The page's sections, in order: (name, title). With runs to compare, "compare" follows "header".
SECTIONS = (("header", "The run"), ("progress", "Progress"), ("size", "Size against score"),
            ("tree", "The lineage tree"), ("towers", "The best tower and the best ensemble"),
            ("trainers", "Trainers over time"), ("worked", "What worked"), ("curves", "Learning curves"),
            ("table", "Every trial"))


def sections(run: History, canvas: Canvas, params_of: Callable[[Trial], list[int] | None] | None = None,
             compare: Sequence[History] = ()) -> list[tuple[str, str, str]]:
    """Each view as (name, title, HTML), its figures on ``canvas``; with ``compare``, the runs side by side too."""
    bodies = {
        "header": lambda: header(run), "progress": lambda: progress_view(run, canvas),
        "size": lambda: size_view(run, canvas), "tree": lambda: tree_view(run, canvas),
        "towers": lambda: towers_view(run, params_of), "trainers": lambda: trainers_view(run, canvas),
        "worked": lambda: worked_view(run), "curves": lambda: curves_view(run, canvas),
        "table": lambda: table_view(run),
    }
    found = [(name, title, bodies[name]()) for name, title in SECTIONS]
    if compare:
        found.insert(1, ("compare", "Side by side", compare_view([run, *compare], canvas)))
    return found


def title_of(run: History) -> str:
    return f"Lineage report: {run.state.run_id} at event {run.state.seq}"


def render(run: History, params_of: Callable[[Trial], list[int] | None] | None = None,
           compare: Sequence[History] = ()) -> str:
    """The whole report page of a history (beside ``compare``'s), as HTML text."""
    from plotly.offline import get_plotlyjs

    title = title_of(run)
    body = "\n".join(_section(name, heading, content)
                     for name, heading, content in sections(run, Canvas(), params_of, compare))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head>\n<body><h1>{html.escape(title)}</h1>\n"
            f"{body}\n<script>{TABLE_SCRIPT}\nsetupTable(); linkPlots();</script></body></html>\n")


def write_report(run_dir: Path | str, out: Path | str | None = None, at: int | None = None,
                 block_params: bool = True, compare: Sequence[Path | str] = ()) -> Path:
    """Write the report of ``run_dir`` (as it stood after event ``at``; beside the runs in ``compare``) to ``out``
    (default ``run_dir/report.html``), whole or not at all."""
    run = history(run_dir, at)
    others = [history(other) for other in compare]
    comparable([run, *others])
    params_of = keras_block_params(run.state) if block_params and run.state.config.evaluator.kind == "keras" else None
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    page = render(run, params_of, others)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(page)
    partial.replace(out)
    return out
