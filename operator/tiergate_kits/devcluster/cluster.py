"""A real Kubernetes control plane on loopback, started in seconds from cached binaries.

``LocalCluster`` runs etcd, kube-apiserver (TLS, client certificates,
Node+RBAC authorization, service accounts), kube-controller-manager (all
default controllers, so garbage collection and Deployments work),
kube-scheduler, kwok (fake Nodes only: heartbeats, leases, conditions; it is
given node Stages and no pod Stages, so it never touches pods) and the pod
runner, which backs every pod bound to a kwok node with a real local process.
Each component is its own process group with its log under ``logs/``; the
process ids and ports are kept in ``cluster.json`` so a detached cluster can
be stopped later by another process.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import logging
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tiergate_kits.devcluster import argo, build
from tiergate_kits.devcluster.pki import CertificateAuthority, CertPair, service_account_keys
from tiergate_kits.helpers import free_port

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
NODE_LABEL = "type=kwok"
STATE_FILE = "cluster.json"
_PR_SET_PDEATHSIG = 1

# Node stages only: with no pod Stage kwok starts no pod controller at all.
KWOK_STAGES = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: tiergate-node-ready
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - type: {{ .type | Quote }}
        status: {{ .status | Quote }}
        reason: {{ .reason | Quote }}
        message: {{ .message | Quote }}
        lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
      {{ end }}
      addresses:
      - {type: InternalIP, address: {{ NodeIP | Quote }}}
      - {type: Hostname, address: {{ .metadata.name | Quote }}}
      allocatable: {cpu: "32", memory: 256Gi, pods: "250"}
      capacity: {cpu: "32", memory: 256Gi, pods: "250"}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: tiergate-pod-runner
        containerRuntimeVersion: process://tiergate
        kernelVersion: local
        osImage: local
        machineID: ""
        systemUUID: ""
        bootID: ""
        kubeProxyVersion: ""
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: tiergate-node-heartbeat
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: In
      values: ['True']
  delay:
    durationMilliseconds: 20000
    jitterDurationMilliseconds: 25000
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range .status.conditions }}
      - type: {{ .type | Quote }}
        status: {{ .status | Quote }}
        reason: {{ .reason | Quote }}
        message: {{ .message | Quote }}
        lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ .lastTransitionTime | Quote }}
      {{ end }}
"""


