"""One drill run: a fleet with steady traffic, a bad release to every tier at once, and what followed.

Two modes, and a third in one scenario. ``baseline`` is 2020: plain Deployments (readiness only
says the process lives, the default rolling update, no operator), the release patched into all of
them at once, a person who notices after a stated delay, rolls every tier back by hand and replays
the discards by hand. ``tiergate`` is the same fleet as SenderTiers under the operator, with the
health stack as the gate, automatic halt and rollback and ``spec.replay.auto``. ``tiergate-canary`` is
``tiergate`` with ``healthGate.canary: {percent: 25}`` on every tier, and enough pods per tier
that a quarter is a pod (four): it runs in ``fail-share`` only, where the bad release's pods are
Ready and only its own error series can tell. Three bad releases: ``no-bind``
(workers start but never bind upstream), ``fail-share`` (workers bind, then fail a share of
submits; only the Prometheus error-rate check sees it) and ``late-failure`` (the same share of
failed submits, but only from two minutes after each worker starts: the release passes tier 0's
bake and reaches every tier; the watch after sign-off and the fleet policy must bring it back).

While a run goes, samplers record pods, Deployments, SenderTier status and queue depth; at the
end every accepted message is looked up in the store (through `Store`, so on either engine).
Nothing is judged here: the recording goes to `tiergate_kits.drill.analysis`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tiergate.api.v1alpha1 import GROUP, PLURAL, VERSION, SenderTier
from tiergate.clients.replay import ReplayClient
from tiergate.domain.revision import revision_of
from tiergate.domain.workload import LABEL_REVISION, LABEL_TIER, canary_name, deployment_manifest
from tiergate.store import DiscardEvent, DiscardFilter, MessageState, Store, StoreError, open_store
from tiergate_kits.drill import argo
from tiergate_kits.drill.analysis import (
    MARK_DETECTED,
    MARK_HALTED,
    MARK_HUMAN,
    MARK_ONSET,
    MARK_RECOVERED,
    MARK_RELEASE,
    MARK_REPLAY_DONE,
    MARK_REPLAY_STARTED,
    MARK_STEADY,
    MARK_TIER_RESTORED,
    MARK_TRAFFIC_END,
    DiscardRow,
    Fate,
    Mark,
    QueueSample,
    Recording,
    Window,
    first_mark,
)
from tiergate_kits.drill.argo import MODE as ARGO
from tiergate_kits.drill.stack import (
    CLASSES,
    ONCALL_TOKEN,
    ROOT,
    RunStack,
    SharedStack,
    StackError,
    wait_until,
)
from tiergate_kits.drill.traffic import Traffic, customer_tokens
from tiergate_kits.helpers import create_fleet_env, quick_checks, with_env

log = logging.getLogger("tiergate_kits.drill")

MODES = ("baseline", "tiergate", ARGO)
CANARY_MODE = "tiergate-canary"
# Modes beyond those that run in every scenario, and the scenarios they run in.
EXTRA_MODES: Mapping[str, tuple[str, ...]] = {CANARY_MODE: ("fail-share",)}
ALL_MODES = (*MODES, *EXTRA_MODES)
OPERATED = ("tiergate", CANARY_MODE)
SCENARIOS = ("no-bind", "fail-share", "late-failure")
# What ``--short`` runs when no scenario is named: the CI drill keeps its time. A short
# late-failure runs when asked for by name.
SHORT_SCENARIOS = ("no-bind", "fail-share")
LATE = "late-failure"
RECEIPT_WAIT = 20.0
STORE_READ_TIMEOUT = 120.0
REPLAY_ENDED = ("done", "failed", "cancelled")
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """What a drill runs with; every value is reported with the results."""

    rate: float = 200.0
    shares: Mapping[str, float] = field(
        default_factory=lambda: {"bulk": 0.6, "standard": 0.3, "priority": 0.1}
    )
    customers: int = 40
    replicas: int = 2
    queue_seconds: float = 30.0
    fail_share: float = 0.5
    max_attempts: int = 3
    # 10 s of steady state (2,000 messages at 200/s) set the normal delay; 5 s after every
    # tier is back show traffic flowing again. Both were longer (20 s, 15 s) until the third
    # contender, which made the full drill too long for 25 minutes; neither changes a measure.
    warmup: float = 10.0
    detection_delay: float = 120.0
    observe: float = 5.0
    drain_timeout: float = 240.0
    progress_deadline: int = 30
    bake: int = 10
    interval: int = 2
    failure_limit: int = 2
    error_window: int = 30
    watch: int = 300
    late_after: float = 120.0
    canary_percent: int = 25
    canary_tier_replicas: int = 4

    @property
    def max_queue_depth(self) -> int:
        """The API's per-class queue limit: ``queue_seconds`` of the whole drill's traffic."""
        return int(self.queue_seconds * self.rate)

    def public(self) -> dict[str, Any]:
        """The settings for the report."""
        out = {k: v for k, v in self.__dict__.items() if k != "shares"}
        out["shares"] = dict(self.shares)
        out["max_queue_depth"] = self.max_queue_depth
        return out


SHORT = {
    "rate": 100.0,
    "replicas": 1,
    "warmup": 8.0,
    "detection_delay": 15.0,
    "observe": 4.0,
    "drain_timeout": 120.0,
    "progress_deadline": 15,
    "bake": 3,
    "interval": 1,
    "error_window": 15,
    "watch": 90,
    "late_after": 30.0,
}


def runs_in(mode: str, scenario: str) -> bool:
    """Whether a mode runs in a scenario: the two modes in every one, an extra mode in its own."""
    return scenario in EXTRA_MODES.get(mode, SCENARIOS)


def operated(mode: str) -> bool:
    """Whether the mode's fleet is SenderTiers under the operator."""
    return mode in OPERATED


