"""The progress line of a running search: a tqdm bar on a terminal, a plain line every few seconds
in a log file (where a redrawn bar would be noise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from engine.state import State


class Progress:
    """Call :meth:`update` as often as you like (it throttles itself) and :meth:`close` at the end."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self._bar: tqdm | None = None
        self._last = 0.0
        self._started = time.monotonic()
        self._first_done: int | None = None

    def _summary(self, state: State) -> str:
        best = state.best_trial()
        metric = state.config.search.metric
        best_text = f"best {metric} {best.metrics[metric]:.4g} (trial {best.id})" if best else "best -"
        stopped = f"{len(state.stopped)} stopped early, " if state.stopped else ""
        promoted = f"{state.promotions} promoted, " if state.promotions else ""
        return f"{len(state.failed)} failed, {stopped}{promoted}{len(state.leases)} running, {best_text}"

    def _rate(self, done: int) -> float:
        elapsed = time.monotonic() - self._started
        return (done - self._first_done) / elapsed if elapsed > 0 else 0.0

    def update(self, state: State, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._first_done is None:
            self._first_done = len(state.completed) + len(state.failed)
        if self.stream.isatty():
            if self._bar is None:
                self._bar = tqdm(total=state.budget, initial=self._first_done, unit="trial", file=self.stream,
                                 dynamic_ncols=True)
            if force or now - self._last > 0.2:
                self._last = now
                self._bar.total = state.budget
                self._bar.n = len(state.completed) + len(state.failed)
                self._bar.set_postfix_str(self._summary(state), refresh=True)
        elif force or now - self._last > self.interval:
            self._last = now
            done = len(state.completed) + len(state.failed)
            print(f"{done}/{state.budget} trials, {self._summary(state)}, {self._rate(done):.1f} trials/s",
                  file=self.stream, flush=True)

    def close(self, state: State) -> None:
        if self.enabled:
            self.update(state, force=True)
            if self._bar is not None:
                self._bar.close()
