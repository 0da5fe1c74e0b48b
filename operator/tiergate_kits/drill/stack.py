"""The drill's stack as child processes of one drill: control plane, SMSC, Prometheus, sender, replay.

Shared by every run: the local control plane (`tiergate_kits.devcluster`), the smpp34-backed test
SMSC, the pod discovery and Prometheus scraping the worker pods. Per run, so each starts from
an empty store: the sender API, the replay service and (for tiergate runs) the operator, which
runs as its own least-privilege service account. Everything is started here and stopped here.
"""

from __future__ import annotations

import base64
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tiergate.monitoring.prometheus_config import scrape_config
from tiergate_kits.devcluster import build
from tiergate_kits.devcluster.cluster import LocalCluster
from tiergate_kits.helpers import crd_established, free_port, poll

log = logging.getLogger("tiergate_kits.drill.stack")

ROOT = Path(__file__).resolve().parents[3]
TIERGATE = str(Path(sys.executable).parent / "tiergate")
OPERATOR_NS = "tiergate-system"
OPERATOR_SA = "tiergate-operator"
CLASSES = ("bulk", "standard", "priority")
ONCALL_TOKEN = "drill-oncall"
PR_SET_PDEATHSIG = 1


class StackError(Exception):
    """A part of the drill's stack did not come up."""


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    """Poll ``check`` until it returns something truthy; raise `StackError` after ``timeout``."""
    done, last = poll(check, timeout, interval, (httpx.HTTPError, ApiException, OSError))
    if not done:
        raise StackError(f"Timed out waiting for {what} after {timeout:g}s: last={last!r}")
    return last


def _die_with_parent() -> None:
    # Children of a drill that is killed must not outlive it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def answers(url: str) -> bool:
    """Whether ``url`` answers 2xx."""
    return httpx.get(url, timeout=2).is_success


@dataclass
class Processes:
    """Child processes with their logs; stopped in reverse start order."""

    logs: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with its output in ``logs/name.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                argv,
                env={**base, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self.procs.append((name, proc))
        log.info("Started process name=%s pid=%d", name, proc.pid)
        return proc

    def stop(self, name: str | None = None) -> None:
        """Stop one process by name, or all of them."""
        keep = []
        for pname, proc in reversed(self.procs):
            if name is not None and pname != name:
                keep.append((pname, proc))
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs = list(reversed(keep))


def kubectl_binary() -> str:
    """kubectl from the control plane's cache, else from PATH."""
    cached = build.bin_dir() / "kubectl"
    if cached.exists():
        return str(cached)
    found = shutil.which("kubectl")
    if not found:
        raise StackError("kubectl is not available: run `tiergate dev build`")
    return found


def prometheus_binary() -> str:
    """Debian's prometheus."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if not found:
        raise StackError("prometheus is not installed (apt-get install prometheus)")
    return found


@dataclass
class SharedStack:
    """The parts every run of a drill shares."""

    workdir: Path
    nodes: int = 3
    argo_rollouts: bool = False
    cluster: LocalCluster | None = None
    procs: Processes | None = None
    api: client.ApiClient | None = None
    smsc_port: int = 0
    smsc_stats_port: int = 0
    prometheus_port: int = 0
    operator_kubeconfig: Path | None = None

    @property
    def prometheus_url(self) -> str:
        """Base URL of Prometheus."""
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def smsc_url(self) -> str:
        """The upstream URL workers use."""
        return f"smpp://127.0.0.1:{self.smsc_port}"

    def kubectl(self, *args: str) -> str:
        """Run kubectl as the cluster admin; return its output."""
        assert self.cluster is not None
        done = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise StackError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        """Start the control plane, install the CRD and RBAC, start SMSC, pod discovery, Prometheus."""
        if build.missing_binaries():
            log.info("Building control plane binaries dir=%s", build.bin_dir())
            build.build()
        if self.argo_rollouts and build.missing_binaries(group="argo"):
            raise StackError(
                "the Argo Rollouts controller is not built: run `tiergate dev build --group argo`"
            )
        self.procs = Processes(self.workdir / "logs")
        self.cluster = LocalCluster(
            self.workdir / "cluster", nodes=self.nodes, argo_rollouts=self.argo_rollouts
        )
        seconds = self.cluster.start()
        log.info("Local control plane ready seconds=%s", seconds)
        self.api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        self.smsc_port, self.smsc_stats_port = free_port(), free_port()
        self.procs.start(
            "smsc",
            [
                TIERGATE, "smsc", "--host", "127.0.0.1", "--port", str(self.smsc_port),
                "--stats-port", str(self.smsc_stats_port), "--receipts",
            ],
        )  # fmt: skip
        sd_port = free_port()
        self.procs.start(
            "pod-sd",
            [TIERGATE, "monitoring", "pod-sd", "--host", "127.0.0.1", "--port", str(sd_port)],
            env={"KUBECONFIG": str(self.cluster.kubeconfig)},
        )
        prom_dir = self.workdir / "prometheus"
        prom_dir.mkdir(parents=True, exist_ok=True)
        (prom_dir / "prometheus.yml").write_text(
            yaml.safe_dump(scrape_config(f"http://127.0.0.1:{sd_port}/targets"))
        )
        self.prometheus_port = free_port()
        self.procs.start(
            "prometheus",
            [
                prometheus_binary(),
                f"--config.file={prom_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--storage.tsdb.retention.time=2h",
            ],
        )
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds" / "sendertier.yaml")
        )
        api = self.api
        assert api is not None
        wait_until(
            lambda: crd_established(api, "sendertiers.tiergate.io"), 60, "the SenderTier CRD Established"
        )
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(ROOT / "deploy" / "operator" / "rbac.yaml"),
        )
        self.operator_kubeconfig = self._operator_kubeconfig()
        wait_until(lambda: answers(f"http://127.0.0.1:{self.smsc_stats_port}/stats"), 30, "test SMSC")
        wait_until(lambda: answers(f"{self.prometheus_url}/-/ready"), 60, "Prometheus")

    def _operator_kubeconfig(self) -> Path:
        assert self.api is not None
        assert self.cluster is not None
        core = client.CoreV1Api(self.api)
        wait_until(
            lambda: core.read_namespaced_service_account(OPERATOR_SA, OPERATOR_NS), 30, "operator account"
        )
        token = core.create_namespaced_service_account_token(
            OPERATOR_SA, OPERATOR_NS, {"spec": {"expirationSeconds": 7200}}
        ).status.token
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        entry = dict(admin["clusters"][0]["cluster"])
        if "certificate-authority" in entry:
            ca = Path(entry.pop("certificate-authority"))
            entry["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "drill", "cluster": entry}],
            "users": [{"name": OPERATOR_SA, "user": {"token": token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "drill", "user": OPERATOR_SA}}],
            "current-context": "operator",
        }
        path = self.workdir / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    def smsc_stats(self) -> dict[str, Any]:
        """The SMSC's counters."""
        data: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.smsc_stats_port}/stats", timeout=5).json()
        return data

    def stop(self) -> None:
        """Stop everything this stack started."""
        if self.procs is not None:
            self.procs.stop()
        if self.api is not None:
            self.api.close()
        if self.cluster is not None:
            self.cluster.stop()


