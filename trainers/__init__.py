"""Trainers: the daemon that evaluates candidates for an engine, its protocol client, and evaluators."""
