"""Prometheus configuration for a cluster's sender workers, found by Kubernetes service discovery.

The local demo and the tests run Debian's Prometheus with this configuration against the local
API server; the chart's in-cluster Prometheus uses the same relabelling, so what the gates query
is the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def scrape_config(kubeconfig: Path | None = None, interval: str = "1s") -> dict[str, Any]:
    """Scrape every sender-worker pod on its ``http`` port, with namespace, pod and fleet labels."""
    sd: dict[str, Any] = {"role": "pod"}
    if kubeconfig is not None:
        sd["kubeconfig_file"] = str(kubeconfig)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "tiergate-workers",
                "scrape_timeout": "900ms" if interval == "1s" else "10s",
                "kubernetes_sd_configs": [sd],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
                        "regex": "sender-worker",
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": "http",
                        "action": "keep",
                    },
                    {
                        "source_labels": [
                            "__meta_kubernetes_pod_ip",
                            "__meta_kubernetes_pod_container_port_number",
                        ],
                        "separator": ":",
                        "target_label": "__address__",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_tiergate_io_fleet"],
                        "target_label": "fleet",
                    },
                ],
            }
        ],
    }
