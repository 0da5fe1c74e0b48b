"""Notifications against a real API server and real workers: one signed notification per
transition, across an operator killed between the post and the mark and a leader change, and a
receiver that is down holding nothing up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from tests.plugins.notifications import SECRET_NAME, NotificationReceiver
from tests.plugins.operator import (
    OperatorProcess,
    create_tiers,
    example_fleet,
    get_tier,
    release,
    set_gate,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

ARGS = ["--notifications-secret", SECRET_NAME]


def _outbox(kube_api: client.ApiClient, namespace: str, tier: str) -> list[dict[str, Any]]:
    return list((get_tier(kube_api, namespace, tier).get("status") or {}).get("notifications") or [])


def _all_sent(kube_api: client.ApiClient, namespace: str, tier: str) -> bool:
    outbox = _outbox(kube_api, namespace, tier)
    return bool(outbox) and all(r.get("sentAt") and sorted(r["sentTo"]) == ["chat", "oncall"] for r in outbox)


def _exactly_once(
    receiver: NotificationReceiver, kube_api: client.ApiClient, namespace: str, tier: str
) -> None:
    """Every outbox record of the tier reached both receivers under its one id; nothing else did."""
    outbox = {r["id"]: r["kind"] for r in _outbox(kube_api, namespace, tier)}
    hooks = {i: rs for i, rs in receiver.ids("/hook").items() if rs[0].body["tier"] == tier}
    slack = {
        i: rs for i, rs in receiver.ids("/slack").items() if f"`{namespace}/{tier}`" in rs[0].body["text"]
    }
    assert set(hooks) == set(outbox) == set(slack)
    assert all(r.signed for rs in hooks.values() for r in rs), "a webhook post failed its signature"
    assert {i: rs[0].body["kind"] for i, rs in hooks.items()} == outbox
    assert all(len({r.body["kind"] for r in rs}) == 1 for rs in hooks.values())


@pytest.mark.usefixtures("sender_env")
def test_one_signed_notification_per_transition_across_a_kill_between_post_and_mark_and_a_leader_change(
    kube_api: client.ApiClient,
    namespace: str,
    notification_receiver: NotificationReceiver,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    receiver = notification_receiver
    first = operator_factory(extra_args=ARGS, replica="a").start()
    wait_for(lambda: "Acquired leadership" in first.logs(), timeout=60, what="replica a leads")
    second = operator_factory(extra_args=ARGS, replica="b").start()
    wait_for(lambda: "Standing by for leadership" in second.logs(), timeout=60, what="replica b stands by")
    docs = example_fleet()[:1]
    create_tiers(kube_api, namespace, docs)
    wait_for(lambda: receiver.kinds("bulk") == ["SignedOff"], timeout=180, what="the first sign-off notified")
    wait_for(lambda: _all_sent(kube_api, namespace, "bulk"), timeout=30, what="the sign-off marked sent")

    # The next notification's first post is held unanswered; the leader is killed meanwhile.
    receiver.hold_seconds = 30.0
    set_gate(kube_api, namespace, docs, progressDeadline="12s")
    release(kube_api, namespace, docs, TIERGATE_FAULTS="no-bind", TIERGATE_ALLOW_FAULTS="1")
    wait_for(receiver.held.is_set, timeout=120, what="the rollback's notification posted")
    first.kill()
    pending = [r for r in _outbox(kube_api, namespace, "bulk") if not r.get("sentAt")]
    assert [r["kind"] for r in pending] == ["RolledBack"], "posted but not yet marked"
    receiver.hold_seconds = 0.0

    wait_for(lambda: "Acquired leadership" in second.logs(), timeout=90, what="replica b takes over")
    wait_for(lambda: _all_sent(kube_api, namespace, "bulk"), timeout=120, what="the new leader marks it sent")
    (rolled,) = [rs for rs in receiver.ids("/hook").values() if rs[0].body["kind"] == "RolledBack"]
    assert len(rolled) >= 2, "the new leader posted it again, under the same id"
    halt = rolled[0].body["halt"]
    assert halt["check"] == "progressDeadline" and halt["threshold"].endswith("Ready within 12s")
    assert "value" in halt
    slack = receiver.ids("/slack")[rolled[0].id][0].body["text"]
    assert slack.startswith("*RolledBack*: SenderTier `") and "check `progressDeadline`" in slack
    assert receiver.kinds("bulk") == ["SignedOff", "RolledBack"]
    _exactly_once(receiver, kube_api, namespace, "bulk")
    assert "Notification sent" not in second.logs().split("Acquired leadership")[0], "the standby sent"


@pytest.mark.usefixtures("sender_env")
def test_a_receiver_that_is_down_holds_nothing_up_and_gets_its_notifications_later(
    kube_api: client.ApiClient,
    namespace: str,
    notification_receiver: NotificationReceiver,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    receiver = notification_receiver
    receiver.stop()
    operator = operator_factory(extra_args=ARGS).start()
    docs = example_fleet()[:2]
    create_tiers(kube_api, namespace, docs)
    # Both tiers sign off in order while every post fails: reconciles never wait for a receiver.
    wait_for(
        lambda: all(
            (get_tier(kube_api, namespace, d["metadata"]["name"]).get("status") or {}).get("phase")
            == "SignedOff"
            for d in docs
        ),
        timeout=240,
        what="both tiers signed off with the receiver down",
    )
    for doc in docs:
        outbox = _outbox(kube_api, namespace, doc["metadata"]["name"])
        assert [(r["kind"], r.get("sentAt")) for r in outbox] == [("SignedOff", None)]
    wait_for(lambda: "Notification not delivered, will retry" in operator.logs(), timeout=30, what="retries")
    assert receiver.received == []

    receiver.start()
    for doc in docs:
        name = doc["metadata"]["name"]
        wait_for(
            lambda n=name: _all_sent(kube_api, namespace, n), timeout=150, what=f"{name} delivered later"
        )
    assert sorted(receiver.kinds("bulk") + receiver.kinds("standard")) == ["SignedOff", "SignedOff"]
    for doc in docs:
        _exactly_once(receiver, kube_api, namespace, doc["metadata"]["name"])
