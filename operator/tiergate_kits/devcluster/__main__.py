"""Runs the `tiergate dev` verbs as `python -m tiergate_kits.devcluster` (spawns the pod runner)."""

from tiergate_kits.devcluster.cli import app

app(prog_name="tiergate dev")