def tier_replicas(settings: Settings, mode: str) -> int:
    """Worker pods per tier: ``replicas``, and at least ``canary_tier_replicas`` in the canary mode."""
    if mode == CANARY_MODE:
        return max(settings.replicas, settings.canary_tier_replicas)
    return settings.replicas


def fleet_docs(settings: Settings, mode: str) -> list[dict[str, Any]]:
    """The example fleet with the drill's gate, checks, replicas and retry budget (and canary)."""
    docs = [
        d for d in yaml.safe_load_all((ROOT / "examples" / "fleet" / "sendertiers.yaml").read_text()) if d
    ]
    checks = quick_checks(f"{settings.error_window}s", min_evidence=10, min_ratio=1)
    for doc in docs:
        spec = doc["spec"]
        spec["replicas"] = tier_replicas(settings, mode)
        spec["healthGate"] = {
            "progressDeadline": f"{settings.progress_deadline}s",
            "bake": f"{settings.bake}s",
            "interval": f"{settings.interval}s",
            "failureLimit": settings.failure_limit,
            "watch": f"{settings.watch}s",
            "checks": copy.deepcopy(checks),
        }
        if mode == CANARY_MODE:
            spec["healthGate"]["canary"] = {"percent": settings.canary_percent}
        spec["replay"] = {"auto": operated(mode)}
        spec["template"] = with_env(spec["template"], TIERGATE_MAX_ATTEMPTS=str(settings.max_attempts))
    return docs


def bad_env(scenario: str, settings: Settings) -> dict[str, str]:
    """The fault switch of the bad release."""
    fault = "no-bind" if scenario == "no-bind" else f"fail-submits={settings.fail_share:g}"
    if scenario == LATE:
        fault += f",fail-after={settings.late_after:g}"
    return {"TIERGATE_FAULTS": fault, "TIERGATE_ALLOW_FAULTS": "1"}


def fail_after(scenario: str, settings: Settings) -> float:
    """Seconds from a bad worker's start to its failure."""
    return settings.late_after if scenario == LATE else 0.0


def baseline_deployment(
    doc: Mapping[str, Any], namespace: str, template: Mapping[str, Any]
) -> dict[str, Any]:
    """A 2020-style Deployment: the tier's workers, readiness = process alive, default rolling update."""
    tier = SenderTier.model_validate({**doc, "metadata": {**doc["metadata"], "namespace": namespace}})
    shallow = copy.deepcopy(dict(template))
    for container in shallow["spec"]["containers"]:
        if "readinessProbe" in container:
            container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2}
    body = deployment_manifest(tier, shallow, revision_of(template), tier.spec.replicas)
    body["metadata"].pop("ownerReferences", None)
    body["metadata"].pop("annotations", None)
    body["spec"].pop("strategy", None)
    return body


