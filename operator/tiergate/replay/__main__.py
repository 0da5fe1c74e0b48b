"""``python -m tiergate.replay discards|replay ...``: the replay verbs without the top-level command.

The same apps the ``tiergate`` command mounts as ``tiergate discards`` and ``tiergate replay``;
tests and slim images use this entry point.
"""

from __future__ import annotations

import typer

from tiergate.replay.cli import discards_app, replay_app

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(discards_app, name="discards")
app.add_typer(replay_app, name="replay")

if __name__ == "__main__":
    app()
