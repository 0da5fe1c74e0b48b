"""Change control against a real API server and real workers: approval gates, deploy windows, freezes.

The example fleet signs off on readiness alone here (no Prometheus): what is under test is when a
tier may start a release, not how it is judged. Windows are computed from the real clock, so every
test holds whatever the hour it runs at.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.plugins.operator import (
    FLEET_TIERS,
    DeploymentSampler,
    OperatorProcess,
    all_signed_off,
    condition,
    create_tiers,
    example_fleet,
    get_tier,
    patch_tier,
    phases,
    release,
    serving,
    wait_for,
)
from tests.plugins.operator import (
    tiergate_cli as _cli,
)

from tiergate.api.annotations import (
    ANNOTATION_FREEZE_REASON,
    ANNOTATION_FROZEN_BY,
    ANNOTATION_FROZEN_UNTIL,
)
from tiergate.domain.revision import revision_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

GATE = {
    "progressDeadline": "120s",
    "bake": "2s",
    "interval": "1s",
    "failureLimit": 2,
    "watch": "0s",
    "settle": "3s",
}

Fleet = tuple[list[dict[str, Any]], dict[str, str]]


def _status(kube_api: client.ApiClient, namespace: str, tier: str) -> dict[str, Any]:
    return get_tier(kube_api, namespace, tier).get("status") or {}


def _waiting(kube_api: client.ApiClient, namespace: str, tier: str, reason: str) -> bool:
    status = _status(kube_api, namespace, tier)
    ready = condition({"status": status}, "Ready") or {}
    return status.get("phase") == "Waiting" and ready.get("reason") == reason


def _events(kube_api: client.ApiClient, namespace: str, reason: str) -> list[str]:
    items = client.CoreV1Api(kube_api).list_namespaced_event(namespace).items
    return [e.message for e in items if e.reason == reason]


def _window(start: datetime, end: datetime) -> dict[str, Any]:
    """A window on every day from ``start`` to ``end`` (UTC wall clock, minutes)."""
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    return {"days": days, "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timeZone": "UTC"}


@pytest.fixture
def fleet_factory(
    kube_api: client.ApiClient,
    namespace: str,
    sender_env: dict[str, str],
    operator_factory: Callable[..., OperatorProcess],
) -> Callable[..., Fleet]:
    """Start an operator and the example fleet (readiness-only gates), ``tweak``-ed per tier first."""
    operator_factory().start()

    def make(tweak: Callable[[dict[str, Any]], None] = lambda spec: None, wait: bool = True) -> Fleet:
        docs = example_fleet(checks="none", gate=dict(GATE))
        for doc in docs:
            tweak(doc["spec"])
        create_tiers(kube_api, namespace, docs)
        first = {d["metadata"]["name"]: revision_of(d["spec"]["template"]) for d in docs}
        if wait:
            wait_for(lambda: all_signed_off(kube_api, namespace, first), timeout=180, what="first release")
        return docs, first

    return make


def test_a_release_waits_at_the_gated_tier_until_approved_and_an_approval_is_for_one_release(
    kube_api: client.ApiClient, namespace: str, kubeconfig_path: Path, fleet_factory: Callable[..., Fleet]
) -> None:
    def gate_standard(spec: dict[str, Any]) -> None:
        if spec["trafficClass"] == "standard":
            spec["approval"] = "Required"

    docs, first = fleet_factory(gate_standard, wait=False)
    # Release A (the first one) waits at standard; priority waits behind it.
    wait_for(
        lambda: _waiting(kube_api, namespace, "standard", "AwaitingApproval"), timeout=120, what="awaits A"
    )
    release_a = first["standard"]
    assert _status(kube_api, namespace, "standard")["message"] == (
        f"Waiting: release {release_a} awaits approval (tiergate approve standard)"
    )
    assert _status(kube_api, namespace, "priority")["phase"] == "Waiting"
    time.sleep(3)
    assert _waiting(kube_api, namespace, "standard", "AwaitingApproval")

    out = _cli(kubeconfig_path, namespace, "approve", "standard", "--who", "alice")
    assert f"approved release {release_a}" in out
    wait_for(
        lambda: all_signed_off(kube_api, namespace, first), timeout=180, what="A approved and signed off"
    )
    approval = _status(kube_api, namespace, "standard")["approval"]
    assert (approval["release"], approval["by"]) == (release_a, "alice")
    assert any("approved by alice" in m for m in _events(kube_api, namespace, "Approved"))

    # Release B: the approval of A (still on the object) does not approve it.
    with DeploymentSampler(kube_api, namespace) as sampler:
        second = release(kube_api, namespace, docs, RELEASE="B")
        wait_for(
            lambda: _waiting(kube_api, namespace, "standard", "AwaitingApproval"),
            timeout=120,
            what="awaits B",
        )
        assert (
            f"release {second['standard']} awaits approval"
            in _status(kube_api, namespace, "standard")["message"]
        )
        time.sleep(3)
        assert _waiting(kube_api, namespace, "standard", "AwaitingApproval")
        assert _status(kube_api, namespace, "bulk")["signedOffRevision"] == second["bulk"]
    assert not sampler.ever_ran("standard", second["standard"])
    assert not sampler.ever_ran("priority", second["priority"])
    _cli(kubeconfig_path, namespace, "approve", "standard", "--who", "bob")
    wait_for(
        lambda: all_signed_off(kube_api, namespace, second), timeout=180, what="B approved and signed off"
    )
    assert _status(kube_api, namespace, "standard")["approval"]["release"] == second["standard"]


def test_a_release_outside_the_window_waits_with_the_next_opening_and_a_rollback_still_happens(
    kube_api: client.ApiClient, namespace: str, fleet_factory: Callable[..., Fleet]
) -> None:
    docs, first = fleet_factory()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    opens = now + timedelta(hours=2)
    closed = [_window(opens, opens + timedelta(hours=1))]
    patch_tier(
        kube_api,
        namespace,
        "bulk",
        {"spec": {"deployWindows": closed, "healthGate": {"progressDeadline": "15s"}}},
    )
    with DeploymentSampler(kube_api, namespace) as sampler:
        bad = release(kube_api, namespace, docs, TIERGATE_FAULTS="no-bind", TIERGATE_ALLOW_FAULTS="1")
        wait_for(lambda: _waiting(kube_api, namespace, "bulk", "OutsideWindow"), timeout=60, what="outside")
        message = _status(kube_api, namespace, "bulk")["message"]
        assert message == (
            f"Waiting: outside its deploy windows; next window opens {opens.isoformat()} (UTC)"
        ), message
        time.sleep(3)
        assert _waiting(kube_api, namespace, "bulk", "OutsideWindow")
        assert not sampler.ever_ran("bulk", bad["bulk"])

        # The window opens: the bad release starts; then the window closes while it runs.
        patch_tier(
            kube_api,
            namespace,
            "bulk",
            {"spec": {"deployWindows": [_window(now - timedelta(hours=1), now + timedelta(hours=1))]}},
        )
        wait_for(lambda: sampler.ever_ran("bulk", bad["bulk"]), timeout=60, what="bad release started")
        patch_tier(kube_api, namespace, "bulk", {"spec": {"deployWindows": closed}})
        wait_for(lambda: phases(kube_api, namespace)["bulk"] == "RolledBack", timeout=90, what="rolled back")
        wait_for(lambda: serving(kube_api, namespace, "bulk", first["bulk"]), timeout=60, what="bulk back")
    bulk = get_tier(kube_api, namespace, "bulk")
    assert bulk["spec"]["deployWindows"] == closed
    assert bulk["status"]["halt"]["check"] == "progressDeadline"
    for tier in ("standard", "priority"):
        assert not sampler.ever_ran(tier, bad[tier]), f"{tier} held the bad template"


def test_freeze_and_unfreeze_through_the_cli(
    kube_api: client.ApiClient, namespace: str, kubeconfig_path: Path, fleet_factory: Callable[..., Fleet]
) -> None:
    docs, _ = fleet_factory()
    out = _cli(
        kubeconfig_path,
        namespace,
        "freeze",
        "sms-senders",
        "--until",
        "1h",
        "--why",
        "incident 42",
        "--who",
        "carol",
    )
    stamp = get_tier(kube_api, namespace, "bulk")["metadata"]["annotations"][ANNOTATION_FROZEN_UNTIL]
    assert out == f"froze fleet sms-senders until {stamp}: {', '.join(FLEET_TIERS)}\n"
    left = datetime.fromisoformat(stamp.replace("Z", "+00:00")) - datetime.now(UTC)
    assert timedelta(minutes=58) < left <= timedelta(hours=1)
    for tier in FLEET_TIERS:
        notes = get_tier(kube_api, namespace, tier)["metadata"]["annotations"]
        assert notes[ANNOTATION_FROZEN_UNTIL] == stamp
        assert (notes[ANNOTATION_FREEZE_REASON], notes[ANNOTATION_FROZEN_BY]) == ("incident 42", "carol")
    with DeploymentSampler(kube_api, namespace) as sampler:
        second = release(kube_api, namespace, docs, RELEASE="2")
        wait_for(lambda: _waiting(kube_api, namespace, "bulk", "Frozen"), timeout=60, what="frozen")
        shown = datetime.fromisoformat(stamp.replace("Z", "+00:00")).isoformat()
        assert _status(kube_api, namespace, "bulk")["message"] == (
            f"Waiting: the fleet is frozen by carol until {shown}: incident 42"
        )
        time.sleep(3)
        assert _waiting(kube_api, namespace, "bulk", "Frozen")
        assert any("frozen by carol" in m for m in _events(kube_api, namespace, "Frozen"))
    assert all(not sampler.ever_ran(t, second[t]) for t in FLEET_TIERS)
    rows = json.loads(_cli(kubeconfig_path, namespace, "status", "sms-senders", "-o", "json"))
    assert all(r["annotations"][ANNOTATION_FROZEN_UNTIL] == stamp for r in rows)

    out = _cli(kubeconfig_path, namespace, "unfreeze", "sms-senders")
    assert out == f"unfroze fleet sms-senders: {', '.join(FLEET_TIERS)}\n"
    for tier in FLEET_TIERS:
        notes = get_tier(kube_api, namespace, tier)["metadata"].get("annotations") or {}
        assert not {ANNOTATION_FROZEN_UNTIL, ANNOTATION_FREEZE_REASON, ANNOTATION_FROZEN_BY} & set(notes)
    wait_for(lambda: all_signed_off(kube_api, namespace, second), timeout=180, what="unfrozen release")


BAD_WINDOWS = [
    ("day", {"days": ["Monday"]}, 'Unsupported value: "Monday"'),
    ("start", {"start": "9am"}, "start must be HH:MM on a 24-hour clock"),
    ("end", {"end": "25:00"}, "end must be HH:MM on a 24-hour clock"),
    ("empty", {"end": "09:00"}, "start and end must differ"),
    ("zone", {"timeZone": ""}, "timeZone must name an IANA time zone"),
    ("twice", {"days": ["Mon", "Mon"]}, "name each day at most once"),
]


@pytest.mark.parametrize(("case", "change", "needle"), BAD_WINDOWS, ids=[c[0] for c in BAD_WINDOWS])
def test_a_bad_deploy_window_is_refused_with_a_readable_message(
    crd: None, kube_api: client.ApiClient, namespace: str, case: str, change: dict[str, Any], needle: str
) -> None:
    doc = copy.deepcopy(example_fleet()[0])
    doc["spec"]["deployWindows"] = [
        {"days": ["Mon"], "start": "09:00", "end": "15:00", "timeZone": "UTC"} | change
    ]
    with pytest.raises(ApiException) as refused:
        create_tiers(kube_api, namespace, [doc])
    assert refused.value.status == 422, refused.value.body
    message = json.loads(refused.value.body)["message"]
    assert needle in message, f"{case}: {message}"


def test_an_unknown_time_zone_is_an_invalid_spec(
    kube_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    doc = copy.deepcopy(example_fleet()[0])
    doc["spec"]["deployWindows"] = [
        {"days": ["Mon"], "start": "09:00", "end": "15:00", "timeZone": "Mars/Olympus"}
    ]
    create_tiers(kube_api, namespace, [doc])

    def invalid() -> dict[str, Any] | None:
        return condition(get_tier(kube_api, namespace, "bulk"), "InvalidSpec")

    wait_for(lambda: invalid() is not None, timeout=60, what="InvalidSpec")
    found = invalid()
    assert found is not None and found["status"] == "True"
    assert "unknown time zone 'Mars/Olympus'" in found["message"]
    assert not client.AppsV1Api(kube_api).list_namespaced_deployment(namespace).items
