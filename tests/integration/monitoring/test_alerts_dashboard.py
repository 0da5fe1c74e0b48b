"""Every alert rule and every dashboard query, loaded into a real Prometheus over the demo's data.

The setup is the demo in small: a local control plane whose worker pods are real sender workers,
the operator rolling out one SenderTier, the sender API taking traffic from ``tiergate dev load``,
the test SMSC, and the replay service. A good revision signs off, then a bad one (every submit
fails) halts and rolls back, leaving discards that two replay jobs work through. Prometheus scrapes
all of it and loads ``deploy/prometheus/tiergate-alerts.yaml``; the tests then ask it to run each
rule and each panel query, so a renamed metric or a broken expression fails here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client
from tests.plugins.operator import (
    OperatorProcess,
    SmscProcess,
    create_tiers,
    example_fleet,
    free_port,
    get_tier,
    patch_tier,
    wait_for,
)
from tests.plugins.prometheus import PrometheusServer, prometheus_binary
from tests.unit.monitoring.exported_metrics import one_per_family

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION
from tiergate.domain.revision import revision_of
from tiergate.monitoring.prometheus_config import scrape_config
from tiergate_kits.helpers import create_fleet_env, quick_checks

pytestmark = [pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "tiergate-alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tiergate-dashboard.json"
TIERGATE = str(Path(sys.executable).parent / "tiergate")
API_TOKEN, BURST_TOKEN, REPLAY_TOKEN = "load-token", "burst-token", "oncall-token"
WINDOW = "15s"
# Grafana's variables as a query over all of the data would have them.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "10m",
    "fleet": ".*",
    "tier": ".*",
    "traffic_class": ".*",
}


@dataclass
class Demo:
    """The running setup the tests query."""

    prometheus: PrometheusServer
    namespace: str
    operator: OperatorProcess
    started: float


class Processes:
    """Background ``tiergate`` processes, each logging to a file; stopped in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``tiergate ARGS``."""
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [TIERGATE, *args], env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL)."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def logs(self) -> str:
        """The tail of every process's log."""
        return "".join(
            f"\n--- {name} ---\n{(self.workdir / f'{name}.log').read_text(errors='replace')[-1500:]}"
            for name, _ in self.procs
        )


def answers(url: str) -> bool:
    """True when ``url`` answers 200."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def gated_tier(namespace: str) -> dict[str, Any]:
    """The example fleet's bulk tier: one worker, a quick gate of a deep probe and the error rate."""
    doc = copy.deepcopy(example_fleet()[0])
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["replicas"] = 1
    doc["spec"]["healthGate"] = {
        "progressDeadline": "60s",
        "bake": "4s",
        "interval": "1s",
        "failureLimit": 4,
        "checks": quick_checks(WINDOW),
    }
    return doc


