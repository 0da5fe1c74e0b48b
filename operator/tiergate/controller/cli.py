"""``tiergate operator run``: the SenderTier operator process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import Annotated

import kopf
import typer

from tiergate.clients.kube import Kube, load_config
from tiergate.clients.lease import LeaderLease
from tiergate.clients.prometheus import Prometheus
from tiergate.clients.receivers import ReceiverClient
from tiergate.clients.replay import ReplayClient
from tiergate.controller import handlers as _handlers  # registers the handlers with Kopf
from tiergate.controller import metrics
from tiergate.controller.health import OperatorHealth, Role, health_app
from tiergate.controller.notifier import Notifier
from tiergate.controller.reconcile import Runtime
from tiergate.httpserver import HttpServer

app = typer.Typer(no_args_is_help=True)

API_THREADS = 32

assert _handlers


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if level.lower() != "debug":
        # Kopf reports every handler call at INFO; our own logs say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class OperatorOptions:
    """What ``tiergate operator run`` was told."""

    namespaces: list[str]
    prometheus_url: str | None
    leader_election: bool
    lease_namespace: str
    lease_name: str
    liveness: str | None
    replay_url: str | None
    replay_token: str | None
    http: tuple[str, int] | None
    notifications_secret: str | None = None


async def _run(options: OperatorOptions) -> None:
    # Every Kubernetes and Prometheus call runs in a worker thread; the default pool (CPUs + 4)
    # queued hundreds of tiers' calls behind each other.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="tiergate-api")
    )
    health = OperatorHealth()
    server = HttpServer(health_app(health), *options.http) if options.http else None
    if server is not None:
        await server.start()
    try:
        await _operate(options, health)
    finally:
        health.role = Role.STOPPED
        if server is not None:
            await server.stop()


async def _operate(options: OperatorOptions, health: OperatorHealth) -> None:
    api = load_config(os.environ.get("KUBECONFIG"))
    kube = Kube(api)
    runtime = Runtime(
        kube=kube,
        prometheus=Prometheus(options.prometheus_url) if options.prometheus_url else None,
        replay=ReplayClient(options.replay_url, options.replay_token or "") if options.replay_url else None,
        notifier=(
            Notifier(kube, ReceiverClient(), options.lease_namespace, options.notifications_secret)
            if options.notifications_secret
            else None
        ),
    )
    lease: LeaderLease | None = None
    if options.leader_election:
        identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        lease = LeaderLease(api, options.lease_namespace, options.lease_name, identity)
        metrics.LEADER.set(0)
        await lease.acquire()
    metrics.LEADER.set(1)
    # Only the leader gets here, so only the leader sends notifications.
    notifier = asyncio.create_task(runtime.notifier.run()) if runtime.notifier else None
    try:
        await _lead(options, health, runtime, lease)
    finally:
        if notifier is not None:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifier


async def _lead(
    options: OperatorOptions, health: OperatorHealth, runtime: Runtime, lease: LeaderLease | None
) -> None:
    operator = asyncio.create_task(
        kopf.operator(
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
            memo=kopf.Memo(runtime=runtime),
            liveness_endpoint=options.liveness,
            standalone=True,
        )
    )
    health.operator, health.role = operator, Role.LEADER
    if lease is None:
        await operator
        return
    keeper = asyncio.create_task(lease.keep())
    done, _ = await asyncio.wait({operator, keeper}, return_when=asyncio.FIRST_COMPLETED)
    if keeper in done:
        operator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await operator
        raise SystemExit(3)
    keeper.cancel()
    await operator


@app.command("run")
def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watch only these namespaces (default: all)."),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(envvar="TIERGATE_PROMETHEUS_URL", help="Prometheus the health checks query."),
    ] = None,
    metrics_port: Annotated[
        int,
        typer.Option(envvar="TIERGATE_METRICS_PORT", help="Port of /metrics, /healthz and /readyz; 0 = off."),
    ] = 8000,
    metrics_host: Annotated[
        str,
        typer.Option(envvar="TIERGATE_HTTP_HOST", help="Address /metrics, /healthz and /readyz listen on."),
    ] = "0.0.0.0",
    leader_election: Annotated[
        bool, typer.Option(help="Act only while holding a Lease, so replicas never both act.")
    ] = True,
    lease_namespace: Annotated[
        str, typer.Option(envvar="POD_NAMESPACE", help="Namespace of the leader Lease.")
    ] = "default",
    lease_name: Annotated[str, typer.Option(help="Name of the leader Lease.")] = "tiergate-operator",
    liveness: Annotated[
        str | None, typer.Option(help="Kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")
    ] = None,
    replay_url: Annotated[
        str | None,
        typer.Option(envvar="TIERGATE_REPLAY_URL", help="Replay service, for spec.replay.auto."),
    ] = None,
    replay_token: Annotated[
        str | None, typer.Option(envvar="TIERGATE_REPLAY_TOKEN", help="On-call token of the replay service.")
    ] = None,
    notifications_secret: Annotated[
        str | None,
        typer.Option(
            envvar="TIERGATE_NOTIFICATIONS_SECRET",
            help=(
                "Secret (in the lease namespace) whose receivers.yaml names where notifications go; "
                "unset = no notifications."
            ),
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(envvar="TIERGATE_LOG_LEVEL")] = "info",
) -> None:
    """Run the SenderTier operator until interrupted."""
    _logging(log_level)
    options = OperatorOptions(
        namespaces=namespace or [],
        prometheus_url=prometheus_url,
        leader_election=leader_election,
        lease_namespace=lease_namespace,
        lease_name=lease_name,
        liveness=liveness,
        replay_url=replay_url,
        replay_token=replay_token,
        http=(metrics_host, metrics_port) if metrics_port else None,
        notifications_secret=notifications_secret,
    )
    asyncio.run(_run(options))
