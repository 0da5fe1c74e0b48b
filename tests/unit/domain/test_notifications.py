"""Notifications derived from status transitions, the bounded outbox, routing and payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tiergate.api.v1alpha1 import NotificationKind, NotificationRecord, SenderTierStatus
from tiergate.domain import notifications as n
from tiergate.domain.webhooks import SIGNATURE_HEADER, verify

NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
T0 = NOW - timedelta(minutes=5)
UID = "9f1c-uid"
HALT = {
    "check": "error-rate",
    "query": 'sum(rate(errors{tier="bulk"}[1m]))',
    "value": 0.31,
    "threshold": "<= 0.05",
    "revision": "bad0000001",
    "release": "R2",
    "windowStart": T0.isoformat(),
    "at": NOW.isoformat(),
}
RUN = {"release": "R2", "revision": "bad0000001", "startedAt": T0.isoformat()}


def st(**fields: Any) -> SenderTierStatus:
    return SenderTierStatus.model_validate({"release": "R2", "revision": "bad0000001", **fields})


def waiting(reason: str) -> SenderTierStatus:
    cond = {"type": "Reconciling", "status": "False", "reason": reason, "lastTransitionTime": T0.isoformat()}
    return st(phase="Waiting", message=f"Waiting: {reason}", conditions=[cond])


CASES = [
    ("halted", st(phase="Baking"), st(phase="Halted", message="Halted: error-rate", halt=HALT), ["Halted"]),
    ("rolled back", st(phase="Baking"), st(phase="RolledBack", halt=HALT), ["RolledBack"]),
    (
        "halted then rolled back",
        st(phase="Halted", halt=HALT),
        st(phase="RolledBack", halt=HALT),
        ["RolledBack"],
    ),
    ("still rolled back", st(phase="RolledBack", halt=HALT), st(phase="RolledBack", halt=HALT), []),
    (
        "signed off",
        st(phase="Baking", history=[RUN]),
        st(phase="SignedOff", history=[{**RUN, "signedOffAt": NOW.isoformat()}]),
        ["SignedOff"],
    ),
    (
        "watch passed",
        st(phase="SignedOff", history=[{**RUN, "signedOffAt": T0.isoformat()}]),
        st(
            phase="SignedOff",
            history=[{**RUN, "signedOffAt": T0.isoformat(), "watchPassedAt": NOW.isoformat()}],
        ),
        ["WatchPassed"],
    ),
    ("awaiting approval", st(phase="Pending"), waiting("AwaitingApproval"), ["AwaitingApproval"]),
    ("still awaiting approval", waiting("AwaitingApproval"), waiting("AwaitingApproval"), []),
    ("frozen", waiting("AwaitingApproval"), waiting("Frozen"), ["Frozen"]),
    ("outside window is not a kind", st(phase="Pending"), waiting("OutsideWindow"), []),
    (
        "override used",
        st(phase="Waiting"),
        st(phase="Progressing", untestedRelease={"release": "R2", "by": "carol@t", "at": NOW.isoformat()}),
        ["OverrideUsed"],
    ),
    (
        "replay done",
        st(replayJob={"id": "j1", "state": "running", "revision": "bad", "createdAt": T0.isoformat()}),
        st(
            replayJob={
                "id": "j1",
                "state": "done",
                "revision": "bad",
                "createdAt": T0.isoformat(),
                "replayed": 4,
            }
        ),
        ["ReplayDone"],
    ),
    (
        "replay still done",
        st(replayJob={"id": "j1", "state": "done", "revision": "bad", "createdAt": T0.isoformat()}),
        st(replayJob={"id": "j1", "state": "done", "revision": "bad", "createdAt": T0.isoformat()}),
        [],
    ),
    ("nothing", st(phase="Progressing"), st(phase="Baking"), []),
]


@pytest.mark.parametrize(("old", "new", "kinds"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_transitions(old: SenderTierStatus, new: SenderTierStatus, kinds: list[str]) -> None:
    assert [r.kind.value for r in n.derive(old, new, UID, NOW)] == kinds


def test_a_halt_carries_its_halt_record_and_ids_are_stable() -> None:
    old, new = st(phase="Baking"), st(phase="RolledBack", halt=HALT, message="Halted: error-rate 0.31")
    first, again = n.derive(old, new, UID, NOW), n.derive(old, new, UID, NOW)
    assert first == again
    record = first[0]
    assert record.halt is not None
    assert (record.halt.check, record.halt.value, record.halt.threshold) == ("error-rate", 0.31, "<= 0.05")
    assert record.halt.query == HALT["query"]
    assert (record.release, record.revision, record.pending) == ("R2", "bad0000001", True)
    assert record.id != n.derive(old, new, "other-uid", NOW)[0].id
    assert record.id != n.derive(old, new, UID, NOW + timedelta(seconds=1))[0].id


def test_recorded_keeps_the_old_outbox_and_adds_in_the_same_status() -> None:
    earlier = NotificationRecord(id="ntf_old", kind=NotificationKind.SIGNED_OFF, at=T0, sentAt=T0)
    old = st(phase="Baking", notifications=[earlier.model_dump(by_alias=True)])
    # The decision's status may not carry the outbox at all: the old one is kept regardless.
    new = n.recorded(old, st(phase="RolledBack", halt=HALT), UID, NOW)
    assert new.notifications[0].id == "ntf_old"
    assert [r.kind for r in new.notifications] == [NotificationKind.SIGNED_OFF, NotificationKind.ROLLED_BACK]
    assert n.recorded(new, new, UID, NOW).notifications == new.notifications


def test_the_outbox_is_bounded_and_drops_delivered_records_first() -> None:
    def rec(i: int, sent: bool) -> NotificationRecord:
        return NotificationRecord(
            id=f"ntf_{i}", kind=NotificationKind.HALTED, at=T0, sentAt=NOW if sent else None
        )

    records = [rec(i, sent=i % 2 == 0) for i in range(30)]
    kept = n.bounded(records)
    assert len(kept) == n.OUTBOX_LIMIT
    assert {r.id for r in records if r.pending} <= {r.id for r in kept}
    assert [r.id for r in kept] == sorted((r.id for r in kept), key=lambda i: int(i[4:]))
    pending_only = [rec(i, sent=False) for i in range(25)]
    assert [r.id for r in n.bounded(pending_only)] == [f"ntf_{i}" for i in range(5, 25)]


def test_delivered_marks_receivers_and_completes_once_every_route_is_done() -> None:
    record = NotificationRecord(id="ntf_1", kind=NotificationKind.HALTED, at=T0)
    half = record.delivered(["a"], done=False, now=NOW)
    assert (half.sent_to, half.pending) == (["a"], True)
    whole = half.delivered(["b", "a"], done=True, now=NOW)
    assert (whole.sent_to, whole.sent_at, whole.pending) == (["a", "b"], NOW, False)
    assert not record.given_up(NOW).pending


CONFIG = """
receivers:
  - name: oncall
    url: http://127.0.0.1:9/hook
    secrets: [nsec-0123456789abcdef]
  - name: chat
    url: https://hooks.slack.example/services/T/B/x
    format: slack
    kinds: [Halted, RolledBack]