class ClusterError(Exception):
    """The local control plane could not be started."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _alive(pid: int, name: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return name.encode() in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kubeconfig(server: str, ca: Path, user: CertPair, name: str) -> dict[str, Any]:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "tiergate-dev",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": b64(user.cert),
                    "client-key-data": b64(user.key),
                },
            }
        ],
        "contexts": [{"name": "tiergate-dev", "context": {"cluster": "tiergate-dev", "user": name}}],
        "current-context": "tiergate-dev",
    }


@dataclass
class ClusterState:
    """What ``cluster.json`` records: ports, pod IP range and component pids."""

    ports: dict[str, int] = field(default_factory=dict)
    pod_cidr: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    nodes: int = 0


class LocalCluster:
    """A local control plane in a work directory; ``start()``, then ``stop()``."""

    COMPONENTS = (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "pod-runner",
        "argo-rollouts",
    )

    def __init__(
        self,
        workdir: Path,
        *,
        nodes: int = 3,
        bin_dir: Path | None = None,
        detach: bool = False,
        argo_rollouts: bool = False,
    ) -> None:
        self.workdir = workdir.resolve()
        self.argo_rollouts = argo_rollouts
        self.nodes = nodes
        self.bin_dir = bin_dir or build.bin_dir()
        self.detach = detach
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state = self._load_state()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def _load_state(self) -> ClusterState:
        path = self.workdir / STATE_FILE
        if path.is_file():
            return ClusterState(**json.loads(path.read_text()))
        return ClusterState()

    def _save_state(self) -> None:
        (self.workdir / STATE_FILE).write_text(json.dumps(self.state.__dict__, indent=2) + "\n")

    @property
    def server(self) -> str:
        """The API server URL."""
        return f"https://127.0.0.1:{self.state.ports['apiserver']}"

    def running(self) -> bool:
        """Whether the recorded API server process is alive."""
        pid = self.state.pids.get("kube-apiserver")
        return bool(pid) and _alive(pid, "kube-apiserver")  # type: ignore[arg-type]

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> float:
        """Start every component, wait until nodes are Ready; return the seconds taken."""
        started = time.monotonic()
        missing = build.missing_binaries()
        if missing and self.bin_dir == build.bin_dir():
            raise ClusterError(
                f"control plane binaries missing ({', '.join(missing)}); run `tiergate dev build`"
            )
        if self.running():
            raise ClusterError(f"a cluster is already running in {self.workdir}")
        for d in (self.workdir, self.pki, self.logs, self.workdir / "pods"):
            d.mkdir(parents=True, exist_ok=True)
        self._ensure_pki()
        self._ensure_ports()
        self._save_state()
        deadline = started + timeout
        try:
            self._start_etcd(deadline)
            self._start_apiserver(deadline)
            self._start_controllers()
            self._create_nodes()
            self._wait_nodes_ready(deadline)
            if self.argo_rollouts:
                self._start_argo_rollouts()
        except BaseException:
            self.stop()
            raise
        seconds = round(time.monotonic() - started, 2)
        log.info("Local cluster ready workdir=%s seconds=%s", self.workdir, seconds)
        return seconds

    def _ensure_pki(self) -> None:
        if (self.pki / "admin.crt").is_file():
            return
        ca = CertificateAuthority.create(self.pki)
        ca.issue(
            self.pki,
            "apiserver",
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", SERVICE_IP),
            server=True,
            client=False,
        )
        ca.issue(self.pki, "admin", "tiergate-admin", organizations=("system:masters",))
        ca.issue(self.pki, "controller-manager", "system:kube-controller-manager")
        ca.issue(self.pki, "scheduler", "system:kube-scheduler")
        service_account_keys(self.pki)

    def _ensure_ports(self) -> None:
        for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"):
            port = self.state.ports.get(name)
            if port is None or not self._port_free(port):
                self.state.ports[name] = free_port()
        if not self.state.pod_cidr:
            self.state.pod_cidr = f"127.{random.randint(10, 250)}.0.0/16"
        self.state.nodes = self.nodes

    @staticmethod
    def _port_free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = (self.logs / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=None if self.detach else _die_with_parent,
            )
        finally:
            out.close()
        self._procs[name] = proc
        self.state.pids[name] = proc.pid
        self._save_state()

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _wait(self, what: str, check: Callable[[], bool], deadline: float, proc: str) -> None:
        while time.monotonic() < deadline:
            p = self._procs.get(proc)
            if p is not None and p.poll() is not None:
                raise ClusterError(f"{proc} exited with {p.returncode}; see {self.logs}/{proc}.log")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.1)
        raise ClusterError(f"timed out waiting for {what}; see {self.logs}")

    def _start_etcd(self, deadline: float) -> None:
        port, peer = self.state.ports["etcd"], self.state.ports["etcd-peer"]
        self._spawn(
            "etcd",
            [
                self._bin("etcd"),
                "--name=tiergate",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{port}",
                f"--advertise-client-urls=http://127.0.0.1:{port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=tiergate=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False)
            return r.status_code == 200 and r.json().get("health") == "true"

        self._wait("etcd /health", healthy, deadline, "etcd")

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _start_apiserver(self, deadline: float) -> None:
        p = self.pki
        self._spawn(
            "kube-apiserver",
            [
                self._bin("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.state.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.state.ports['apiserver']}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={p / 'apiserver-generated'}",
                "--v=1",
            ],
        )
        for name, stem in (
            ("kubeconfig", "admin"),
            ("controller-manager.kubeconfig", "controller-manager"),
            ("scheduler.kubeconfig", "scheduler"),
        ):
            pair = CertPair(p / f"{stem}.crt", p / f"{stem}.key")
            path = self.workdir / name
            path.write_text(yaml.safe_dump(_kubeconfig(self.server, p / "ca.crt", pair, stem)))
            path.chmod(0o600)
        ctx = self._tls()

        def ready() -> bool:
            r = httpx.get(f"{self.server}/readyz", verify=ctx, timeout=2, trust_env=False)
            return r.status_code == 200

        self._wait("kube-apiserver /readyz", ready, deadline, "kube-apiserver")

    def _start_controllers(self) -> None:
        p = self.pki
        kcm = self.workdir / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                self._bin("kube-controller-manager"),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.state.ports['controller-manager']}",
                f"--cert-dir={p / 'controller-manager-generated'}",
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                f"--cluster-signing-cert-file={p / 'ca.crt'}",
                f"--cluster-signing-key-file={p / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--cluster-name=tiergate-dev",
                "--node-monitor-period=1s",
                "--v=1",
            ],
        )
        sched = self.workdir / "scheduler.kubeconfig"
        self._spawn(
            "kube-scheduler",
            [
                self._bin("kube-scheduler"),
                f"--kubeconfig={sched}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.state.ports['scheduler']}",
                f"--cert-dir={p / 'scheduler-generated'}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text(KWOK_STAGES)
        self._spawn(
            "kwok",
            [
                self._bin("kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={stages}",
                f"--manage-nodes-with-label-selector={NODE_LABEL}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{self.state.ports['kwok']}",
                "--node-lease-duration-seconds=40",
            ],
        )
        self._spawn(
            "pod-runner",
            [
                sys.executable,
                "-m",
                "tiergate_kits.devcluster",
                "pod-runner",
                f"--kubeconfig={self.kubeconfig}",
                f"--workdir={self.workdir}",
                f"--node-selector={NODE_LABEL}",
                f"--pod-cidr={self.state.pod_cidr}",
            ],
        )

    def _start_argo_rollouts(self) -> None:
        """Install the Argo Rollouts CRDs and start its controller (`tiergate_kits.devcluster.argo`)."""
        argo.install_crds(self._bin("kubectl"), self.kubeconfig)
        self._spawn("argo-rollouts", argo.controller_argv(self.kubeconfig, free_port(), free_port()))

    def api_client(self) -> client.ApiClient:
        """A Kubernetes API client authenticated as the admin."""
        api: client.ApiClient = config.new_client_from_config(config_file=str(self.kubeconfig))
        return api

    def _create_nodes(self) -> None:
        key, _, value = NODE_LABEL.partition("=")
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for i in range(self.nodes):
                name = f"kwok-node-{i}"
                body = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": {
                            key: value,
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                        },
                        "annotations": {
                            "kwok.x-k8s.io/node": "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                    },
                }
                try:
                    core.create_node(body)
                except ApiException as exc:
                    if exc.status != 409:
                        raise

    def _wait_nodes_ready(self, deadline: float) -> None:
        with self.api_client() as api:
            core = client.CoreV1Api(api)

            def ready() -> bool:
                resp: Any = core.list_node(label_selector=NODE_LABEL, _preload_content=False)
                good = 0
                for node in json.loads(resp.data)["items"]:
                    conditions = (node.get("status") or {}).get("conditions") or []
                    conds = {c["type"]: c["status"] for c in conditions}
                    taints = [t["key"] for t in (node.get("spec") or {}).get("taints") or []]
                    if conds.get("Ready") == "True" and not any(
                        "not-ready" in t or "uninitialized" in t for t in taints
                    ):
                        good += 1
                return good >= self.nodes

            self._wait("kwok nodes Ready", ready, deadline, "kwok")

    def stop(self, grace: float = 10.0) -> None:
        """Stop every component (pod runner first, etcd last) and reap them."""
        for name in reversed(self.COMPONENTS):
            pid = self.state.pids.get(name)
            if not pid:
                continue
            marker = "tiergate_kits.devcluster" if name == "pod-runner" else name
            proc = self._procs.get(name)
            if proc is None and not _alive(pid, marker):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            end = time.monotonic() + grace
            while time.monotonic() < end:
                if proc is not None:
                    if proc.poll() is not None:
                        break
                elif not _alive(pid, marker):
                    break
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if proc is not None:
                proc.wait()
            log.info("Stopped component name=%s pid=%s", name, pid)
        self.state.pids.clear()
        self._procs.clear()
        if self.workdir.is_dir():
            self._save_state()

    def env(self) -> dict[str, str]:
        """Environment variables pointing tools at this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def processes(self) -> Iterator[tuple[str, int, bool]]:
        """Each recorded component with its pid and whether it is alive."""
        for name in self.COMPONENTS:
            pid = self.state.pids.get(name)
            if pid:
                marker = "tiergate_kits.devcluster" if name == "pod-runner" else name
                yield name, pid, _alive(pid, marker)
