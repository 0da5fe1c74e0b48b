"""Command-line verbs of replay: ``tiergate discards ...`` and ``tiergate replay ...``.

Two typer apps: `discards_app` (list, counts) and `replay_app` (serve, start, status, pause,
resume, cancel, list). Every verb but ``serve`` talks to the replay service over HTTP with
an on-call token (``--url``/``TIERGATE_REPLAY_URL``, ``--token``/``TIERGATE_REPLAY_TOKEN``);
``start --from-halt`` reads the SenderTier's ``status.halt`` from the Kubernetes API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tiergate.clients.replay import ReplayApiError, ReplayClient, ReplayUnavailable, halt_filter

discards_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="See the discard log: list and count discarded messages.",
)
replay_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Replay discarded messages: run the service, start and steer jobs.",
)

T = TypeVar("T")

Url = Annotated[str, typer.Option("--url", envvar="TIERGATE_REPLAY_URL", help="Replay service base URL.")]
Token = Annotated[
    str,
    typer.Option(
        "--token", envvar="TIERGATE_REPLAY_TOKEN", help="On-call bearer token of the replay service."
    ),
]
Output = Annotated[str, typer.Option("--output", "-o", help="table or json.")]
From = Annotated[str | None, typer.Option("--from", help="Discarded at or after (RFC 3339).")]
To = Annotated[str | None, typer.Option("--to", help="Discarded before (RFC 3339).")]
Customer = Annotated[list[str] | None, typer.Option("--customer", help="Customer id (repeatable).")]
Tier = Annotated[list[str] | None, typer.Option("--tier", help="Tier, the SenderTier name (repeatable).")]
Revision = Annotated[list[str] | None, typer.Option("--revision", help="Revision hash (repeatable).")]
Reason = Annotated[list[str] | None, typer.Option("--reason", help="Discard reason (repeatable).")]
Klass = Annotated[list[str] | None, typer.Option("--traffic-class", help="Traffic class (repeatable).")]
Replayed = Annotated[
    bool | None, typer.Option("--replayed/--not-replayed", help="Only discards a job did (not) claim.")
]
DEFAULT_URL = "http://127.0.0.1:8090"


def _filter(
    since: str | None,
    until: str | None,
    customer: list[str] | None,
    tier: list[str] | None,
    revision: list[str] | None,
    reason: list[str] | None,
    traffic_class: list[str] | None,
    replayed: bool | None,
) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "from": since,
        "to": until,
        "customer": customer,
        "tier": tier,
        "revision": revision,
        "reason": reason,
        "traffic_class": traffic_class,
        "replayed": replayed,
    }
    return {k: v for k, v in wire.items() if v not in (None, [])}


def _call(url: str, token: str, fn: Callable[[ReplayClient], Awaitable[T]]) -> T:
    if not token:
        typer.echo("error: no token: pass --token or set TIERGATE_REPLAY_TOKEN", err=True)
        raise typer.Exit(2)

    async def go() -> T:
        async with ReplayClient(url, token) as client:
            return await fn(client)

    try:
        return asyncio.run(go())
    except ReplayApiError as exc:
        where = f" ({exc.field})" if exc.field else ""
        typer.echo(f"error: {exc.status} {exc.message}{where}", err=True)
        raise typer.Exit(1) from None
    except ReplayUnavailable as exc:
        typer.echo(f"error: replay service at {url} unreachable: {exc.__cause__}", err=True)
        raise typer.Exit(1) from None


def _check_output(output: str) -> None:
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")


def _json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


# --- discards --------------------------------------------------------------------------------


@discards_app.command("list")
def list_discards(
    since: From = None,
    until: To = None,
    customer: Customer = None,
    tier: Tier = None,
    revision: Revision = None,
    reason: Reason = None,
    traffic_class: Klass = None,
    replayed: Replayed = None,
    limit: Annotated[int, typer.Option(help="Show at most this many (newest first).")] = 50,
    url: Url = DEFAULT_URL,
    token: Token = "",
    output: Output = "table",
) -> None:
    """List discarded messages matching the filters, newest first."""
    _check_output(output)
    f = _filter(since, until, customer, tier, revision, reason, traffic_class, replayed)

    async def fetch(client: ReplayClient) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < limit:
            page = await client.list_discards(f, limit=min(1000, limit - len(items)), cursor=cursor)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return items

    items = _call(url, token, fetch)
    if output == "json":
        _json(items)
        return
    table = Table(title=f"{len(items)} discards", title_justify="left")
    for col in (
        "Discarded at",
        "Message",
        "Customer",
        "Class",
        "Tier",
        "Revision",
        "Reason",
        "Attempts",
        "Replayed by",
    ):
        table.add_column(col, overflow="fold")
    for d in items:
        table.add_row(
            d["discarded_at"][:19],
            d["message_id"],
            d["customer"],
            d["traffic_class"],
            d["tier"] or "",
            d["revision"] or "",
            d["reason"],
            str(d["attempts"]),
            d["replay_job"] or "",
        )
    Console().print(table)


@discards_app.command("counts")
def counts(
    by: Annotated[
        str, typer.Option("--by", help="reason, tier, customer, revision or traffic_class.")
    ] = "reason",
    since: From = None,
    until: To = None,
    customer: Customer = None,
    tier: Tier = None,
    revision: Revision = None,
    reason: Reason = None,
    traffic_class: Klass = None,
    replayed: Replayed = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    output: Output = "table",
) -> None:
    """Count discards matching the filters, grouped by one dimension."""
    _check_output(output)
    f = _filter(since, until, customer, tier, revision, reason, traffic_class, replayed)
    body = _call(url, token, lambda c: c.counts(by, f))
    if output == "json":
        _json(body)
        return
    table = Table(title=f"discards by {body['group_by']}: {body['total']}", title_justify="left")
    table.add_column(body["group_by"].replace("_", " ").capitalize())
    table.add_column("Discards", justify="right")
    for key, count in body["counts"].items():
        table.add_row(key or "(none)", str(count))
    Console().print(table)


# --- replay ----------------------------------------------------------------------------------


@replay_app.command()
def serve(
    store: Annotated[str | None, typer.Option(help="Store URL (env TIERGATE_STORE_URL).")] = None,
    host: Annotated[
        str | None, typer.Option(help="HTTP host (env TIERGATE_REPLAY_HOST, then TIERGATE_HTTP_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (env TIERGATE_REPLAY_PORT, 8090).")] = None,
    tokens_file: Annotated[
        str | None, typer.Option(help="File of token=name[:read] lines (env TIERGATE_REPLAY_TOKENS_FILE).")
    ] = None,
    max_rate: Annotated[
        float | None,
        typer.Option(
            help="Upstream cap, messages/s; no job goes faster (env TIERGATE_REPLAY_MAX_RATE, 200).",
        ),
    ] = None,
    metrics_interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between discard gauge refreshes (env TIERGATE_REPLAY_METRICS_INTERVAL, 15).",
        ),
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(
            help="Most discards claimed per store transaction (env TIERGATE_REPLAY_MAX_BATCH, 500).",
        ),
    ] = None,
) -> None:
    """Run the replay service: discard log API, replay jobs, /healthz /readyz /metrics."""
    from tiergate.errors import ConfigError
    from tiergate.replay.service import run_service
    from tiergate.replay.settings import replay_settings

    try:
        settings = replay_settings(
            store_url=store,
            host=host,
            port=port,
            tokens_file=tokens_file,
            max_rate=max_rate,
            metrics_interval=metrics_interval,
            max_batch=max_batch,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=os.environ.get("TIERGATE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(run_service(settings))


def _job_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title_justify="left")
    for col in (
        "Job",
        "State",
        "Matched",
        "Replayed",
        "Skipped",
        "Too old",
        "Failed",
        "Rate",
        "Dry run",
        "Source",
        "Filter",
        "Error",
    ):
        table.add_column(col, overflow="fold")
    for j in jobs:
        rate = j["effective_rate"]
        table.add_row(
            j["id"],
            j["state"],
            str(j["matched"]),
            str(j["replayed"]),
            str(j["skipped"]),
            str(j["too_old"]),
            str(j["failed"]),
            "unlimited" if rate is None else f"{rate:g}/s",
            "yes" if j["dry_run"] else "",
            j["source"] or "",
            " ".join(f"{k}={v}" for k, v in j["filter"].items()) or "(all)",
            j["error"] or "",
        )
    return table


FINAL = {"done", "cancelled", "failed"}


def _watch(url: str, token: str, job: dict[str, Any]) -> dict[str, Any]:
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("replayed {task.fields[replayed]} skipped {task.fields[skipped]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(
            f"job {job['id']}", total=job["matched"] or None, replayed=job["replayed"], skipped=job["skipped"]
        )
        while True:
            bar.update(
                task,
                total=job["matched"] or None,
                completed=job["done"],
                replayed=job["replayed"],
                skipped=job["skipped"],
                description=f"job {job['id']} {job['state']}",
            )
            if job["state"] in FINAL or job["state"] == "paused":
                return job
            time.sleep(0.5)
            job = _get_job(url, token, job["id"])


def _get_job(url: str, token: str, job_id: str) -> dict[str, Any]:
    return _call(url, token, lambda c: c.get_job(job_id))


def _show(job: dict[str, Any], output: str) -> None:
    if output == "json":
        _json(job)
        return
    table = Table(title=f"replay job {job['id']}", title_justify="left", show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value", overflow="fold")
    rate = job["effective_rate"]
    rows = [
        ("State", job["state"]),
        (
            "Progress",
            f"{job['done']} of {job['matched']} (replayed {job['replayed']}, skipped "
            f"{job['skipped']} of which too old {job['too_old']}, failed {job['failed']})",
        ),
        ("Rate", "unlimited" if rate is None else f"{rate:g}/s"),
        ("Filter", " ".join(f"{k}={v}" for k, v in job["filter"].items()) or "(all discards)"),
        ("Max age", "-" if job["max_age"] is None else f"{job['max_age']:g}s"),
        ("Source", job["source"] or ""),
        ("Created", job["created_at"][:19]),
    ]
    if job["dry_run"]:
        rows.insert(1, ("Dry run", f"would replay {job.get('would_replay')}"))
    if job["error"]:
        rows.append(("Error", job["error"]))
    for key, value in rows:
        table.add_row(key, str(value))
    Console().print(table)


@replay_app.command()
def start(
    since: From = None,
    until: To = None,
    customer: Customer = None,
    tier: Tier = None,
    revision: Revision = None,
    reason: Reason = None,
    traffic_class: Klass = None,
    replayed: Replayed = None,
    from_halt: Annotated[
        str | None,
        typer.Option(
            "--from-halt",
            help="Replay what this SenderTier's halted revision discarded in its window.",
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Namespace of the SenderTier.")
    ] = "default",
    kubeconfig: Annotated[str | None, typer.Option(envvar="KUBECONFIG", help="Path of a kubeconfig.")] = None,
    rate: Annotated[
        float | None, typer.Option(help="Messages per second (default: the upstream cap).")
    ] = None,
    max_age: Annotated[
        str | None,
        typer.Option(help="Do not resend messages accepted longer ago than this (seconds or 30m, 6h)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be replayed.")] = False,
    everything: Annotated[
        bool, typer.Option("--all", help="Replay every discard not yet replayed (needed without filters).")
    ] = False,
    allow_concurrent: Annotated[
        bool,
        typer.Option("--allow-concurrent", help="Run even while another job replays the same traffic class."),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show a progress bar until the job ends.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    output: Output = "table",
) -> None:
    """Start a replay job over the discards matching the filters (or a halt's window)."""
    _check_output(output)
    f = _filter(since, until, customer, tier, revision, reason, traffic_class, replayed)
    source = None
    if from_halt:
        if f:
            raise typer.BadParameter("give either --from-halt or filters, not both", param_hint="--from-halt")
        from tiergate.clients.tiers import TierNotFound, read_halt

        try:
            halt = asyncio.run(
                read_halt(namespace, from_halt, kubeconfig.split(":")[0] if kubeconfig else None)
            )
        except TierNotFound as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if halt is None:
            typer.echo(f"error: SenderTier {namespace}/{from_halt} is not halted (no status.halt)", err=True)
            raise typer.Exit(1)
        f = halt_filter(from_halt, halt)
        source = f"halt:{namespace}/{from_halt}@{halt.get('revision')}"
    age: float | str | None = None
    if max_age is not None:
        try:
            age = float(max_age)
        except ValueError:
            age = max_age
    job = _call(
        url,
        token,
        lambda c: c.create_job(
            f,
            rate=rate,
            dry_run=dry_run,
            max_age=age,
            allow_concurrent=allow_concurrent,
            source=source,
            everything=everything,
        ),
    )
    if wait:
        job = _watch(url, token, job)
    _show(job, output)
    if job["state"] == "failed":
        raise typer.Exit(1)


@replay_app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="The replay job.")],
    wait: Annotated[bool, typer.Option("--wait", help="Show a progress bar until the job ends.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = "",
    output: Output = "table",
) -> None:
    """Show a replay job's state and progress."""
    _check_output(output)
    job = _call(url, token, lambda c: c.get_job(job_id))
    if wait:
        job = _watch(url, token, job)
    _show(job, output)


def _action(name: str) -> Callable[..., None]:
    def verb(
        job_id: Annotated[str, typer.Argument(help="The replay job.")],
        url: Url = DEFAULT_URL,
        token: Token = "",
        output: Output = "table",
    ) -> None:
        _check_output(output)
        job = _call(url, token, lambda c: getattr(c, name)(job_id))
        _show(job, output)

    return verb


replay_app.command("pause", help="Pause a replay job after its current batch.")(_action("pause"))
replay_app.command("resume", help="Resume a paused replay job.")(_action("resume"))
replay_app.command("cancel", help="Cancel a replay job; what it re-queued stays queued.")(_action("cancel"))


@replay_app.command("list")
def list_jobs(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 20,
    url: Url = DEFAULT_URL,
    token: Token = "",
    output: Output = "table",
) -> None:
    """List replay jobs, newest first."""
    _check_output(output)
    jobs = _call(url, token, lambda c: c.list_jobs(state or [], limit))
    if output == "json":
        _json(jobs)
        return
    Console().print(_job_table(jobs))
