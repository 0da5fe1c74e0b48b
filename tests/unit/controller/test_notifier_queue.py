"""The notifier's queue never makes a reconcile wait: a full queue drops the offer, and the record,
still pending in status, is offered again by a later reconcile."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tiergate.api.v1alpha1 import NotificationKind, NotificationRecord
from tiergate.controller.notifier import Notifier

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def _record(i: int, sent: bool = False) -> NotificationRecord:
    return NotificationRecord(
        id=f"ntf_{i}", kind=NotificationKind.HALTED, at=NOW, sentAt=NOW if sent else None
    )


def _notifier(size: int) -> Any:
    return Notifier(kube=None, client=None, secret_namespace="ns", secret_name="s", queue_size=size)  # type: ignore[arg-type]


def test_a_full_queue_drops_the_offer_without_waiting_and_takes_it_again_later() -> None:
    notifier = _notifier(size=1)
    notifier.offer("default", "bulk", [_record(1), _record(2)])
    assert notifier._queue.qsize() == 1
    assert notifier._queue.get_nowait() == ("default", "bulk", "ntf_1")
    notifier.offer("default", "bulk", [_record(1), _record(2)])
    assert notifier._queue.get_nowait() == ("default", "bulk", "ntf_2")


def test_delivered_records_and_records_already_queued_are_not_offered() -> None:
    notifier = _notifier(size=10)
    notifier.offer("default", "bulk", [_record(1, sent=True), _record(2)])
    notifier.offer("default", "bulk", [_record(2)])
    assert notifier._queue.qsize() == 1
