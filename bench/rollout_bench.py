"""Rollout benchmarks of the operator on the local control plane; JSON on stdout.

1. Time to halt: a bad revision is applied and the operator halts and rolls back the tier. The
   floor the configuration allows is ``progressDeadline`` (workers that never become Ready) or
   ``readyAt + interval x (failureLimit - 1)`` (a check failing from its first evaluation); the
   controller's overhead is the time above that floor. Median of several runs.
2. Scale: 500 SenderTiers in 50 fleets (0 replicas, so the control loop alone is measured) from
   creation to all signed off; then the operator's RSS, CPU share at rest, and reconcile latency
   p50/p99 from its own histogram.
3. Late failure: a three-tier fleet takes a release that passes every bake, then tier 0's workers
   fail (``no-bind,fail-after=S,fail-class=bulk``: their ``/readyz`` turns false S seconds after
   they start). From the onset (the first 503 of tier 0's pod, polled every 50 ms) to every tier's
   Deployment back on the previous release, against the floor ``interval x failureLimit``; the
   controller's overhead is the time above it (target: at most 1 s median). Each tier's restore
   time after the onset (template back, and its pods Ready), in the order it happened: the fleet
   policy rolls back the highest order first. The halting tier rolls itself back at its halt.

Run: ``.venv/bin/python bench/rollout_bench.py [--runs 5] [--tiers 500] [--late-runs 3]``
(``--only late`` for the third alone).
"""

from __future__ import annotations

import argparse
import itertools
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

from tiergate.domain.revision import revision_of
from tiergate_kits.devcluster import build
from tiergate_kits.devcluster.cluster import LocalCluster
from tiergate_kits.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]

