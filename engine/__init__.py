"""Lineage's engine: the event log, the fold, spaces, searchers, the server and the CLI."""

__version__ = "0.1.0"
