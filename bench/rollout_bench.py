"""Rollout benchmarks of the operator on the local control plane; JSON on stdout.

1. Time to halt: a bad revision is applied and the operator halts and rolls back the tier. The
   floor the configuration allows is ``progressDeadline`` (workers that never become Ready) or
   ``readyAt + interval x (failureLimit - 1)`` (a check failing from its first evaluation); the
   controller's overhead is the time above that floor. Median of several runs.
2. Scale: 500 SenderTiers in 50 fleets (0 replicas, so the control loop alone is measured) from
   creation to all signed off; then the operator's RSS, CPU share at rest, and reconcile latency
   p50/p99 from its own histogram.

Run: ``.venv/bin/python bench/rollout_bench.py [--runs 5] [--tiers 500]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from tiergate.devcluster import build  # noqa: E402
from tiergate.devcluster.cluster import LocalCluster  # noqa: E402

TIERGATE = str(Path(sys.executable).parent / "tiergate")
GROUP, VERSION, PLURAL = "tiergate.io", "v1alpha1", "sendertiers"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _kubectl(kubeconfig: Path, *args: str) -> None:
    subprocess.run(
        [str(build.bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        check=True,
        capture_output=True,
    )


class Operator:
    """The operator as a process, with its metrics port."""

    def __init__(self, kubeconfig: Path, log: Path, extra: list[str] | None = None) -> None:
        self.port = _free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": "default"}
        self.proc = subprocess.Popen(
            [
                TIERGATE,
                "operator",
                "run",
                "--metrics-port",
                str(self.port),
                "--metrics-host",
                "127.0.0.1",
                "--no-leader-election",
                *(extra or []),
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _tier(
    name: str, fleet: str, order: int, template: dict[str, Any], gate: dict[str, Any], replicas: int
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SenderTier",
        "metadata": {"name": name},
        "spec": {
            "fleet": fleet,
            "order": order,
            "trafficClass": "bulk",
            "replicas": replicas,
            "template": template,
            "healthGate": gate,
        },
    }


def _worker_template(env: dict[str, str]) -> dict[str, Any]:
    return {
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "image": "tiergate:dev",
                    "command": ["tiergate", "sender", "worker"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
                }
            ]
        }
    }


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise TimeoutError(what)


def time_to_halt(api: client.ApiClient, kubeconfig: Path, workdir: Path, runs: int) -> dict[str, Any]:
    """Median time from a bad revision to halt and to rolled back, against the configured floor."""
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    smsc_port = _free_port()
    smsc = subprocess.Popen(
        [
            TIERGATE,
            "sender",
            "smsc",
            "--host",
            "127.0.0.1",
            "--port",
            str(smsc_port),
            "--stats-port",
            str(_free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    op = Operator(kubeconfig, workdir / "operator-halt.log")
    results: dict[str, list[dict[str, float]]] = {"never-ready": [], "failing-check": []}
    try:
        time.sleep(2)
        base_env = {
            "TIERGATE_STORE_URL": f"sqlite://{workdir / 'halt.db'}",
            "TIERGATE_UPSTREAM_URL": f"smpp://127.0.0.1:{smsc_port}",
        }
        scenarios = {
            "never-ready": (
                {"progressDeadline": "10s", "bake": "1s", "interval": "1s", "failureLimit": 2, "checks": []},
                {"TIERGATE_FAULTS": "no-bind", "TIERGATE_ALLOW_FAULTS": "1"},
            ),
            "failing-check": (
                {
                    "progressDeadline": "30s",
                    "bake": "30s",
                    "interval": "2s",
                    "failureLimit": 3,
                    "checks": [
                        {"name": "always-bad", "http": {"port": 8080, "path": "/metrics-does-not-exist"}}
                    ],
                },
                {"RELEASE": "bad"},
            ),
        }
        for run in range(runs):
            for scenario, (gate, bad_env) in scenarios.items():
                ns = f"bench-{scenario}-{run}"
                core.create_namespace({"metadata": {"name": ns}})
                good = _tier("bulk", "f", 0, _worker_template(base_env), {**gate, "checks": []}, 1)
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, good)
                _wait(
                    lambda ns=ns: (
                        (
                            custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "bulk").get(
                                "status"
                            )
                            or {}
                        ).get("phase")
                        == "SignedOff"
                    ),
                    120,
                    "good signed off",
                )
                patch = {"spec": {"healthGate": gate, "template": _worker_template({**base_env, **bad_env})}}
                applied = time.time()
                custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "bulk", patch)
                st = _wait(
                    lambda ns=ns: (
                        (
                            s := (
                                custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "bulk").get(
                                    "status"
                                )
                                or {}
                            )
                        ).get("phase")
                        == "RolledBack"
                        and s
                    ),
                    120,
                    "halted",
                )
                halted = _ts(st["halt"]["at"])
                _wait(
                    lambda ns=ns, st=st: (
                        (d := apps.read_namespaced_deployment("bulk", ns)).spec.template.metadata.labels[
                            "tiergate.io/revision"
                        ]
                        == st["signedOffRevision"]
                        and (d.status.updated_replicas or 0) == 1
                        and (d.status.replicas or 0) == 1
                        and (d.status.ready_replicas or 0) == 1
                    ),
                    120,
                    "rolled back",
                )
                restored = time.time()
                if scenario == "never-ready":
                    floor = applied + 10.0
                else:
                    floor = _ts(st["rollout"]["readyAt"]) + 2.0 * (3 - 1)
                results[scenario].append(
                    {
                        "detect_overhead_s": halted - floor,
                        "halt_after_apply_s": halted - applied,
                        "rolled_back_after_apply_s": restored - applied,
                        "restore_after_halt_s": restored - halted,
                    }
                )
                core.delete_namespace(ns)
    finally:
        op.stop()
        smsc.terminate()
    out: dict[str, Any] = {}
    for scenario, rows in results.items():
        out[scenario] = {key: round(statistics.median(r[key] for r in rows), 3) for key in rows[0]}
        out[scenario]["runs"] = len(rows)
        out[scenario]["all_detect_overhead_s"] = [round(r["detect_overhead_s"], 3) for r in rows]
    out["floors"] = {
        "never-ready": "progressDeadline 10s",
        "failing-check": "readyAt + interval 2s x (failureLimit 3 - 1)",
    }
    return out


def _histogram_quantile(text: str, name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None: beyond the last finite bucket)."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        m = re.match(rf'{name}_bucket\{{le="([^"]+)"\}} ([0-9.e+]+)', line)
        if m:
            buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return None if bound == float("inf") else bound
    return None


def scale(api: client.ApiClient, kubeconfig: Path, workdir: Path, tiers: int, fleets: int) -> dict[str, Any]:
    """500 tiers in 50 fleets: time to all signed off, then RSS, CPU at rest and reconcile latency."""
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    ns = "bench-scale"
    core.create_namespace({"metadata": {"name": ns}})
    op = Operator(kubeconfig, workdir / "operator-scale.log", ["--namespace", ns])
    try:
        time.sleep(2)
        gate = {"progressDeadline": "300s", "bake": "1s", "interval": "1s", "failureLimit": 3, "checks": []}
        per_fleet = tiers // fleets
        start = time.time()
        for f in range(fleets):
            for o in range(per_fleet):
                body = _tier(f"f{f}-t{o}", f"fleet-{f}", o, _worker_template({"V": "1"}), gate, 0)
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        created = time.time()

        def signed() -> int:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
            return sum(1 for i in items if (i.get("status") or {}).get("phase") == "SignedOff")

        _wait(lambda: signed() == tiers, 1800, "all signed off")
        all_signed = time.time()
        text = op.metrics()
        p50 = _histogram_quantile(text, "tiergate_operator_reconcile_duration_seconds", 0.5)
        p99 = _histogram_quantile(text, "tiergate_operator_reconcile_duration_seconds", 0.99)
        cpu0, t0 = op.cpu_seconds(), time.time()
        time.sleep(60)
        cpu1, t1 = op.cpu_seconds(), time.time()
        return {
            "tiers": tiers,
            "fleets": fleets,
            "create_seconds": round(created - start, 2),
            "all_signed_off_after_create_s": round(all_signed - created, 2),
            "rss_mib": round(op.rss_mib(), 1),
            "cpu_share_at_rest": round((cpu1 - cpu0) / (t1 - t0), 4),
            "reconcile_p50_le_s": p50,
            "reconcile_p99_le_s": p99,
        }
    finally:
        op.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tiers", type=int, default=500)
    parser.add_argument("--fleets", type=int, default=50)
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    if build.missing_binaries():
        build.build()
    with tempfile.TemporaryDirectory(prefix="tiergate-bench-") as tmp:
        workdir = Path(tmp)
        cluster = LocalCluster(workdir / "cluster", nodes=2)
        cluster.start()
        try:
            kubeconfig = cluster.kubeconfig
            _kubectl(kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds" / "sendertier.yaml"))
            _kubectl(kubeconfig, "wait", "--for=condition=Established", "crd/sendertiers.tiergate.io")
            api = cluster.api_client()
            report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()}}
            report["time_to_halt"] = time_to_halt(api, kubeconfig, workdir, args.runs)
            if not args.skip_scale:
                report["scale"] = scale(api, kubeconfig, workdir, args.tiers, args.fleets)
            print(json.dumps(report, indent=2))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