def status_of(kube_api: client.ApiClient, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = get_tier(kube_api, namespace, "bulk").get("status") or {}
    return status


def present(prom: PrometheusServer) -> set[str]:
    """Metric names Prometheus scraped in the last 15 minutes (a halted revision's pods are gone)."""
    seen = prom.query('count by (__name__) (last_over_time({__name__=~"tiergate_.+"}[15m]))')
    return {r["metric"]["__name__"] for r in seen}


@pytest.fixture(scope="module")
def demo(
    kube_api: client.ApiClient,
    kubeconfig_path: Path,
    operator_kubeconfig: Path,
    smsc_process: SmscProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Demo]:
    """The demo in small, driven through a good release and a bad one, scraped by Prometheus."""
    workdir = tmp_path_factory.mktemp("monitoring")
    started = time.time()
    core = client.CoreV1Api(kube_api)
    namespace = f"t-mon-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace, "labels": {"tiergate.io/test": "true"}}})
    store = f"sqlite://{workdir / 'tiergate.db'}"
    create_fleet_env(kube_api, namespace, store, smsc_process.url)
    (workdir / "api-tokens").write_text(f"{API_TOKEN}=load-customer\n{BURST_TOKEN}=burst-customer\n")
    (workdir / "replay-tokens").write_text(f"{REPLAY_TOKEN}=oncall\n")
    procs = Processes(workdir)
    api_port, replay_port, sd_port = free_port(), free_port(), free_port()
    api_url, replay_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{replay_port}"
    prom = PrometheusServer(prometheus_binary(), workdir, free_port())
    op = OperatorProcess(operator_kubeconfig, namespace, workdir / "operator.log", prom.url)
    try:
        procs.start(
            "api",
            *("sender", "api", "--store", store, "--host", "127.0.0.1", "--port", str(api_port)),
            *("--tokens-file", str(workdir / "api-tokens"), "--customer-rate", "50"),
            # Batches of at most 50, so the customer bucket's burst is one second of its rate.
            env={"TIERGATE_TRAFFIC_CLASSES": "bulk", "TIERGATE_MAX_BATCH": "50"},
        )
        procs.start(
            "replay",
            *("replay", "serve", "--store", store, "--host", "127.0.0.1", "--port", str(replay_port)),
            *("--tokens-file", str(workdir / "replay-tokens"), "--metrics-interval", "1"),
        )
        procs.start(
            "pod-sd",
            *("monitoring", "pod-sd", "--host", "127.0.0.1", "--port", str(sd_port)),
            env={"KUBECONFIG": str(kubeconfig_path)},
        )
        op.start()
        config = scrape_config(f"http://127.0.0.1:{sd_port}/targets")
        config["rule_files"] = [str(RULES)]
        for job, port in (
            ("tiergate-operator", op.metrics_port),
            ("tiergate-sender-api", api_port),
            ("tiergate-replay", replay_port),
        ):
            config["scrape_configs"].append(
                {
                    "job_name": job,
                    "scrape_timeout": "900ms",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
            )
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom.start()
        wait_for(lambda: answers(f"{api_url}/healthz"), timeout=60, what="sender API")
        wait_for(lambda: answers(f"{replay_url}/healthz"), timeout=60, what="replay service")
        procs.start(
            "load",
            *("dev", "load", "--url", api_url, "--token", API_TOKEN, "--rate", "8", "--classes", "bulk"),
        )

        doc = gated_tier(namespace)
        create_tiers(kube_api, namespace, [doc])
        good = revision_of(doc["spec"]["template"])
        wait_for(
            lambda: status_of(kube_api, namespace).get("signedOffRevision") == good,
            timeout=300,
            interval=1,
            what="the first revision signed off",
        )

        template = copy.deepcopy(doc["spec"]["template"])
        template["spec"]["containers"][0]["env"] += [
            {"name": "TIERGATE_FAULTS", "value": "fail-submits=1"},
            {"name": "TIERGATE_ALLOW_FAULTS", "value": "1"},
            {"name": "TIERGATE_MAX_ATTEMPTS", "value": "1"},
        ]
        patch_tier(kube_api, namespace, "bulk", {"spec": {"template": template}})
        wait_for(
            lambda: status_of(kube_api, namespace).get("phase") == "RolledBack",
            timeout=300,
            interval=1,
            what="the bad revision rolled back",
        )

        # A malformed request, and a customer over its rate: the API's refusals.
        headers = {"Authorization": f"Bearer {BURST_TOKEN}"}
        malformed = {**headers, "Content-Type": "application/json"}
        assert httpx.post(f"{api_url}/v1/messages", content=b"{", headers=malformed).status_code == 400
        message = {"sender_id": "TIERGATE", "body": "hi", "traffic_class": "bulk"}
        # Two batches of 40 in the same second: the first fits the burst of 50, the second does not.
        for first in (0, 40):
            burst = [{**message, "destination": f"+49151123{first + n:05d}"} for n in range(40)]
            answer = httpx.post(f"{api_url}/v1/messages:batch", json={"messages": burst}, headers=headers)
        assert answer.status_code == 429, answer.text

        env = {"TIERGATE_REPLAY_URL": replay_url, "TIERGATE_REPLAY_TOKEN": REPLAY_TOKEN}
        for args in (
            ["--from-halt", "bulk", "-n", namespace, "--kubeconfig", str(kubeconfig_path)],
            ["--tier", "bulk", "--allow-concurrent"],
        ):
            done = subprocess.run(
                [TIERGATE, "replay", "start", *args, "--wait", "-o", "json"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr

        wanted = one_per_family()
        wait_for(
            lambda: wanted <= present(prom),
            timeout=180,
            interval=1,
            what=lambda: f"every metric family scraped: missing {sorted(wanted - present(prom))}",
        )
        yield Demo(prom, namespace, op, started)
    except BaseException:
        sys.stderr.write(procs.logs() + f"\n--- operator ---\n{op.logs()[-3000:]}\n")
        raise
    finally:
        op.stop()
        procs.stop()
        prom.stop()
        client.CustomObjectsApi(kube_api).delete_collection_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )
        core.delete_namespace(namespace)


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of the shipped file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def panel_targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every dashboard panel."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def substitute(expr: str) -> str:
    """The query as Grafana would send it, variables replaced."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown dashboard variable ${name}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def instant(prom: PrometheusServer, promql: str) -> dict[str, Any]:
    """The raw answer of an instant query (status, error, data)."""
    answer: dict[str, Any] = httpx.get(
        f"{prom.url}/api/v1/query", params={"query": promql}, timeout=30
    ).json()
    return answer


def metric_names(expr: str) -> set[str]:
    """The tiergate metric names an expression reads."""
    return set(re.findall(r"\btiergate_[a-z_]+\b", expr))


def without_thresholds(expr: str) -> str:
    """The expression with every comparison against a number removed: the values alerts judge."""
    return re.sub(r"\s*(==|!=|>=|<=|>|<)\s*-?[0-9.]+(e[0-9]+)?", "", expr)


def test_every_family_the_code_exports_is_scraped(demo: Demo) -> None:
    assert one_per_family() <= present(demo.prometheus)


def test_every_rule_is_loaded_healthy_and_evaluated(demo: Demo) -> None:
    expected = {r["alert"] for r in alert_rules()}

    def loaded() -> dict[str, dict[str, Any]] | None:
        data = httpx.get(f"{demo.prometheus.url}/api/v1/rules", timeout=10).json()["data"]
        rules = {r["name"]: r for g in data["groups"] for r in g["rules"]}
        evaluated = all(not r["lastEvaluation"].startswith("0001-") for r in rules.values())
        return rules if expected <= rules.keys() and evaluated else None

    rules = wait_for(loaded, timeout=60, interval=1, what="every rule loaded and evaluated")
    for name in expected:
        assert rules[name]["health"] == "ok", rules[name]
        assert not rules[name].get("lastError"), rules[name]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_expressions_parse_and_read_series_that_exist(demo: Demo, rule: dict[str, Any]) -> None:
    answer = instant(demo.prometheus, rule["expr"])
    assert answer["status"] == "success", answer
    for name in metric_names(rule["expr"]):
        # Over the run, as present() does: a worker's series pause while its pod is replaced.
        seen = demo.prometheus.query(f"count(last_over_time({name}[15m]))")
        assert seen, f"{rule['alert']} reads {name}, which has no series"
    if "absent(" not in rule["expr"] and "unless" not in rule["expr"]:
        values = instant(demo.prometheus, without_thresholds(rule["expr"]))
        assert values["status"] == "success", values
        assert values["data"]["result"], f"{rule['alert']}: no value to compare on the demo's data"


def test_the_halted_tier_alert_sees_the_rolled_back_tier(demo: Demo) -> None:
    rule = next(r for r in alert_rules() if r["alert"] == "TiergateTierHalted")
    firing = demo.prometheus.query(rule["expr"])
    assert {(s["metric"]["tier"], s["metric"]["phase"]) for s in firing} == {("bulk", "RolledBack")}
    quiet = next(r for r in alert_rules() if r["alert"] == "TiergateOperatorNotReconciling")
    assert demo.prometheus.query(quiet["expr"]) == []


@pytest.mark.parametrize(
    ("title", "expr"), panel_targets(), ids=[f"{t}:{i}" for i, (t, _) in enumerate(panel_targets())]
)
def test_dashboard_queries_return_data_on_the_demo(demo: Demo, title: str, expr: str) -> None:
    # Panels are range queries: over the demo's run, as Grafana would draw it.
    answer = httpx.get(
        f"{demo.prometheus.url}/api/v1/query_range",
        params={"query": substitute(expr), "start": demo.started, "end": time.time(), "step": "2s"},
        timeout=30,
    ).json()
    assert answer["status"] == "success", (title, answer)
    assert answer["data"]["result"], f"panel {title!r}: no data for {substitute(expr)}"
