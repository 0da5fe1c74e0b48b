"""Runs the `tiergate dev` verbs as `python -m tiergate.devcluster` (spawns the pod runner)."""

from tiergate.devcluster.cli import app

app(prog_name="tiergate dev")