class Sampler:
    """Every half second: pods, Deployments and SenderTiers of the namespace, and queue depth.

    A tier's pods are those with its tier label, the canary Deployment's (``<tier>-canary``)
    among them; which release a pod runs is its revision label.
    """

    def __init__(
        self, api: client.ApiClient, namespace: str, store: StoreView, tiergate: bool, rollouts: int = 0
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.store = store
        self.tiergate = tiergate
        self.rollouts = rollouts
        self.pods: list[tuple[float, dict[str, set[str]]]] = []
        self.ready: list[tuple[float, dict[str, set[str]]]] = []
        self.counts: list[tuple[float, dict[tuple[str, str], int]]] = []
        self.deployments: list[tuple[float, dict[str, tuple[str | None, int, int]]]] = []
        self.tiers: list[tuple[float, dict[str, dict[str, Any]]]] = []
        self.queue: list[QueueSample] = []
        self.started: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-sampler", daemon=True)

    def start(self) -> Sampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except (ApiException, StoreError, OSError) as exc:
                log.debug("Drill sample failed namespace=%s error=%r", self.namespace, exc)
            self._stop.wait(0.5)

    def _sample(self) -> None:
        now = time.time()
        pods: dict[str, set[str]] = {}
        ready: dict[str, set[str]] = {}
        counts: dict[tuple[str, str], int] = {}
        pod_items = self.core.list_namespaced_pod(self.namespace).items
        for pod in pod_items:
            labels = pod.metadata.labels or {}
            if LABEL_TIER in labels:
                revision = labels.get(LABEL_REVISION, "")
                pods.setdefault(labels[LABEL_TIER], set()).add(revision)
                key = (labels[LABEL_TIER], revision)
                counts[key] = counts.get(key, 0) + 1
                self._note_start(labels[LABEL_TIER], revision, pod)
                if _ready(pod):
                    ready.setdefault(labels[LABEL_TIER], set()).add(revision)
        self.pods.append((now, pods))
        self.ready.append((now, ready))
        self.counts.append((now, counts))
        deps = (
            argo.pod_workloads(pod_items, self.rollouts)
            if self.rollouts
            else {
                d.metadata.name: (
                    (d.spec.template.metadata.labels or {}).get(LABEL_REVISION),
                    d.spec.replicas or 0,
                    d.status.ready_replicas or 0,
                )
                for d in self.apps.list_namespaced_deployment(self.namespace).items
            }
        )
        self.deployments.append((now, deps))
        if self.tiergate:
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]
            self.tiers.append((now, {t["metadata"]["name"]: t.get("status") or {} for t in items}))
        self.queue.append(QueueSample(now, self.store.queue_depths()))

    def _note_start(self, tier: str, revision: str, pod: Any) -> None:
        for status in pod.status.container_statuses or []:
            running = status.state.running if status.state else None
            if running is not None and running.started_at is not None:
                at = running.started_at.timestamp()
                key = (tier, revision)
                self.started[key] = min(at, self.started.get(key, at))

    def first_start(self, revisions: Mapping[str, str]) -> float | None:
        """When the first worker container of any tier's given revision started."""
        times = [at for (tier, rev), at in self.started.items() if revisions.get(tier) == rev]
        return min(times) if times else None

    def restored(self, bad: Mapping[str, str], good: Mapping[str, str]) -> dict[str, float]:
        """When each tier, after its bad revision, was back on its good one with all replicas Ready.

        The bad revision may have run on the tier's Deployment or on its canary Deployment. Back
        means the tier's Deployment holds the good revision with every replica Ready, no pod of the
        tier on the bad revision is Ready (a Deployment's Ready count includes the old pods still
        draining after a rollback) and the canary Deployment, if any, has no pod of the bad one.
        """
        ready_at = dict(self.ready)
        out: dict[str, float] = {}
        for tier, revision in bad.items():
            seen_bad = False
            for at, deps in self.deployments:
                serving = ready_at.get(at)
                if serving is None:
                    continue
                held, replicas, ready = deps.get(tier, (None, 0, 0))
                c_held, c_replicas, c_ready = deps.get(canary_name(tier), (None, 0, 0))
                canary_bad = c_held == revision and (c_replicas > 0 or c_ready > 0)
                bad_ready = revision in serving.get(tier, set())
                if held == revision or canary_bad or bad_ready:
                    seen_bad = True
                elif seen_bad and held == good.get(tier) and ready >= replicas:
                    out[tier] = at
                    break
        return out

    def most_pods(self, revisions: Mapping[str, str]) -> dict[str, int]:
        """The most pods of each tier's given revision seen at once (canary pods among them)."""
        return {
            tier: max((c.get((tier, rev), 0) for _, c in self.counts), default=0)
            for tier, rev in revisions.items()
        }

    def bad_windows(self, bad: Mapping[str, str], classes: Mapping[str, str]) -> list[Window]:
        """Spans in which a tier had Ready pods of its bad revision, i.e. serving its traffic."""
        windows: list[Window] = []
        for tier, revision in bad.items():
            start: float | None = None
            last = 0.0
            for at, pods in self.ready:
                present = revision in pods.get(tier, set())
                if present and start is None:
                    start = at
                if not present and start is not None:
                    windows.append(Window(classes[tier], start, at))
                    start = None
                last = at
            if start is not None:
                windows.append(Window(classes[tier], start, last))
        return windows

    def ever_ran(self, tier: str, revision: str) -> bool:
        """Whether any sample saw a pod of the tier at the revision."""
        return any(revision in pods.get(tier, set()) for _, pods in self.pods)


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class StoreView:
    """The drill's reads of a run's store, through `Store` (so on either engine).

    The drill is threaded, the store is asynchronous: one store stays open on a private
    event loop thread, and each read is handed to it.
    """

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="drill-store", daemon=True)
        self._thread.start()
        self._store: Store = self._call(open_store(url))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(STORE_READ_TIMEOUT)

    def queue_depths(self) -> dict[str, int]:
        """Queued plus in-flight messages per traffic class."""
        return {tc: stats.depth for tc, stats in self._call(self._store.queue_stats()).items()}

    def unfinished(
        self, states: tuple[MessageState, ...] = (MessageState.QUEUED, MessageState.IN_FLIGHT)
    ) -> int:
        """Messages still in one of ``states``."""
        counts = self._call(self._store.count_states())
        return sum(counts.get(state, 0) for state in states)

    def read_fates(self, bad_revisions: frozenset[str]) -> tuple[dict[str, Fate], list[DiscardRow]]:
        """Every message's final state (and whether a bad revision leased it), and every discard."""
        fates = {
            f.id: Fate(f.id, f.state, _epoch(f.delivered_at), bool(f.leased_by), f.replay_count)
            for f in self._call(self._store.message_fates(bad_revisions))
        }
        discards = [
            DiscardRow(d.message_id, d.revision, d.reason, d.discarded_at.timestamp(), _epoch(d.replayed_at))
            for d in self._call(self._all_discards())
        ]
        discards.sort(key=lambda d: d.discarded_at)
        return fates, discards

    async def _all_discards(self) -> list[DiscardEvent]:
        items: list[DiscardEvent] = []
        cursor: str | None = None
        while True:
            page = await self._store.list_discards(DiscardFilter(), limit=1000, cursor=cursor)
            items.extend(page.items)
            if page.next_cursor is None:
                return items
            cursor = page.next_cursor

    def close(self) -> None:
        """Close the store and stop its thread."""
        try:
            self._call(self._store.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STORE_READ_TIMEOUT)
            self._loop.close()


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


