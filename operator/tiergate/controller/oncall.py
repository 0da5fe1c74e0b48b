"""On-call verbs: see a fleet at a glance, and pause, resume, retry, promote or abort a rollout.

Every verb writes an annotation on SenderTiers and nothing else: the operator acts on it, records
that it did in status, and the request stays visible on the object for whoever looks next.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from tiergate.api.annotations import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSED,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    ANNOTATION_UNTESTED_RELEASE,
)
from tiergate.clients.kube import Kube, load_config
from tiergate.controller.statusview import WIDTH, fleet_tiers, layout

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the SenderTiers.")]
Kubeconfig = Annotated[str | None, typer.Option(envvar="KUBECONFIG", help="Path of a kubeconfig.")]


def _kube(kubeconfig: str | None) -> Kube:
    return Kube(load_config(kubeconfig.split(":")[0] if kubeconfig else None))


def _token(who: str | None) -> str:
    """A request token: who asked, and when (so a repeated request is a new one)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{who or getpass.getuser()}@{stamp}"


def _annotate(kubeconfig: str | None, namespace: str, names: list[str], key: str, value: str | None) -> None:
    kube = _kube(kubeconfig)

    async def go() -> None:
        for name in names:
            await kube.patch_annotations(namespace, name, {key: value})

    asyncio.run(go())


def _tiers(kubeconfig: str | None, namespace: str) -> list[dict[str, Any]]:
    return asyncio.run(_kube(kubeconfig).list_tiers(namespace))


def _require_fleet(items: list[dict[str, Any]], fleet: str) -> list[dict[str, Any]]:
    tiers = fleet_tiers(items, fleet)
    if not tiers:
        raise typer.BadParameter(f"no SenderTier of fleet {fleet!r} in this namespace", param_hint="FLEET")
    return tiers


def pause(
    fleet: Annotated[str, typer.Argument(help="The fleet to pause.")],
    namespace: Namespace = "default",
    kubeconfig: Kubeconfig = None,
) -> None:
    """Pause a fleet where it is: no tier starts or signs off a revision until resumed."""
    names = [t["metadata"]["name"] for t in _require_fleet(_tiers(kubeconfig, namespace), fleet)]
    _annotate(kubeconfig, namespace, names, ANNOTATION_PAUSED, "true")
    typer.echo(f"paused fleet {fleet}: {', '.join(names)}")


def resume(
    fleet: Annotated[str, typer.Argument(help="The fleet to resume.")],
    namespace: Namespace = "default",
    kubeconfig: Kubeconfig = None,
) -> None:
    """Resume a paused fleet."""
    names = [t["metadata"]["name"] for t in _require_fleet(_tiers(kubeconfig, namespace), fleet)]
    _annotate(kubeconfig, namespace, names, ANNOTATION_PAUSED, None)
    typer.echo(f"resumed fleet {fleet}: {', '.join(names)}")


def _request(kind: str, key: str, help_text: str) -> Any:
    def verb(
        tier: Annotated[str, typer.Argument(help="The SenderTier.")],
        namespace: Namespace = "default",
        kubeconfig: Kubeconfig = None,
        who: Annotated[str | None, typer.Option(help="Who asks (recorded); default: your user.")] = None,
    ) -> None:
        token = _token(who)
        _annotate(kubeconfig, namespace, [tier], key, token)
        typer.echo(f"{kind} requested for {namespace}/{tier} as {token}")

    verb.__doc__ = help_text
    return verb


retry = _request("retry", ANNOTATION_RETRY, "Retry a halted tier's revision.")


def promote(
    tier: Annotated[str, typer.Argument(help="The SenderTier.")],
    namespace: Namespace = "default",
    kubeconfig: Kubeconfig = None,
    who: Annotated[str | None, typer.Option(help="Who asks (recorded); default: your user.")] = None,
    untested_release: Annotated[
        bool,
        typer.Option(
            "--untested-release",
            help=(
                "Instead: let the tier take the release its spec asks for although the lower tiers "
                "have not signed it off (recorded in status and as an Event)."
            ),
        ),
    ] = False,
) -> None:
    """Sign a baking tier off now, skipping the rest of its bake; or let an untested release through."""
    key, kind = (
        (ANNOTATION_UNTESTED_RELEASE, "untested release")
        if untested_release
        else (ANNOTATION_PROMOTE, "promote")
    )
    token = _token(who)
    _annotate(kubeconfig, namespace, [tier], key, token)
    typer.echo(f"{kind} requested for {namespace}/{tier} as {token}")


abort = _request("abort", ANNOTATION_ABORT, "Halt the tier's rollout now and roll it back.")


def render(items: list[dict[str, Any]], fleet: str | None) -> Text:
    """The fleet view on-call reads, laid out for a 100-column terminal."""
    return Text("\n".join(layout(items, fleet, datetime.now(UTC))), no_wrap=True)


def status(
    fleet: Annotated[str | None, typer.Argument(help="Show one fleet (default: all).")] = None,
    namespace: Namespace = "default",
    kubeconfig: Kubeconfig = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh every 2 s.")] = False,
) -> None:
    """Show each fleet's tiers in order: phase, revisions, check values against thresholds."""
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    items = _tiers(kubeconfig, namespace)
    if output == "json":
        chosen = [t for t in items if not fleet or t["spec"].get("fleet") == fleet]
        rows = [
            {
                "name": t["metadata"]["name"],
                "fleet": t["spec"].get("fleet"),
                "order": t["spec"].get("order"),
                "trafficClass": t["spec"].get("trafficClass"),
                "annotations": {
                    k: v
                    for k, v in (t["metadata"].get("annotations") or {}).items()
                    if k.startswith("tiergate.io/")
                },
                "status": t.get("status") or {},
            }
            for t in sorted(chosen, key=lambda t: (t["spec"].get("fleet"), t["spec"].get("order", 0)))
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    console = Console(width=WIDTH)
    if not watch:
        console.print(render(items, fleet))
        return
    with Live(render(items, fleet), console=console, refresh_per_second=1) as live:
        while True:
            time.sleep(2)
            live.update(render(_tiers(kubeconfig, namespace), fleet))


def register(app: typer.Typer) -> None:
    """Add the on-call verbs to the top-level command."""
    app.command("status")(status)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("retry", help="Retry a halted tier's revision.")(retry)
    app.command(
        "promote",
        help=(
            "Sign a baking tier off now, skipping the rest of its bake; with --untested-release, let "
            "the tier take a release the lower tiers have not signed off."
        ),
    )(promote)
    app.command("abort", help="Halt the tier's rollout now and roll it back.")(abort)