TIERGATE = str(Path(sys.executable).parent / "tiergate")
GROUP, VERSION, PLURAL = "tiergate.io", "v1alpha1", "sendertiers"
READINESS_ONLY: dict[str, Any] = {"checks": [], "readinessOnly": True}
LABEL_TIER, LABEL_REVISION = "tiergate.io/tier", "tiergate.io/revision"
FLEET = ("bulk", "standard", "priority")


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
        self.port = free_port()
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
    name: str,
    fleet: str,
    order: int,
    template: dict[str, Any],
    gate: dict[str, Any],
    replicas: int,
    traffic_class: str = "bulk",
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SenderTier",
        "metadata": {"name": name},
        "spec": {
            "fleet": fleet,
            "order": order,
            "trafficClass": traffic_class,
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


def _smsc() -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            TIERGATE,
            "smsc",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--stats-port",
            str(free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return port, proc


def _store_and_upstream(db: Path, smsc_port: int) -> dict[str, str]:
    return {"TIERGATE_STORE_URL": f"sqlite://{db}", "TIERGATE_UPSTREAM_URL": f"smpp://127.0.0.1:{smsc_port}"}


def time_to_halt(api: client.ApiClient, kubeconfig: Path, workdir: Path, runs: int) -> dict[str, Any]:
    """Median time from a bad revision to halt and to rolled back, against the configured floor."""
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    smsc_port, smsc = _smsc()
    op = Operator(kubeconfig, workdir / "operator-halt.log")
    results: dict[str, list[dict[str, float]]] = {"never-ready": [], "failing-check": []}
    try:
        time.sleep(2)
        base_env = _store_and_upstream(workdir / "halt.db", smsc_port)
        scenarios = {
            "never-ready": (
                {
                    "progressDeadline": "10s",
                    "bake": "1s",
                    "interval": "1s",
                    "failureLimit": 2,
                    **READINESS_ONLY,
                },
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
                good = _tier("bulk", "f", 0, _worker_template(base_env), {**gate, **READINESS_ONLY}, 1)
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


class DeploymentTimes:
    """Samples, every 50 ms, each Deployment's template revision and Ready replicas, with wall times."""

    def __init__(self, apps: client.AppsV1Api, namespace: str) -> None:
        import threading

        self.apps = apps
        self.namespace = namespace
        self.samples: list[tuple[float, dict[str, tuple[str | None, int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                items = self.apps.list_namespaced_deployment(self.namespace).items
            except Exception:  # a sample lost to a loaded API server is only a gap
                items = []
            now = time.time()
            self.samples.append(
                (
                    now,
                    {
                        d.metadata.name: (
                            (d.spec.template.metadata.labels or {}).get(LABEL_REVISION),
                            d.spec.replicas or 0,
                            _ready_updated(d),
                        )
                        for d in items
                    },
                )
            )
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def back(self, tier: str, bad: str, good: str, ready: bool) -> float | None:
        """When the tier's template, after holding ``bad``, held ``good`` again (with its pods Ready)."""
        seen_bad = False
        for at, deps in self.samples:
            held, replicas, ready_now = deps.get(tier, (None, 0, 0))
            if held == bad:
                seen_bad = True
            elif seen_bad and held == good and (not ready or ready_now >= replicas):
                return at
        return None


def _ready_updated(d: Any) -> int:
    """Ready replicas, once the status is of the current spec and every replica is updated."""
    if (d.status.observed_generation or 0) < (d.metadata.generation or 0):
        return 0
    if (d.status.updated_replicas or 0) < (d.spec.replicas or 0):
        return 0
    return int(d.status.ready_replicas or 0)


def _status(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status") or {}
    )
    return status


def _onset(core: client.CoreV1Api, ns: str, revision: str, timeout: float) -> float:
    """The first moment tier 0's pod of ``revision`` answers /readyz with 503 after answering 200."""
    pods = _wait(
        lambda: [
            p.status.pod_ip
            for p in core.list_namespaced_pod(
                ns, label_selector=f"{LABEL_TIER}=bulk,{LABEL_REVISION}={revision}"
            ).items
            if p.status.pod_ip
        ],
        60,
        "tier 0's bad pod",
    )
    url = f"http://{pods[0]}:8080/readyz"
    deadline = time.monotonic() + timeout
    was_ready = False
    with httpx.Client(timeout=1.0) as http:
        while time.monotonic() < deadline:
            try:
                code = http.get(url).status_code
            except httpx.HTTPError:
                code = 0
            if code == 200:
                was_ready = True
            elif code == 503 and was_ready:
                return time.time()
            time.sleep(0.05)
    raise TimeoutError("tier 0's workers never failed")


def late_failure(
    api: client.ApiClient, kubeconfig: Path, workdir: Path, runs: int, fail_after: int
) -> dict[str, Any]:
    """From the onset of a late failure on tier 0 to every tier back on the previous release."""
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    interval, limit = 1, 2
    floor = float(interval * limit)
    gate = {
        "progressDeadline": "60s",
        "bake": "2s",
        "interval": f"{interval}s",
        "failureLimit": limit,
        "watch": f"{fail_after * 4}s",
        "checks": [{"name": "deep-ready", "http": {"port": 8080, "path": "/readyz"}}],
    }
    smsc_port, smsc = _smsc()
    op = Operator(kubeconfig, workdir / "operator-late.log")
    rows: list[dict[str, Any]] = []
    try:
        time.sleep(2)
        base_env = _store_and_upstream(workdir / "late.db", smsc_port)
        bad_env = {
            "TIERGATE_FAULTS": f"no-bind,fail-after={fail_after},fail-class=bulk",
            "TIERGATE_ALLOW_FAULTS": "1",
        }
        for run in range(runs):
            ns = f"bench-late-{run}"
            core.create_namespace({"metadata": {"name": ns}})
            good_t, bad_t = _worker_template(base_env), _worker_template({**base_env, **bad_env})
            good, bad = revision_of(good_t), revision_of(bad_t)
            for order, name in enumerate(FLEET):
                body = _tier(name, "f", order, good_t, gate, 1, traffic_class=name)
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

            def at(revision: str, ns: str = ns) -> bool:
                return all(
                    (st := _status(custom, ns, t)).get("phase") == "SignedOff"
                    and st.get("signedOffRevision") == revision
                    for t in FLEET
                )

            _wait(lambda good=good: at(good), 180, "first release signed off")
            sampler = DeploymentTimes(apps, ns)
            try:
                applied = time.time()
                for name in FLEET:
                    custom.patch_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, name, {"spec": {"template": bad_t}}
                    )
                onset = _onset(core, ns, bad, fail_after + 60)
                everywhere = at(bad)
                _wait(
                    lambda ns=ns, good=good: all(
                        (d := apps.read_namespaced_deployment(t, ns)).spec.template.metadata.labels[
                            LABEL_REVISION
                        ]
                        == good
                        and (d.status.ready_replicas or 0) >= 1
                        and (d.status.updated_replicas or 0) >= 1
                        for t in FLEET
                    ),
                    180,
                    "every tier back",
                )
                time.sleep(1)
            finally:
                sampler.stop()
            halt = _status(custom, ns, "bulk").get("halt") or {}
            reverted = {t: sampler.back(t, bad, good, ready=False) for t in FLEET}
            ready = {t: sampler.back(t, bad, good, ready=True) for t in FLEET}
            back_all = max(v for v in reverted.values() if v is not None)
            ordered = sorted((t for t in FLEET if reverted[t] is not None), key=lambda t: reverted[t] or 0.0)
            fleet_rolled = [reverted[t] for t in reversed(FLEET[1:])]
            rows.append(
                {
                    "onset_after_apply_s": round(onset - applied, 2),
                    "release_everywhere_at_onset": everywhere,
                    "halt_after_onset_s": round(_ts(halt["at"]) - onset, 3) if halt.get("at") else None,
                    "halt_during": halt.get("during"),
                    "all_reverted_after_onset_s": round(back_all - onset, 3),
                    "overhead_s": round(back_all - onset - floor, 3),
                    "all_ready_after_onset_s": round(
                        max(v for v in ready.values() if v is not None) - onset, 3
                    ),
                    "restored": [
                        {
                            "tier": t,
                            "template_back_after_onset_s": round((reverted[t] or 0.0) - onset, 3),
                            "ready_after_onset_s": None if r is None else round(r - onset, 3),
                        }
                        for t in ordered
                        for r in (ready[t],)
                    ],
                    "fleet_rollback_highest_first": all(
                        a is not None and b is not None and a <= b
                        for a, b in itertools.pairwise(fleet_rolled)
                    ),
                }
            )
            core.delete_namespace(ns)
    finally:
        op.stop()
        smsc.terminate()
    keys = ("halt_after_onset_s", "all_reverted_after_onset_s", "overhead_s", "all_ready_after_onset_s")
    return {
        "floor_s": floor,
        "floor": f"interval {interval}s x failureLimit {limit}",
        "fail_after_s": fail_after,
        "runs": len(rows),
        "median": {k: round(statistics.median(r[k] for r in rows if r[k] is not None), 3) for k in keys},
        "overhead_target_s": 1.0,
        "every_run": rows,
    }


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
        gate = {
            "progressDeadline": "300s",
            "bake": "1s",
            "interval": "1s",
            "failureLimit": 3,
            **READINESS_ONLY,
        }
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
    parser.add_argument("--late-runs", type=int, default=3)
    parser.add_argument(
        "--fail-after", type=int, default=40, help="late failure: seconds after a worker starts"
    )
    parser.add_argument("--only", choices=("halt", "scale", "late"), help="run one benchmark alone")
    args = parser.parse_args()
    wanted = {args.only} if args.only else {"halt", "late"} | (set() if args.skip_scale else {"scale"})
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
            if "halt" in wanted:
                report["time_to_halt"] = time_to_halt(api, kubeconfig, workdir, args.runs)
            if "late" in wanted:
                report["late_failure"] = late_failure(
                    api, kubeconfig, workdir, args.late_runs, args.fail_after
                )
            if "scale" in wanted:
                report["scale"] = scale(api, kubeconfig, workdir, args.tiers, args.fleets)
            report["machine"]["load_avg_end"] = os.getloadavg()
            print(json.dumps(report, indent=2))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
