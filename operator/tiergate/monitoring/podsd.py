"""Pod discovery for Prometheus over HTTP service discovery (``http_sd_configs``).

Debian's Prometheus is built without Kubernetes service discovery, and tiergate ships that build in
its images; this small server lists the sender-worker pods through the API server and serves them
in the http_sd format, so Prometheus finds every worker pod as Kubernetes SD would.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tiergate.clients.kube import PodTarget, list_pod_targets, load_config

log = logging.getLogger("tiergate.podsd")

DEFAULT_SELECTOR = "app.kubernetes.io/component=sender-worker"


def http_sd_groups(targets: list[PodTarget]) -> list[dict[str, Any]]:
    """Targets in Prometheus's http_sd JSON shape, one group per pod."""
    return [
        {
            "targets": [f"{t.ip}:{t.port}"],
            "labels": {
                "namespace": t.namespace,
                "pod": t.name,
                "fleet": t.labels.get("tiergate.io/fleet", ""),
            },
        }
        for t in sorted(targets, key=lambda t: (t.namespace, t.name))
    ]


class PodDiscovery:
    """Polls the API server and serves the latest targets."""

    def __init__(
        self, kubeconfig: str | None, selector: str, interval: float = 1.0, namespaces: Sequence[str] = ()
    ) -> None:
        self._api = load_config(kubeconfig)
        self.selector = selector
        self.namespaces = tuple(namespaces)
        self.interval = interval
        self._body = b"[]"
        self._stop = threading.Event()

    def refresh(self) -> None:
        """List the pods once and replace the served targets."""
        groups = http_sd_groups(list_pod_targets(self._api, self.selector, namespaces=self.namespaces))
        self._body = json.dumps(groups).encode()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # keep serving the last good list while the API is away
                log.warning("Pod discovery failed selector=%s error=%s", self.selector, exc)
            self._stop.wait(self.interval)

    def serve(self, host: str, port: int) -> None:
        """Serve ``/targets`` (and ``/healthz``) until interrupted."""
        discovery = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/targets":
                    body, kind = discovery._body, "application/json"
                elif self.path == "/healthz":
                    body, kind = b"ok", "text/plain"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        poller = threading.Thread(target=self._poll, name="pod-sd", daemon=True)
        poller.start()
        server = ThreadingHTTPServer((host, port), Handler)
        log.info("Serving pod discovery address=%s:%d selector=%s", host, port, self.selector)
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            self._stop.set()
            server.server_close()
            time.sleep(0)
