"""Command-line verbs of `tiergate.sender`: the worker and the ingest API (the test SMSC is a kit:
`tiergate smsc`, from `tiergate_kits.smsc_cli`)."""

from __future__ import annotations

import logging
import os
import sys

import typer

from tiergate.sender import eventloop
from tiergate.sender.errors import ConfigError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)


def start_logging() -> None:
    """Log to stderr at ``TIERGATE_LOG_LEVEL``, one line per record."""
    logging.basicConfig(
        level=os.environ.get("TIERGATE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _refuse(exc: ConfigError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def check_loop() -> None:
    """Refuse to start (exit 2) when the configured event loop cannot be made."""
    try:
        eventloop.loop_factory()
    except ConfigError as exc:
        _refuse(exc)


def _tune_gc() -> None:
    try:
        eventloop.tune_gc()
    except ConfigError as exc:
        _refuse(exc)


@app.command()
def worker(
    tier: str = typer.Option(None, help="Tier name (env TIERGATE_TIER)"),
    traffic_class: str = typer.Option(
        None, help="Queue partition (env TIERGATE_TRAFFIC_CLASS, default the tier)"
    ),
    revision: str = typer.Option(None, help="Template revision (env TIERGATE_REVISION)"),
    store: str = typer.Option(None, help="Store URL (env TIERGATE_STORE_URL)"),
    upstream: str = typer.Option(None, help="smpp://host:port or http(s)://... (env TIERGATE_UPSTREAM_URL)"),
    connectors: str = typer.Option(
        None, help="YAML file of upstream connectors (env TIERGATE_CONNECTORS_FILE); wins over --upstream"
    ),
    host: str = typer.Option(None, help="HTTP host (env TIERGATE_HTTP_HOST, default 0.0.0.0)"),
    port: int = typer.Option(None, help="HTTP port (env TIERGATE_HTTP_PORT, default 8080)"),
    window: int = typer.Option(None, help="Submits in flight (env TIERGATE_WINDOW, default 256)"),
    rate: float = typer.Option(None, help="Max submits/s (env TIERGATE_UPSTREAM_RATE)"),
    max_attempts: int = typer.Option(None, help="(env TIERGATE_MAX_ATTEMPTS, default 8)"),
    max_age: float = typer.Option(None, help="Seconds (env TIERGATE_MAX_AGE, default 21600)"),
) -> None:
    """Run a tier's sender worker: lease, submit upstream, serve /healthz /readyz /metrics."""
    from tiergate.sender.service import run_worker
    from tiergate.sender.settings import worker_settings

    try:
        settings = worker_settings(
            tier=tier,
            traffic_class=traffic_class,
            revision=revision,
            store_url=store,
            upstream_url=upstream,
            connectors_file=connectors,
            host=host,
            port=port,
            window=window,
            rate=rate,
            max_attempts=max_attempts,
            max_age=max_age,
        )
    except ConfigError as exc:
        _refuse(exc)
        return
    check_loop()
    _tune_gc()
    start_logging()
    eventloop.run(run_worker(settings))


@app.command()
def api(
    store: str = typer.Option(None, help="Store URL (env TIERGATE_STORE_URL)"),
    host: str = typer.Option(None, help="HTTP host (env TIERGATE_HTTP_HOST, default 0.0.0.0)"),
    port: int = typer.Option(None, help="HTTP port (env TIERGATE_HTTP_PORT, default 8080)"),
    tokens_file: str = typer.Option(None, help="File of token=customer lines (env TIERGATE_API_TOKENS_FILE)"),
    max_queue_depth: int = typer.Option(
        None,
        help="429 above this depth per traffic class (env TIERGATE_MAX_QUEUE_DEPTH, default 100000, 0: off)",
    ),
    customer_rate: float = typer.Option(
        None, help="Messages/s per customer (env TIERGATE_CUSTOMER_RATE, default 1000, 0: off)"
    ),
    processes: int = typer.Option(
        None, help="Serving processes sharing the port, one per core (env TIERGATE_API_PROCESSES, default 1)"
    ),
) -> None:
    """Run the ingest API: POST /v1/messages, POST /v1/messages:batch, GET /v1/messages/{id}.

    Tokens also come from TIERGATE_API_TOKENS (token=customer,...); traffic classes from
    TIERGATE_TRAFFIC_CLASSES; limits from TIERGATE_MAX_SEGMENTS and TIERGATE_MAX_BATCH.
    """
    # prometheus_client opens its files for unlabelled metrics at import: a shared metrics
    # directory must exist before tiergate.sender.api (and so its metrics) is imported.
    if metrics_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.makedirs(metrics_dir, exist_ok=True)
    from tiergate.sender.api import run_api
    from tiergate.sender.processes import run_api_processes
    from tiergate.sender.settings import api_settings

    try:
        settings = api_settings(
            store_url=store,
            host=host,
            port=port,
            tokens_file=tokens_file,
            max_queue_depth=max_queue_depth,
            customer_rate=customer_rate,
            processes=processes,
        )
    except ConfigError as exc:
        _refuse(exc)
        return
    check_loop()
    _tune_gc()
    start_logging()
    if settings.processes > 1:
        raise typer.Exit(code=run_api_processes(settings))
    eventloop.run(run_api(settings))
