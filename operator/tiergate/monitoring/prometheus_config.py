"""Prometheus configuration for a cluster's sender workers, found through tiergate's pod discovery.

The local demo, the tests and the chart's in-cluster Prometheus all use this one configuration,
so what the gates query is scraped the same way everywhere.
"""

from __future__ import annotations

from typing import Any


def scrape_config(sd_url: str, interval: str = "1s") -> dict[str, Any]:
    """Scrape every sender-worker pod that the pod-discovery server at ``sd_url`` lists."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "tiergate-workers",
                "scrape_timeout": "900ms" if interval == "1s" else "10s",
                "http_sd_configs": [{"url": sd_url, "refresh_interval": interval}],
            }
        ],
    }