"""


def test_receivers_parse_and_route_by_kind() -> None:
    oncall, chat = n.parse_receivers(CONFIG)
    assert (oncall.format, chat.format) == (n.Format.WEBHOOK, n.Format.SLACK)
    halted = NotificationRecord(id="ntf_1", kind=NotificationKind.HALTED, at=T0)
    signed = NotificationRecord(id="ntf_2", kind=NotificationKind.SIGNED_OFF, at=T0)
    assert [r.name for r in n.routes((oncall, chat), halted)] == ["oncall", "chat"]
    assert [r.name for r in n.routes((oncall, chat), signed)] == ["oncall"]
    assert [r.name for r in n.routes((oncall, chat), halted.delivered(["oncall"], False, NOW))] == ["chat"]


@pytest.mark.parametrize(
    "text",
    [
        "receivers: [{name: a, url: ftp://x}]",
        "receivers: [{name: a, url: http://x, kinds: [Exploded]}]",
        "receivers: [{name: a, url: http://x}, {name: a, url: http://y}]",
        "receivers: [{name: a, url: http://x, colour: red}]",
        "receivers: [",
    ],
)
def test_bad_receiver_configs_are_refused(text: str) -> None:
    with pytest.raises(n.ReceiverConfigError):
        n.parse_receivers(text)


TIER = n.TierRef("default", "bulk", "sms-senders")


def _rolled_back() -> NotificationRecord:
    return n.derive(
        st(phase="Baking"), st(phase="RolledBack", halt=HALT, message="Halted: error-rate"), UID, NOW
    )[0]


def test_the_webhook_post_is_signed_and_carries_the_idempotency_key() -> None:
    oncall, _ = n.parse_receivers(CONFIG)
    record = _rolled_back()
    stamp = int(NOW.timestamp())
    post = n.post_for(oncall, record, TIER, stamp)
    assert post.headers[n.ID_HEADER] == record.id
    assert verify("nsec-0123456789abcdef", post.headers[SIGNATURE_HEADER], post.body, now=stamp)
    assert not verify("nsec-wrong-secret-000", post.headers[SIGNATURE_HEADER], post.body, now=stamp)
    doc = json.loads(post.body)
    assert (doc["id"], doc["kind"], doc["tier"], doc["fleet"]) == (
        record.id,
        "RolledBack",
        "bulk",
        "sms-senders",
    )
    assert {k: doc["halt"][k] for k in ("check", "query", "value", "threshold")} == {
        k: HALT[k] for k in ("check", "query", "value", "threshold")
    }


def test_the_slack_post_is_incoming_webhook_json_naming_the_halt() -> None:
    _, chat = n.parse_receivers(CONFIG)
    post = n.post_for(chat, _rolled_back(), TIER, int(NOW.timestamp()))
    assert SIGNATURE_HEADER not in post.headers
    body = json.loads(post.body)
    assert list(body) == ["text"]
    lines = body["text"].splitlines()
    assert lines[0] == "*RolledBack*: SenderTier `default/bulk` (fleet `sms-senders`)"
    assert "check `error-rate`: 0.31 against `<= 0.05`" in lines
    assert f"query: `{HALT['query']}`" in lines
