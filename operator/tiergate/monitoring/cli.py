"""``tiergate monitoring``: pod discovery and Prometheus configuration for tiergate's Prometheus."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import yaml

from tiergate.monitoring.podsd import DEFAULT_SELECTOR, PodDiscovery
from tiergate.monitoring.prometheus_config import scrape_config

app = typer.Typer(no_args_is_help=True)


@app.command("pod-sd")
def pod_sd(
    kubeconfig: Annotated[
        str | None, typer.Option(envvar="KUBECONFIG", help="Kubeconfig; in-cluster if unset.")
    ] = None,
    host: Annotated[str, typer.Option(envvar="TIERGATE_HTTP_HOST")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port of /targets.")] = 9091,
    selector: Annotated[str, typer.Option(help="Label selector of the pods to scrape.")] = DEFAULT_SELECTOR,
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Only these namespaces (default: all; needs a ClusterRole)."),
    ] = None,
) -> None:
    """Serve the sender-worker pods as Prometheus http_sd targets."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    kube = kubeconfig.split(":")[0] if kubeconfig else None
    PodDiscovery(kube, selector, namespaces=namespace or ()).serve(host, port)


@app.command("prometheus-config")
def prometheus_config(
    sd_url: Annotated[
        str, typer.Option(help="URL of the pod discovery's /targets.")
    ] = "http://127.0.0.1:9091/targets",
    interval: Annotated[str, typer.Option(help="Scrape interval.")] = "1s",
) -> None:
    """Print a Prometheus configuration that scrapes every sender-worker pod."""
    typer.echo(yaml.safe_dump(scrape_config(sd_url, interval), sort_keys=False), nl=False)
