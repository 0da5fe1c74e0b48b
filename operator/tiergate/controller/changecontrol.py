"""On-call verbs of change control: approve a release at a gated tier, freeze and unfreeze a fleet.

Like the other on-call verbs they write annotations and nothing else; the operator reads them
before a tier starts a release (:mod:`tiergate.domain.changecontrol`) and records what it did.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from tiergate.api.annotations import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_RELEASE,
    ANNOTATION_FREEZE_REASON,
    ANNOTATION_FROZEN_BY,
    ANNOTATION_FROZEN_UNTIL,
)
from tiergate.api.durations import parse_duration
from tiergate.api.v1alpha1 import Approval, SenderTierSpec
from tiergate.controller.oncall import Kubeconfig, Namespace, _kube, _require_fleet, _tiers
from tiergate.domain.release import release_of
from tiergate.domain.revision import revision_of

Who = Annotated[str | None, typer.Option(help="Who asks (recorded); default: your user.")]


def release_key(tier: Mapping[str, Any]) -> str:
    """The release key a SenderTier object's spec asks for, as the operator computes it."""
    spec = tier["spec"]
    return release_of(SenderTierSpec.model_validate(spec), revision_of(spec["template"]))


def until_time(text: str, now: datetime) -> datetime:
    """``--until``: an RFC 3339 time (UTC when it names no zone) or a duration from now (``2h``)."""
    try:
        return now + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            "give an RFC 3339 time (2026-12-07T09:00:00+11:00) or a duration (2h, 90m)", param_hint="--until"
        ) from exc
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if at <= now:
        raise typer.BadParameter(f"{at.isoformat()} is not in the future", param_hint="--until")
    return at


def _patch(
    kubeconfig: str | None, namespace: str, names: list[str], annotations: dict[str, str | None]
) -> None:
    kube = _kube(kubeconfig)

    async def go() -> None:
        for name in names:
            await kube.patch_annotations(namespace, name, annotations)

    asyncio.run(go())


def approve(
    tier: Annotated[str, typer.Argument(help="The SenderTier (spec.approval: Required).")],
    namespace: Namespace = "default",
    kubeconfig: Kubeconfig = None,
    who: Who = None,
    release: Annotated[
        str | None,
        typer.Option(help="The release key to approve; default: the one the tier's spec asks for now."),
    ] = None,
) -> None:
    """Approve one release at a tier that requires approval; it starts once nothing else holds it."""
    found = [t for t in _tiers(kubeconfig, namespace) if t["metadata"]["name"] == tier]
    if not found:
        raise typer.BadParameter(f"no SenderTier {tier!r} in namespace {namespace}", param_hint="TIER")
    key = release or release_key(found[0])
    name = who or getpass.getuser()
    _patch(kubeconfig, namespace, [tier], {ANNOTATION_APPROVED_RELEASE: key, ANNOTATION_APPROVED_BY: name})
    typer.echo(f"approved release {key} for {namespace}/{tier} as {name}")
    if found[0]["spec"].get("approval", Approval.NOT_REQUIRED.value) != Approval.REQUIRED.value:
        typer.echo(f"note: {tier} does not require approval (spec.approval is not Required)")


def freeze(
    fleet: Annotated[str, typer.Argument(help="The fleet to freeze.")],
    until: Annotated[
        str, typer.Option(help="Until when: an RFC 3339 time, or a duration from now such as 2h.")
    ],
    why: Annotated[str, typer.Option(help="Why, for whoever looks next (shown in status).")],
    namespace: Namespace = "default",
    kubeconfig: Kubeconfig = None,
    who: Who = None,
) -> None:
    """Freeze a fleet: no tier starts a release until then; rollbacks still happen."""
    at = until_time(until, datetime.now(UTC))
    names = [t["metadata"]["name"] for t in _require_fleet(_tiers(kubeconfig, namespace), fleet)]
    by = who or getpass.getuser()
    stamp = at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    _patch(
        kubeconfig,
        namespace,
        names,
        {ANNOTATION_FROZEN_UNTIL: stamp, ANNOTATION_FREEZE_REASON: why, ANNOTATION_FROZEN_BY: by},
    )
    typer.echo(f"froze fleet {fleet} until {stamp}: {', '.join(names)}")


def unfreeze(
    fleet: Annotated[str, typer.Argument(help="The fleet to unfreeze.")],
    namespace: Namespace = "default",
    kubeconfig: Kubeconfig = None,
) -> None:
    """Lift a fleet's freeze now."""
    names = [t["metadata"]["name"] for t in _require_fleet(_tiers(kubeconfig, namespace), fleet)]
    _patch(
        kubeconfig,
        namespace,
        names,
        {ANNOTATION_FROZEN_UNTIL: None, ANNOTATION_FREEZE_REASON: None, ANNOTATION_FROZEN_BY: None},
    )
    typer.echo(f"unfroze fleet {fleet}: {', '.join(names)}")


def register(app: typer.Typer) -> None:
    """Add the change-control verbs to the top-level command."""
    app.command("approve")(approve)
    app.command("freeze")(freeze)
    app.command("unfreeze")(unfreeze)