@dataclass
class RunStack:
    """The per-run parts: an empty store, the sender API, the replay service, maybe the operator."""

    shared: SharedStack
    workdir: Path
    tokens: Mapping[str, str]
    max_queue_depth: int | None
    procs: Processes | None = None
    api_port: int = 0
    replay_port: int = 0

    @property
    def store_url(self) -> str:
        """The run's SQLite store."""
        return f"sqlite://{self.workdir / 'tiergate.db'}"

    @property
    def api_url(self) -> str:
        """The sender API."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def replay_url(self) -> str:
        """The replay service."""
        return f"http://127.0.0.1:{self.replay_port}"

    def start(self) -> None:
        """Start the sender API and the replay service on a fresh store."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs = Processes(self.workdir / "logs")
        tokens = self.workdir / "api-tokens"
        tokens.write_text("".join(f"{t}={c}\n" for t, c in self.tokens.items()))
        tokens.chmod(0o600)
        replay_tokens = self.workdir / "replay-tokens"
        replay_tokens.write_text(f"{ONCALL_TOKEN}=drill\n")
        replay_tokens.chmod(0o600)
        self.api_port, self.replay_port = free_port(), free_port()
        api_argv = [
            TIERGATE, "sender", "api", "--store", self.store_url, "--host", "127.0.0.1",
            "--port", str(self.api_port), "--tokens-file", str(tokens),
        ]  # fmt: skip
        if self.max_queue_depth:
            api_argv += ["--max-queue-depth", str(self.max_queue_depth)]
        self.procs.start("api", api_argv, env={"TIERGATE_TRAFFIC_CLASSES": ",".join(CLASSES)})
        wait_until(lambda: answers(f"{self.api_url}/healthz"), 60, "sender API")
        self.procs.start(
            "replay",
            [
                TIERGATE, "replay", "serve", "--store", self.store_url, "--host", "127.0.0.1",
                "--port", str(self.replay_port), "--tokens-file", str(replay_tokens),
                "--metrics-interval", "2",
            ],
        )  # fmt: skip
        wait_until(lambda: answers(f"{self.replay_url}/healthz"), 60, "replay service")

    def start_operator(self, namespace: str) -> None:
        """Start the operator for ``namespace`` as its service account, with replay hand-off."""
        assert self.procs is not None
        assert self.shared.operator_kubeconfig is not None
        self.procs.start(
            "operator",
            [
                TIERGATE, "operator", "run", "--namespace", namespace, "--metrics-port", str(free_port()),
                "--metrics-host", "127.0.0.1", "--lease-name", f"tiergate-{namespace}",
                "--prometheus-url", self.shared.prometheus_url,
                "--replay-url", self.replay_url, "--replay-token", ONCALL_TOKEN,
            ],
            env={
                "KUBECONFIG": str(self.shared.operator_kubeconfig),
                "POD_NAMESPACE": OPERATOR_NS,
                "POD_NAME": f"drill-operator-{namespace}",
            },
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the run's processes."""
        if self.procs is not None:
            self.procs.stop()
