"""The dashboard: a local, read-only web page over a running or finished run (``engine dashboard``).

It shows the report's views (:mod:`replay.page`) and keeps them current: a thread follows the run's log (it
only reads it) and folds each new event into a live
:class:`~replay.history.History`; the page asks for the log's head twice a second and redraws when it moved. A
slider moves through the run's history: the views at any earlier event are replayed on demand. Only GET is
served; nothing a request says can change a run.

Routes: ``/`` (the page), ``/head`` (``{"head": seq}``), ``/views?at=SEQ`` (every view at an event, the latest
when ``at`` is left out: its HTML and its figures as plotly JSON).

Example::

    >>> with Dashboard("runs/m1d", port=0) as dashboard:
    ...     print(dashboard.url)        # http://127.0.0.1:PORT/
    ...     dashboard.serve_forever()
"""

from __future__ import annotations

import html
import json
import threading
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from engine.log import EventLog
from engine.runs import ReplayError, reader_at
from replay.history import History, history
from replay.page import SECTIONS, STYLE, TABLE_SCRIPT, sections, title_of
from replay.views import PLOT_CONFIG, Canvas

LOOPBACK = "127.0.0.1"
FOLLOW_SECONDS = 0.2  # how often the log is read again for new events

PAGE_SCRIPT = """
const config = %(config)s;
let following = true, drawn = -1, busy = false;
const slider = document.getElementById('at'), label = document.getElementById('at-label');
async function getJSON(path) {
  const response = await fetch(path, {cache: 'no-store'});
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}
async function drawAt(seq) {
  const views = await getJSON('/views?at=' + seq);
  const filter = document.getElementById('trial-filter');
  const typed = filter ? filter.value : '';
  document.getElementById('title').textContent = views.title;
  for (const section of views.sections) {
    const body = document.getElementById('body-' + section.name);
    if (body.dataset.html !== section.html) { body.innerHTML = section.html; body.dataset.html = section.html; }
  }
  for (const [id, figure] of Object.entries(views.figures)) {
    figure.layout.uirevision = 'kept';  // zoom and pan survive redraws
    await Plotly.react(id, figure.data, figure.layout, config);
  }
  if (document.getElementById('trial-filter')) {
    document.getElementById('trial-filter').value = typed; await setupTable();
  }
  linkPlots();
  drawn = views.seq;
  label.textContent = `event ${views.seq} of ${views.head}` + (following ? ' (following the run)' : '');
}
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const head = (await getJSON('/head')).head;
    slider.max = head;
    if (following) slider.value = head;
    const wanted = following ? head : Number(slider.value);
    if (wanted !== drawn) await drawAt(wanted);
  } catch (error) {
    label.textContent = 'lost the dashboard: ' + error.message;
  } finally { busy = false; }
}
slider.addEventListener('input', () => {
  following = Number(slider.value) >= Number(slider.max);
  drawn = -1; refresh();
});
refresh();
setInterval(refresh, 500);
"""


class Dashboard:
    """Serves the dashboard of ``run_dir`` on ``host:port`` (port 0: any free one) until closed."""

    def __init__(self, run_dir: Path | str, host: str = LOOPBACK, port: int = 8765) -> None:
        self.run = Path(run_dir)
        reader_at(self.run).close()  # one clear error now for a folder that is not a run
        self.live = History(self.run)
        self.lock = threading.Lock()
        self._stop, self._serving = threading.Event(), threading.Event()
        self._follower = threading.Thread(target=self._follow, name="dashboard-follow", daemon=True)
        self._past = lru_cache(maxsize=8)(lambda at: history(self.run, at))
        dashboard = self

        class Handler(_Handler):
            owner = dashboard

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._follower.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def _follow(self) -> None:
        """Fold every event of the log into the live history, then each new one as it is committed."""
        with EventLog.open_reader(self.run) as log:
            following = 1
            while not self._stop.is_set():
                for event in log.read(following):
                    with self.lock:
                        self.live.record(event)
                    following = event.seq + 1
                    if self._stop.is_set():
                        return
                self._stop.wait(FOLLOW_SECONDS)

    def head(self) -> int:
        with self.lock:
            return self.live.state.seq

    def views(self, at: int | None = None) -> dict[str, Any]:
        """Every view at event ``at`` (the latest when None or past the head), as the page draws them."""
        with self.lock:
            head = self.live.state.seq
            if at is None or at >= head:
                return self._views(self.live, head)
        return self._views(self._past(at), head)

    @staticmethod
    def _views(run: History, head: int) -> dict[str, Any]:
        canvas = Canvas(live=True)
        found = [{"name": name, "title": title, "html": body} for name, title, body in sections(run, canvas)]
        return {"seq": run.state.seq, "head": head, "title": title_of(run), "sections": found,
                "figures": canvas.figures}

    def page(self) -> str:
        from plotly.offline import get_plotlyjs

        names = SECTIONS
        body = "\n".join(f'<section id="{name}" class="view"><h2>{html.escape(title)}</h2><div id="body-{name}">'
                         f"</div></section>" for name, title in names)
        title = f"Lineage dashboard: {self.run}"
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
                f"<title>{html.escape(title)}"
                f"</title><style>{STYLE}\n#time {{ position: sticky; top: 0; background: #fff; padding: 0.5em 0; "
                f"z-index: 10; }} #at {{ width: 70%; }}</style><script>{get_plotlyjs()}</script></head>\n<body>"
                f'<h1 id="title">{html.escape(title)}</h1><div id="time"><input type="range" id="at" min="1" '
                f'max="1" value="1"> <span id="at-label">loading</span></div>\n{body}\n'
                f"<script>{TABLE_SCRIPT}\n{PAGE_SCRIPT % {'config': json.dumps(PLOT_CONFIG)}}</script></body></html>")

    def serve_forever(self) -> None:
        self._serving.set()
        self.server.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        self._stop.set()
        if self._serving.is_set():  # shutdown() waits for serve_forever to return: it must have begun
            self.server.shutdown()
        self.server.server_close()
        self._follower.join(5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    """GET only: the page, the head, the views. Every other method is refused."""

    owner: Dashboard
    server_version = "lineage-dashboard"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # a request log line per half second would drown the terminal

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlparse(self.path)
        if url.path == "/":
            self._send(HTTPStatus.OK, self.owner.page(), "text/html; charset=utf-8")
        elif url.path == "/head":
            self._send(HTTPStatus.OK, json.dumps({"head": self.owner.head()}), "application/json")
        elif url.path == "/views":
            at = parse_qs(url.query).get("at", [None])[0]
            try:
                seq = None if at is None else int(at)
                if seq is not None and seq < 1:
                    raise ValueError
                views = self.owner.views(seq)
            except (ValueError, ReplayError):
                self._send(HTTPStatus.BAD_REQUEST, f"at must be an event number from 1, not {at!r}\n", "text/plain")
                return
            self._send(HTTPStatus.OK, json.dumps(views), "application/json")
        else:
            self._send(HTTPStatus.NOT_FOUND, f"no such page: {url.path}\n", "text/plain")

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "the dashboard is read-only\n", "text/plain", allow="GET")

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # noqa: N815 - the stdlib's names

    def _send(self, status: HTTPStatus, text: str, kind: str, **headers: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name.title(), value)
        self.end_headers()
        self.wfile.write(data)