class Run:
    """One scenario in one mode, from an empty namespace and store to a `Recording`."""

    def __init__(
        self, shared: SharedStack, settings: Settings, scenario: str, mode: str, index: int, workdir: Path
    ) -> None:
        assert shared.api is not None
        self.shared = shared
        self.api = shared.api
        self.settings = settings
        self.scenario = scenario
        self.mode = mode
        self.index = index
        self.namespace = f"drill-{index}-{mode}-{scenario}"
        self.marks: list[Mark] = []
        self.docs = fleet_docs(settings, mode)
        self.classes = {d["metadata"]["name"]: d["spec"]["trafficClass"] for d in self.docs}
        self.first_tier = min(self.docs, key=lambda d: d["spec"]["order"])["metadata"]["name"]
        self.good = {d["metadata"]["name"]: revision_of(d["spec"]["template"]) for d in self.docs}
        self.bad: dict[str, str] = {}
        self.stack = RunStack(shared, workdir, customer_tokens(settings.customers), settings.max_queue_depth)
        self.argo = argo.ArgoFleet(self.api, self.namespace, settings, shared.prometheus_url)

    def mark(self, kind: str, label: str, at: float | None = None) -> None:
        """Record that something happened."""
        self.marks.append(Mark(time.time() if at is None else at, kind, label))
        log.info("Drill event namespace=%s kind=%s label=%s", self.namespace, kind, label)

    def execute(self) -> Recording:
        """Run the scenario and return what it recorded."""
        core = client.CoreV1Api(self.api)
        core.create_namespace({"metadata": {"name": self.namespace, "labels": {"tiergate.io/drill": "true"}}})
        wait_until(lambda: core.read_namespaced_service_account("default", self.namespace), 30, "namespace")
        create_fleet_env(self.api, self.namespace, self.stack.store_url, self.shared.smsc_url)
        try:
            return self._execute(core)
        except BaseException:
            self.stack.stop()
            raise

    def _execute(self, core: client.CoreV1Api) -> Recording:
        self.stack.start()
        smsc_before = self.shared.smsc_stats()
        if operated(self.mode):
            self.stack.start_operator(self.namespace)
        view = StoreView(self.stack.store_url)
        try:
            return self._observe(core, view, smsc_before)
        finally:
            view.close()

    def _observe(self, core: client.CoreV1Api, view: StoreView, smsc_before: Mapping[str, Any]) -> Recording:
        rollouts = self.settings.replicas if self.mode == ARGO else 0
        sampler = Sampler(self.api, self.namespace, view, operated(self.mode), rollouts).start()
        traffic = Traffic(
            self.stack.api_url, self.stack.tokens, self.settings.rate, self.settings.shares, self.index
        ).start()
        try:
            self._deploy_fleet()
            self.mark(MARK_STEADY, "steady")
            time.sleep(self.settings.warmup)
            self._release()
            if self.mode == "baseline":
                self._baseline_response(sampler)
            elif self.mode == ARGO:
                argo.respond(self, sampler, self.argo)
                asyncio.run(self._manual_replay())
            else:
                self._tiergate_response(sampler)
            time.sleep(self.settings.observe)
        finally:
            traffic.stop()
            self.mark(MARK_TRAFFIC_END, "traffic stops")
        try:
            wait_until(lambda: view.unfinished() == 0, self.settings.drain_timeout, "queues drained", 1.0)
            submitted = (MessageState.SUBMITTED,)
            wait_until(lambda: view.unfinished(submitted) == 0, RECEIPT_WAIT, "receipts", 1.0)
        except StackError as exc:
            log.warning("Drill drain incomplete namespace=%s error=%s", self.namespace, exc)
        sampler.stop()
        if first_mark(self.marks, MARK_ONSET) is None and (start := sampler.first_start(self.bad)):
            self.mark(MARK_ONSET, "failure begins", start + fail_after(self.scenario, self.settings))
        for tier, at in sorted(sampler.restored(self.bad, self.good).items(), key=lambda kv: kv[1]):
            self.mark(MARK_TIER_RESTORED, tier, at)
        smsc_after = self.shared.smsc_stats()
        beyond = self._bad_beyond_first(sampler)
        fates, discards = view.read_fates(frozenset(self.bad.values()))
        self._teardown(core)
        return Recording(
            mode=self.mode,
            scenario=self.scenario,
            classes=CLASSES,
            sent=list(traffic.sent),
            fates=fates,
            discards=discards,
            marks=list(self.marks),
            bad_windows=sampler.bad_windows(self.bad, self.classes),
            queue=sampler.queue,
            bad_revisions=frozenset(self.bad.values()),
            smsc_duplicates=int(smsc_after.get("duplicates", 0)) - int(smsc_before.get("duplicates", 0)),
            tiers_beyond_first_with_bad=beyond,
            bad_pods_max=sampler.most_pods(self.bad),
            params={
                "namespace": self.namespace,
                "good": self.good,
                "bad": self.bad,
                "replicas": tier_replicas(self.settings, self.mode),
                "canary": self.docs[0]["spec"]["healthGate"].get("canary"),
            },
        )

    def _deploy_fleet(self) -> None:
        if self.mode == ARGO:
            self.argo.deploy(self.docs)
            wait_until(
                lambda: argo.serving(self.api, self.namespace, self.good, self.settings.replicas),
                240,
                "Argo Rollouts fleet ready",
                1.0,
            )
            return
        if self.mode == "baseline":
            apps = client.AppsV1Api(self.api)
            for doc in self.docs:
                apps.create_namespaced_deployment(
                    self.namespace, baseline_deployment(doc, self.namespace, doc["spec"]["template"])
                )
            wait_until(lambda: self._serving(self.good), 240, "baseline fleet ready", 1.0)
            return
        custom = client.CustomObjectsApi(self.api)
        for doc in self.docs:
            custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, doc)
        wait_until(lambda: self._signed_off(self.good), 300, "fleet signed off", 1.0)

    def _serving(self, revisions: Mapping[str, str]) -> bool:
        """Every tier's Deployment holds its revision with every replica Ready, and no other pods remain."""
        apps = client.AppsV1Api(self.api)
        for tier, revision in revisions.items():
            try:
                dep = apps.read_namespaced_deployment(tier, self.namespace)
            except ApiException:
                return False
            held = (dep.spec.template.metadata.labels or {}).get(LABEL_REVISION)
            if held != revision or (dep.status.ready_replicas or 0) < (dep.spec.replicas or 0):
                return False
        pods = client.CoreV1Api(self.api).list_namespaced_pod(self.namespace).items
        return all(
            (p.metadata.labels or {}).get(LABEL_REVISION)
            == revisions.get((p.metadata.labels or {}).get(LABEL_TIER, ""))
            for p in pods
            if LABEL_TIER in (p.metadata.labels or {})
        )

    def _tier(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return obj

    def _signed_off(self, revisions: Mapping[str, str]) -> bool:
        for tier, revision in revisions.items():
            status = self._tier(tier).get("status") or {}
            if status.get("phase") != "SignedOff" or status.get("signedOffRevision") != revision:
                return False
        return True

    def _release(self) -> None:
        """Patch the bad release into every tier in one go, as a GitOps sync would."""
        env = bad_env(self.scenario, self.settings)
        templates = {d["metadata"]["name"]: with_env(d["spec"]["template"], **env) for d in self.docs}
        self.bad = {tier: revision_of(t) for tier, t in templates.items()}
        self.mark(MARK_RELEASE, f"bad release ({self.scenario}) to all tiers")
        if self.mode == "baseline":
            apps = client.AppsV1Api(self.api)
            for doc in self.docs:
                body = baseline_deployment(doc, self.namespace, templates[doc["metadata"]["name"]])
                apps.replace_namespaced_deployment(doc["metadata"]["name"], self.namespace, body)
            return
        if self.mode == ARGO:
            self.argo.apply(self.docs, templates)
            return
        custom = client.CustomObjectsApi(self.api)
        for name, template in templates.items():
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"template": template}}
            )

    def _baseline_response(self, sampler: Sampler) -> None:
        """What a person does in 2020: notice after the stated delay, roll back, replay by hand.

        The delay runs from the failure's onset: the release itself for a failure at start,
        the first bad worker's start plus the fault's delay for a late one.
        """
        delay = self.settings.detection_delay
        late = fail_after(self.scenario, self.settings)
        if late:
            start = wait_until(lambda: sampler.first_start(self.bad), 120, "bad workers started", 0.5)
            self.mark(MARK_ONSET, "failure begins", start + late)
            time.sleep(max(0.0, start + late + delay - time.time()))
        else:
            time.sleep(delay)
        self.mark(MARK_DETECTED, f"person notices ({delay:g} s stated delay)")
        self.mark(MARK_HUMAN, "manual rollback of every tier")
        self.mark(MARK_HALTED, "rollout stopped by hand")
        apps = client.AppsV1Api(self.api)
        for doc in self.docs:
            body = baseline_deployment(doc, self.namespace, doc["spec"]["template"])
            apps.replace_namespaced_deployment(doc["metadata"]["name"], self.namespace, body)
        wait_until(lambda: self._serving(self.good), 300, "baseline rolled back", 1.0)
        self.mark(MARK_RECOVERED, "all tiers back on the good release")
        asyncio.run(self._manual_replay())

    async def _manual_replay(self) -> None:
        flt: dict[str, Any] = {"revision": sorted(self.bad.values())}
        async with ReplayClient(self.stack.replay_url, ONCALL_TOKEN) as replay:
            counts = await replay.counts("revision", flt)
            if not counts.get("total"):
                log.info("Drill manual replay not needed namespace=%s discards=0", self.namespace)
                return
            self.mark(MARK_HUMAN, f"manual replay of {counts['total']} discards")
            job = await replay.create_job(flt, source="drill-person")
            self.mark(MARK_REPLAY_STARTED, "replay started (by hand)")
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                job = await replay.get_job(str(job["id"]))
                if job.get("state") in REPLAY_ENDED:
                    break
                await asyncio.sleep(0.5)
            self.mark(MARK_REPLAY_DONE, f"replay {job.get('state')}")

    def _tiergate_response(self, sampler: Sampler) -> None:
        """Nobody acts: watch the operator halt, roll back and hand the discards to replay.

        The tier that halts is the one whose own checks failed (bulk, for a release that fails
        everywhere); the fleet policy may roll back others, and each hands its discards on.
        """

        def own_halt() -> tuple[str, dict[str, Any]] | None:
            for tier in self.bad:
                halt = (self._tier(tier).get("status") or {}).get("halt")
                if halt and halt.get("revision") == self.bad[tier] and not halt.get("haltedBy"):
                    return tier, halt
            return None

        wait = 300 + fail_after(self.scenario, self.settings)
        tier, halt = wait_until(own_halt, wait, "a tier halted", 0.5)
        at = _ts(halt.get("at"))
        self.mark(MARK_DETECTED, f"{halt.get('check')} check fails on {tier}", at)
        self.mark(MARK_HALTED, f"{tier} halted", at)
        wait_until(lambda: self._serving(self.good), 300, "tiers back on the good release", 0.5)
        self.mark(MARK_RECOVERED, "every tier back on the good release")
        halted = [
            t
            for t in self.bad
            if ((self._tier(t).get("status") or {}).get("halt") or {}).get("revision") == self.bad[t]
        ]

        def replay_jobs() -> list[dict[str, Any]] | None:
            jobs = [(self._tier(t).get("status") or {}).get("replayJob") for t in halted]
            mine = [j for t, j in zip(halted, jobs, strict=True) if j and j.get("revision") == self.bad[t]]
            return mine if len(mine) == len(halted) else None

        try:
            jobs = wait_until(replay_jobs, 120, "automatic replay jobs", 0.5)
        except StackError as exc:
            log.warning("Drill saw no automatic replay namespace=%s error=%s", self.namespace, exc)
            return
        created = min(_ts(j.get("createdAt")) or time.time() for j in jobs)
        self.mark(MARK_REPLAY_STARTED, "automatic replay started", created)
        try:
            jobs = wait_until(
                lambda: (
                    (found := replay_jobs()) is not None
                    and all(j.get("state") in REPLAY_ENDED for j in found)
                    and found
                ),
                300,
                "automatic replay done",
                0.5,
            )
            states = sorted({str(j.get("state")) for j in jobs})
            self.mark(MARK_REPLAY_DONE, f"automatic replay {'/'.join(states)}")
        except StackError as exc:
            log.warning("Drill replay unfinished namespace=%s error=%s", self.namespace, exc)

    def _bad_beyond_first(self, sampler: Sampler) -> tuple[str, ...]:
        """Tiers above the first that ever had a pod or ReplicaSet of their bad revision."""
        apps = client.AppsV1Api(self.api)
        out = []
        for tier, revision in self.bad.items():
            if tier == self.first_tier:
                continue
            sets = apps.list_namespaced_replica_set(
                self.namespace, label_selector=f"{LABEL_TIER}={tier}"
            ).items
            in_sets = any((rs.metadata.labels or {}).get(LABEL_REVISION) == revision for rs in sets)
            if in_sets or sampler.ever_ran(tier, revision):
                out.append(tier)
        return tuple(sorted(out))

    def _teardown(self, core: client.CoreV1Api) -> None:
        self.stack.stop()
        try:
            core.delete_namespace(self.namespace)
        except ApiException as exc:
            log.warning("Drill namespace not deleted namespace=%s status=%s", self.namespace, exc.status)
        pods = lambda: not core.list_namespaced_pod(self.namespace).items  # noqa: E731
        try:
            wait_until(pods, 90, "pods of the run gone", 1.0)
        except StackError as exc:
            log.warning("Drill pods linger namespace=%s error=%s", self.namespace, exc)
