"""Replay: rebuild a run's state at any event, verify its determinism, fork it, report on it."""

from engine.runs import ReplayError, state_at
from replay.fork import ForkError, fork
from replay.verify import Mismatch, Verification, verify

__all__ = ["ForkError", "Mismatch", "ReplayError", "Verification", "fork", "state_at", "verify"]
