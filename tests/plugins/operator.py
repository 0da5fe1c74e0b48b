"""Fixtures for the operator's tests: the CRD, its RBAC, a test SMSC, and the operator as a process.

The operator always runs as a separate ``tiergate operator run`` process authenticated as its own
least-privilege service account, so every test also proves the RBAC is enough.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.plugins.tools import SETUP, require_tool
from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION
from tiergate.domain.revision import revision_of
from tiergate_kits.helpers import create_fleet_env, free_port, poll, quick_checks, with_env

ROOT = Path(__file__).resolve().parents[2]
TIERGATE = str(Path(sys.executable).parent / "tiergate")
OPERATOR_NS = "tiergate-system"
OPERATOR_SA = "tiergate-operator"


def kubectl_path() -> str:
    """kubectl from the local control plane's cache, else from PATH."""
    from tiergate_kits.devcluster import build

    cached = build.bin_dir() / "kubectl"
    if cached.exists():
        return str(cached)
    return require_tool("kubectl", f"{SETUP} (tiergate dev build)")


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the test cluster; a failure shows what kubectl said."""
    done = subprocess.run(
        [kubectl_path(), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input_text,
        timeout=120,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}"
        )
    return done


def wait_for(
    check: Callable[[], Any],
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str | Callable[[], str] = "",
) -> Any:
    """Poll until ``check()`` returns something truthy; return it, or fail with ``what``.

    A callable ``what`` is asked at the timeout, so the message tells the state at the end.
    """
    done, last = poll(check, timeout, interval)
    if done:
        return last
    said = what() if callable(what) else what
    pytest.fail(f"timed out after {timeout}s waiting for {said or check}: last={last!r}")


@pytest.fixture(scope="session")
def crd(kubeconfig_path: Path, kube_api: client.ApiClient) -> None:
    """The SenderTier CRD installed and established."""
    kubectl(
        kubeconfig_path,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "crds" / "sendertier.yaml"),
    )
    kubectl(
        kubeconfig_path, "wait", "--for=condition=Established", "crd/sendertiers.tiergate.io", "--timeout=60s"
    )
    # Discovery caches in the API server take a moment after Established.
    custom = client.CustomObjectsApi(kube_api)
    wait_for(lambda: _listable(custom), what="SenderTier API served")


def _listable(custom: client.CustomObjectsApi) -> bool:
    try:
        custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    except ApiException:
        return False
    return True


@pytest.fixture(scope="session")
def operator_kubeconfig(
    crd: None, kubeconfig_path: Path, kube_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig that authenticates as the operator's service account (least privilege)."""
    kubectl(
        kubeconfig_path,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "deploy" / "operator" / "rbac.yaml"),
    )
    core = client.CoreV1Api(kube_api)
    wait_for(lambda: _sa_exists(core), what="operator service account")
    token = core.create_namespaced_service_account_token(
        OPERATOR_SA, OPERATOR_NS, {"spec": {"expirationSeconds": 7200}}
    ).status.token
    admin = yaml.safe_load(kubeconfig_path.read_text())
    cluster_entry = admin["clusters"][0]["cluster"]
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster_entry}],
        "users": [{"name": OPERATOR_SA, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": OPERATOR_SA}}],
        "current-context": "operator",
    }
    if "certificate-authority" in cluster_entry:
        ca = Path(cluster_entry["certificate-authority"])
        cluster_entry = {**cluster_entry}
        cluster_entry.pop("certificate-authority")
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
        cfg["clusters"][0]["cluster"] = cluster_entry
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _sa_exists(core: client.CoreV1Api) -> bool:
    try:
        core.read_namespaced_service_account(OPERATOR_SA, OPERATOR_NS)
    except ApiException:
        return False
    return True


@dataclass
class SmscProcess:
    """The smpp34-backed test SMSC as a process, shared by the worker pods."""

    port: int
    stats_port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The upstream URL the workers use."""
        return f"smpp://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        """The SMSC's counters."""
        data: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats", timeout=5).json()
        return data


@pytest.fixture(scope="session")
def smsc_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmscProcess]:
    """One test SMSC for the session."""
    port, stats_port = free_port(), free_port()
    log = (tmp_path_factory.mktemp("smsc") / "smsc.log").open("wb")
    proc = subprocess.Popen(
        [
            TIERGATE,
            "smsc",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--stats-port",
            str(stats_port),
            "--receipts",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    smsc = SmscProcess(port, stats_port, proc)
    wait_for(lambda: _answers(smsc), timeout=30, what="test SMSC")
    yield smsc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _answers(smsc: SmscProcess) -> bool:
    try:
        smsc.stats()
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture
def sender_env(
    namespace: str, kube_api: client.ApiClient, smsc_process: SmscProcess, tmp_path: Path
) -> dict[str, str]:
    """The ConfigMap and Secret the example fleet's workers read, pointing at local parts."""
    return create_fleet_env(kube_api, namespace, f"sqlite://{tmp_path / 'tiergate.db'}", smsc_process.url)


@dataclass
class OperatorProcess:
    """``tiergate operator run`` for one namespace, as its service account; restartable."""

    kubeconfig: Path
    namespace: str
    log_path: Path
    prometheus_url: str | None = None
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    replica: str = "0"

    def start(self) -> OperatorProcess:
        """Start the operator (again)."""
        self.metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["POD_NAMESPACE"] = OPERATOR_NS
        # One identity across restarts, as a restarted container keeps its pod's name: it takes
        # its own lease back at once instead of waiting for it to expire.
        env["POD_NAME"] = f"operator-{self.namespace}-{self.replica}"
        args = [
            TIERGATE,
            "operator",
            "run",
            "--namespace",
            self.namespace,
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-host",
            "127.0.0.1",
            "--lease-name",
            f"tiergate-{self.namespace}",
            *self.extra_args,
        ]
        if self.prometheus_url:
            args += ["--prometheus-url", self.prometheus_url]
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return self

    def kill(self) -> None:
        """SIGKILL: the harshest stop, mid-anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        """Everything the operator logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        """The operator's /metrics text."""
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text


@pytest.fixture
def operator_factory(
    operator_kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Make operator processes for the test's namespace; all are stopped at teardown."""
    made: list[OperatorProcess] = []

    def make(
        prometheus_url: str | None = None, extra_args: list[str] | None = None, replica: str = "0"
    ) -> OperatorProcess:
        op = OperatorProcess(
            operator_kubeconfig,
            namespace,
            tmp_path / f"operator-{len(made)}.log",
            prometheus_url,
            extra_args or [],
            replica=replica,
        )
        made.append(op)
        return op

    yield make
    for op in made:
        op.stop()
        sys.stderr.write(f"\n--- operator log {op.log_path} (tail) ---\n{op.logs()[-3000:]}\n")


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    """A running operator for the test's namespace."""
    return operator_factory().start()


def example_fleet(checks: str = "http", gate: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The example fleet's SenderTiers, with quick gates for tests; ``checks`` keeps only some."""
    docs = [
        d for d in yaml.safe_load_all((ROOT / "examples" / "fleet" / "sendertiers.yaml").read_text()) if d
    ]
    for doc in docs:
        hg = doc["spec"]["healthGate"]
        # No watch after sign-off unless a test asks for one: a settled tier then writes nothing.
        hg.update(
            gate
            or {"progressDeadline": "60s", "bake": "2s", "interval": "1s", "failureLimit": 2, "watch": "0s"}
        )
        if checks == "http":
            hg["checks"] = [c for c in hg["checks"] if "http" in c]
        elif checks == "none":
            hg["checks"] = []
            hg["readinessOnly"] = True
    return docs


def create_tiers(kube_api: client.ApiClient, namespace: str, docs: list[dict[str, Any]]) -> None:
    """Create SenderTiers in a namespace."""
    custom = client.CustomObjectsApi(kube_api)
    for doc in docs:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc)


def get_tier(kube_api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """A SenderTier as the API server has it."""
    obj: dict[str, Any] = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def patch_tier(
    kube_api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch a SenderTier (as a user or GitOps would)."""
    obj: dict[str, Any] = client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, patch
    )
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """One condition of an object's status."""
    for c in (obj.get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return None


def tier_ready(kube_api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The tier if its Ready condition is True for its current generation, else None."""
    obj = get_tier(kube_api, namespace, name)
    ready = condition(obj, "Ready")
    status = obj.get("status") or {}
    if (
        ready
        and ready["status"] == "True"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    ):
        return obj
    return None


class Traffic:
    """Steady messages for every traffic class, enqueued straight into the workers' store."""

    def __init__(self, store_url: str, classes: list[str], per_second: float = 20.0) -> None:
        import threading

        self.store_url = store_url
        self.classes = classes
        self.per_second = per_second
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._loop())

    async def _loop(self) -> None:
        import asyncio
        import uuid

        from tiergate.store import Encoding, NewMessage, open_store

        store = await open_store(self.store_url)
        try:
            tick = 0.25
            while not self._stop.is_set():
                batch = [
                    NewMessage(
                        customer_id=f"cust-{i % 7}",
                        traffic_class=cls,
                        destination="+447700900123",
                        sender_id="TIERGATE",
                        body="Your code is 123456",
                        encoding=Encoding.GSM7,
                        segments=1,
                        idempotency_key=uuid.uuid4().hex,
                    )
                    for cls in self.classes
                    for i in range(max(1, round(self.per_second * tick)))
                ]
                await store.enqueue(batch)
                self.sent += len(batch)
                await asyncio.sleep(tick)
        finally:
            await store.close()


FLEET_TIERS = ("bulk", "standard", "priority")


def phases(kube_api: client.ApiClient, namespace: str) -> dict[str, str | None]:
    """Each example-fleet tier's phase."""
    return {t: (get_tier(kube_api, namespace, t).get("status") or {}).get("phase") for t in FLEET_TIERS}


def all_signed_off(kube_api: client.ApiClient, namespace: str, revisions: dict[str, str]) -> bool:
    """True when every example-fleet tier is signed off at the given revision."""
    for t in FLEET_TIERS:
        st = get_tier(kube_api, namespace, t).get("status") or {}
        if st.get("phase") != "SignedOff" or st.get("signedOffRevision") != revisions[t]:
            return False
    return True


@contextlib.contextmanager
def signed_off_fleet(
    kube_api: client.ApiClient,
    namespace: str,
    store_url: str,
    docs: list[dict[str, Any]],
    timeout: float = 240,
) -> Iterator[dict[str, str]]:
    """Traffic flowing and the tiers created and signed off at their first revision, which it yields."""
    with Traffic(store_url, list(FLEET_TIERS), per_second=15):
        create_tiers(kube_api, namespace, docs)
        first = {d["metadata"]["name"]: revision_of(d["spec"]["template"]) for d in docs}
        wait_for(
            lambda: all_signed_off(kube_api, namespace, first),
            timeout=timeout,
            what="first revision signed off",
        )
        yield first


def release(
    kube_api: client.ApiClient, namespace: str, docs: list[dict[str, Any]], **env: str
) -> dict[str, str]:
    """Apply a new release to every tier at once, as GitOps would; return each tier's new revision."""
    revisions = {}
    for doc in docs:
        template = with_env(doc["spec"]["template"], **env)
        doc["spec"]["template"] = template
        patch_tier(kube_api, namespace, doc["metadata"]["name"], {"spec": {"template": template}})
        revisions[doc["metadata"]["name"]] = revision_of(template)
    return revisions


WINDOW = "15s"


def gated_fleet(**gate: Any) -> list[dict[str, Any]]:
    """The example fleet with a quick, complete health stack."""
    checks = [
        *quick_checks(WINDOW),
        {"name": "discards", "discardBudget": {"max": 1000}},
    ]
    settings = {"progressDeadline": "30s", "bake": "4s", "interval": "1s", "failureLimit": 2, **gate}
    docs = example_fleet(gate=settings)
    for doc in docs:
        doc["spec"]["healthGate"]["checks"] = copy.deepcopy(checks)
    return docs


class DeploymentSampler:
    """Records, every 100 ms, which revision each tier's Deployment template holds."""

    def __init__(self, kube_api: client.ApiClient, namespace: str) -> None:
        import threading

        self.apps = client.AppsV1Api(kube_api)
        self.namespace = namespace
        self.samples: list[tuple[float, dict[str, str | None]]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                deps = self.apps.list_namespaced_deployment(self.namespace, _request_timeout=5).items
            except Exception as exc:  # a slow or refused list must not end the sampling
                self.errors.append(repr(exc))
                time.sleep(0.1)
                continue
            current = {
                d.metadata.name: d.spec.template.metadata.labels.get("tiergate.io/revision") for d in deps
            }
            self.samples.append((time.monotonic(), current))
            time.sleep(0.1)

    def __enter__(self) -> DeploymentSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def ever_ran(self, tier: str, revision: str) -> bool:
        """Whether the tier's Deployment ever held that revision."""
        return any(s.get(tier) == revision for _, s in self.samples)

    def back_at(self, tier: str, bad: str, good: str) -> float | None:
        """When (monotonic) the tier's Deployment, after holding ``bad``, first held ``good``."""
        seen_bad = False
        for at, sample in self.samples:
            if sample.get(tier) == bad:
                seen_bad = True
            elif seen_bad and sample.get(tier) == good:
                return at
        return None


class PodSampler:
    """Records, every 100 ms, each pod of a tier: its uid, revision label and whether it is Ready."""

    def __init__(self, kube_api: client.ApiClient, namespace: str, tier: str) -> None:
        import threading

        self.core = client.CoreV1Api(kube_api)
        self.namespace = namespace
        self.selector = f"tiergate.io/tier={tier}"
        self.samples: list[tuple[float, dict[str, tuple[str, str | None, bool]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
            self.samples.append(
                (
                    time.monotonic(),
                    {
                        p.metadata.name: (
                            p.metadata.uid,
                            (p.metadata.labels or {}).get("tiergate.io/revision"),
                            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []),
                        )
                        for p in pods
                        if p.metadata.deletion_timestamp is None
                    },
                )
            )
            time.sleep(0.1)

    def __enter__(self) -> PodSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def ran(self, revision: str) -> set[str]:
        """Every pod uid ever seen with that revision."""
        return {uid for _, pods in self.samples for uid, rev, _ in pods.values() if rev == revision}


def serving(kube_api: client.ApiClient, namespace: str, tier: str, revision: str) -> bool:
    """True when the tier's Deployment holds ``revision`` and all its replicas are Ready."""
    dep = client.AppsV1Api(kube_api).read_namespaced_deployment(tier, namespace)
    held = dep.spec.template.metadata.labels.get("tiergate.io/revision")
    return bool(held == revision and (dep.status.ready_replicas or 0) == dep.spec.replicas)


def set_gate(kube_api: client.ApiClient, namespace: str, docs: list[dict[str, Any]], **gate: str) -> None:
    """Change the health gate of every tier (a spec change that is not a new revision)."""
    for doc in docs:
        patch_tier(kube_api, namespace, doc["metadata"]["name"], {"spec": {"healthGate": gate}})


def replica_set_revisions(
    kube_api: client.ApiClient, namespace: str, tier: str, deployment: str | None = None
) -> set[str]:
    """Every revision a tier's Deployments (or only ``deployment``) were given, from their ReplicaSets."""
    sets = (
        client.AppsV1Api(kube_api)
        .list_namespaced_replica_set(namespace, label_selector=f"tiergate.io/tier={tier}")
        .items
    )
    return {
        rs.metadata.labels.get("tiergate.io/revision")
        for rs in sets
        if deployment is None or any(o.name == deployment for o in rs.metadata.owner_references or [])
    }


REPLAY_TOKEN = "operator-replay"


@dataclass
class ReplayProcess:
    """``tiergate replay serve`` on the fleet's store, for the operator's replay hand-off."""

    url: str
    proc: subprocess.Popen[bytes]

    @property
    def operator_args(self) -> list[str]:
        """The operator's flags for the hand-off to this service."""
        return ["--replay-url", self.url, "--replay-token", REPLAY_TOKEN]


@pytest.fixture
def replay_process(sender_env: dict[str, str], tmp_path: Path) -> Iterator[ReplayProcess]:
    """The replay service on the test's fleet store, as a process."""
    tokens = tmp_path / "replay-tokens"
    tokens.write_text(f"{REPLAY_TOKEN}=operator\n")
    tokens.chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERGATE_")}
    log = (tmp_path / "replay.log").open("wb")
    proc = subprocess.Popen(
        [
            *(TIERGATE, "replay", "serve", "--store", sender_env["TIERGATE_STORE_URL"]),
            *("--host", "127.0.0.1", "--port", str(port), "--tokens-file", str(tokens)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    service = ReplayProcess(f"http://127.0.0.1:{port}", proc)
    wait_for(lambda: _healthy(f"{service.url}/healthz"), timeout=60, what="replay service")
    yield service
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).is_success
    except httpx.HTTPError:
        return False


def tiergate_cli(kubeconfig: Path, namespace: str, *args: str) -> str:
    """Run ``tiergate ARGS`` against the test cluster's namespace, as on-call would; its stdout."""
    done = subprocess.run(
        [TIERGATE, *args, "--namespace", namespace, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout
