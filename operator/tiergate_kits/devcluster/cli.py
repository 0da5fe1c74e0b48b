"""Command-line verbs of `tiergate_kits.devcluster`: build, up, down, env and the pod runner."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from tiergate_kits.devcluster import build as builder
from tiergate_kits.devcluster.argo import ArgoError
from tiergate_kits.devcluster.cluster import ClusterError, LocalCluster
from tiergate_kits.devcluster.runner import DEFAULT_POD_CIDR
from tiergate_kits.devcluster.runner import run as run_pod_runner

app = typer.Typer(no_args_is_help=True)

DEFAULT_WORKDIR = Path(".run/cluster")
Workdir = Annotated[Path, typer.Option(help="Directory holding the cluster's state, certs and logs.")]


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command("build")
def build_cmd(
    force: Annotated[bool, typer.Option(help="Rebuild binaries already built.")] = False,
    group: Annotated[
        str,
        typer.Option(
            help="core: the control plane; test: helm too for the tests; kind: the kind tools; "
            "argo: the Argo Rollouts controller (the drill's peer)."
        ),
    ] = "core",
) -> None:
    """Build the control plane (etcd, API server, controllers, scheduler, kubectl, kwok) or another group."""
    _logging()
    if group not in builder.GROUPS:
        typer.echo(f"--group must be one of {', '.join(sorted(builder.GROUPS))}, not {group!r}", err=True)
        raise typer.Exit(2)
    try:
        out = builder.build(force=force, group=group)
    except RuntimeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(str(out))


@app.command("up")
def up(
    workdir: Workdir = DEFAULT_WORKDIR,
    nodes: Annotated[int, typer.Option(help="Number of kwok nodes.")] = 3,
    build: Annotated[bool, typer.Option(help="Build missing binaries first.")] = True,
    argo_rollouts: Annotated[
        bool,
        typer.Option(
            envvar="TIERGATE_ARGO_ROLLOUTS",
            help="Also install the Argo Rollouts CRDs and run its controller (build: --group argo).",
        ),
    ] = False,
) -> None:
    """Start the local control plane detached and print how to use it."""
    _logging()
    if build and builder.missing_binaries():
        typer.echo("Building the control plane binaries (first time only, slow)...", err=True)
        builder.build()
    if build and argo_rollouts and builder.missing_binaries(group="argo"):
        typer.echo("Building the Argo Rollouts controller (first time only, about 5 minutes)...", err=True)
        builder.build(group="argo")
    cluster = LocalCluster(workdir, nodes=nodes, detach=True, argo_rollouts=argo_rollouts)
    try:
        seconds = cluster.start()
    except (ClusterError, ArgoError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"# cluster ready in {seconds}s; logs in {cluster.logs}", err=True)
    typer.echo(f"export KUBECONFIG={cluster.kubeconfig}")


@app.command("down")
def down(workdir: Workdir = DEFAULT_WORKDIR) -> None:
    """Stop a cluster started with `tiergate dev up`."""
    _logging()
    LocalCluster(workdir).stop()


@app.command("env")
def env(workdir: Workdir = DEFAULT_WORKDIR) -> None:
    """Print shell exports for the cluster and the binaries."""
    cluster = LocalCluster(workdir)
    typer.echo(f"export KUBECONFIG={cluster.kubeconfig}")
    typer.echo(f'export PATH="{builder.bin_dir()}:$PATH"')
    for name, pid, alive in cluster.processes():
        typer.echo(f"# {name} pid={pid} {'running' if alive else 'stopped'}")


@app.command("pod-runner")
def pod_runner(
    kubeconfig: Annotated[str, typer.Option(help="Kubeconfig of the cluster.")],
    workdir: Workdir = DEFAULT_WORKDIR,
    node_selector: Annotated[str, typer.Option(help="Label selector of the nodes to serve.")] = ("type=kwok"),
    pod_cidr: Annotated[str, typer.Option(help="Loopback range for pod IPs.")] = DEFAULT_POD_CIDR,
) -> None:
    """Back every pod on the selected kwok nodes with a real local process."""
    _logging()
    asyncio.run(run_pod_runner(kubeconfig, workdir.resolve(), node_selector=node_selector, pod_cidr=pod_cidr))


@app.command("load")
def load(
    url: str = typer.Option("http://127.0.0.1:8081", help="Base URL of the sender ingest API."),
    token: str = typer.Option(..., envvar="TIERGATE_LOAD_TOKEN", help="A customer's bearer token."),
    rate: float = typer.Option(60.0, help="Messages per second, spread over the classes."),
    classes: str = typer.Option("bulk,standard,priority", help="Comma-separated traffic classes."),
    duration: float = typer.Option(0.0, help="Seconds to run; 0 runs until interrupted."),
) -> None:
    """Send steady, mixed SMS traffic to the sender API (for demos and drills)."""
    import json as _json

    from tiergate_kits.devcluster.load import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stats = asyncio.run(
        run(url, token, rate, [c.strip() for c in classes.split(",") if c.strip()], duration or None)
    )
    typer.echo(
        _json.dumps(
            {
                "accepted": stats.accepted,
                "refused": stats.refused,
                "errors": stats.errors,
                "by_status": stats.by_status,
            }
        )
    )
