"""``tiergate drill``: replay the 2020 outage against plain Deployments, Argo Rollouts and tiergate.

One command starts the whole stack on the local control plane, runs each chosen scenario in
both modes one after the other (and fail-share also with a canary in every tier), and writes
report.json, report.md and timeline.png.
"""

from __future__ import annotations

import gzip
import json
import logging
import shlex
import signal
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tiergate_kits.drill import report, timeline
from tiergate_kits.drill.analysis import Recording, from_json, summarise, to_json
from tiergate_kits.drill.argo import MODE as ARGO
from tiergate_kits.drill.scenario import (
    ALL_MODES,
    MODES,
    SCENARIOS,
    SHORT,
    SHORT_SCENARIOS,
    Run,
    Settings,
    runs_in,
)
from tiergate_kits.drill.stack import SharedStack, StackError

app = typer.Typer(no_args_is_help=False)
log = logging.getLogger("tiergate_kits.drill")
RECORDINGS = "recordings.json.gz"


def settings_for(short: bool, **overrides: Any) -> Settings:
    """The default settings, shortened for CI if asked, with explicit overrides on top."""
    base = Settings()
    if short:
        base = replace(base, **SHORT)  # type: ignore[arg-type]
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def chosen_scenarios(scenario: str | None, short: bool) -> list[str]:
    """The scenarios to run: one by name, every one for ``all``, else the default set."""
    if scenario == "all":
        return list(SCENARIOS)
    if scenario is None:
        return list(SHORT_SCENARIOS if short else SCENARIOS)
    return [scenario]


def chosen_modes(mode: str | None) -> list[str]:
    """The modes to run: by name (comma-separated), those that run in every scenario for
    ``every``, all of them for ``all``.

    The default is ``every`` (the three contenders; the canary run is asked for by name or ``all``).
    """
    if mode is None:
        mode = "every"
    if mode == "every":
        return list(MODES)
    if mode == "all":
        return list(ALL_MODES)
    return [m.strip() for m in mode.split(",")]


def run_drill(scenarios: list[str], modes: list[str], settings: Settings, out: Path, command: str) -> str:
    """Run every scenario in every mode that runs in it on one stack; write the report; return the table."""
    started = time.monotonic()
    shared = SharedStack(out / "work", argo_rollouts=ARGO in modes)
    recordings: list[Recording] = []
    try:
        shared.start()
        index = 0
        for scenario in scenarios:
            for mode in (m for m in modes if runs_in(m, scenario)):
                index += 1
                log.info("Drill run starting scenario=%s mode=%s", scenario, mode)
                run = Run(
                    shared, settings, scenario, mode, index, out / "work" / f"run-{index}-{mode}-{scenario}"
                )
                recordings.append(run.execute())
    finally:
        shared.stop()
    wall = time.monotonic() - started
    with gzip.open(out / RECORDINGS, "wt") as f:
        json.dump(
            {"settings": settings.public(), "wall_seconds": wall, "runs": [to_json(r) for r in recordings]}, f
        )
    return render(out, recordings, settings.public(), wall, command)


def render(
    out: Path, recordings: list[Recording], settings: dict[str, Any], wall: float, command: str
) -> str:
    """Compute the numbers and write report.json, report.md and timeline.png."""
    runs = [summarise(r) for r in recordings]
    timeline.render(recordings, out / "timeline.png")
    return report.write(out, runs, settings, wall, command)


def rerender(out: Path, command: str) -> str:
    """Recompute the report of an earlier drill from the recordings it kept."""
    with gzip.open(out / RECORDINGS, "rt") as f:
        data = json.load(f)
    recordings = [from_json(r) for r in data["runs"]]
    return render(out, recordings, data["settings"], float(data["wall_seconds"]), command)


def _command() -> str:
    return ("tiergate drill " + shlex.join(sys.argv[2:])).strip()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@app.callback(invoke_without_command=True)
def drill(
    scenario: Annotated[
        str | None,
        typer.Option(
            help="no-bind, fail-share, late-failure or all (default: all; with --short, the first two)."
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help=(
                "baseline, tiergate, argo-rollouts, tiergate-canary (fail-share only), a "
                "comma-separated list of them, every (the first three, which run in every scenario) "
                "or all (default: every)."
            )
        ),
    ] = None,
    short: Annotated[bool, typer.Option("--short", help="The shortened CI version (a few minutes).")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default .run/drill/<UTC timestamp>).")
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Messages per second, all classes together.")] = None,
    detection_delay: Annotated[
        float | None,
        typer.Option(help="Baseline and Argo Rollouts: seconds until a person notices the outage."),
    ] = None,
    replicas: Annotated[
        int | None, typer.Option(help="Worker pods per tier (tiergate-canary: at least 4).")
    ] = None,
    warmup: Annotated[
        float | None, typer.Option(help="Seconds of steady traffic before the release.")
    ] = None,
    fail_share: Annotated[
        float | None, typer.Option(help="fail-share: the share of submits the bad release fails.")
    ] = None,
    recompute: Annotated[
        Path | None,
        typer.Option(help="Only recompute report and timeline of an earlier drill's directory."),
    ] = None,
) -> None:
    """Run the incident drill and print the comparison table."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    scenarios = chosen_scenarios(scenario, short)
    modes = chosen_modes(mode)
    if any(s not in SCENARIOS for s in scenarios) or any(m not in ALL_MODES for m in modes):
        typer.echo(
            f"error: scenario must be one of {SCENARIOS} or all; mode one of {ALL_MODES}, every or all",
            err=True,
        )
        raise typer.Exit(2)
    if not any(runs_in(m, s) for m in modes for s in scenarios):
        typer.echo(f"error: mode {mode} runs in none of the scenarios {scenarios}", err=True)
        raise typer.Exit(2)
    settings = settings_for(
        short,
        rate=rate,
        detection_delay=detection_delay,
        replicas=replicas,
        warmup=warmup,
        fail_share=fail_share,
    )
    if recompute is not None:
        typer.echo(rerender(recompute, _command()))
        return
    signal.signal(signal.SIGTERM, _interrupted)
    target = out or Path(".run/drill") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        table = run_drill(scenarios, modes, settings, target.resolve(), _command())
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(table)
    typer.echo(f"Report written to {target}/report.md, report.json and timeline.png")
