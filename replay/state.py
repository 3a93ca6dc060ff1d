"""The state of a run as it was right after any event: ``fold(log[:seq])``.

Readers never block the engine, so this works on a run that is being served.

Example::

    >>> state = state_at("runs/nb", at=120)
    >>> [state.trials[t].key for t in state.top]
"""

from __future__ import annotations

from pathlib import Path

from engine.fold import State, fold_records
from engine.log import EventLog, LogError


class ReplayError(ValueError):
    """A replay that cannot be done as asked (no run there, a seq outside the log)."""


def state_at(run_dir: Path | str, at: int | None = None) -> State:
    """The state right after event ``at`` (after the last event when ``at`` is None)."""
    try:
        log = EventLog.open_reader(run_dir)
    except LogError as exc:
        raise ReplayError(str(exc)) from None
    with log:
        if at is not None and not 1 <= at <= log.head:
            raise ReplayError(f"--at {at} is outside the log of {run_dir} (events 1..{log.head})")
        return fold_records(log.records(1, at))
