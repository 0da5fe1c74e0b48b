"""A real Prometheus (Debian's package) for the tests, discovering worker pods through the API server.

``tiergate monitoring pod-sd`` lists the sender-worker pods and serves them as http_sd targets
(Debian's build has no Kubernetes discovery); Prometheus scrapes each at the pod's IP (loopback
addresses on the local control plane) every second. Tests may stop and start it to play an outage.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.plugins.tools import SETUP, missing_tool, require_tool
from tiergate.monitoring.prometheus_config import scrape_config
from tiergate_kits.drill import stack
from tiergate_kits.helpers import free_port


@dataclass
class PrometheusServer:
    """A Prometheus process on a loopback port."""

    binary: str
    workdir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) the server and wait until it is ready."""
        log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=2h",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready in 60 s")

    def stop(self) -> None:
        """Stop the server (an outage, or teardown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        result: list[dict[str, Any]] = data["data"]["result"]
        return result


PROMETHEUS_FROM = f"{SETUP} (Debian's prometheus package)"


def prometheus_binary() -> str:
    """Debian's prometheus (or the missing-tool rule)."""
    try:
        return stack.prometheus_binary()
    except stack.StackError:
        missing_tool("prometheus", PROMETHEUS_FROM)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Prometheus's promtool on the arguments (or the missing-tool rule)."""
    tool = require_tool("promtool", PROMETHEUS_FROM)
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def prometheus(kubeconfig_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A Prometheus scraping the test cluster's sender-worker pods."""
    import os
    import sys

    workdir = tmp_path_factory.mktemp("prometheus")
    sd_port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path)}
    sd_log = (workdir / "pod-sd.log").open("wb")
    sd = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tiergate"),
            "monitoring",
            "pod-sd",
            "--host",
            "127.0.0.1",
            "--port",
            str(sd_port),
        ],
        env=env,
        stdout=sd_log,
        stderr=subprocess.STDOUT,
    )
    sd_url = f"http://127.0.0.1:{sd_port}/targets"
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(sd_url)))
    server = PrometheusServer(prometheus_binary(), workdir, free_port())
    server.start()
    yield server
    server.stop()
    sd.terminate()
    sd.wait(10)
    sd_log.close()
