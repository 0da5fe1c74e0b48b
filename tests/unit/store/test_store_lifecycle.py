"""The engine-neutral life cycle: transitions, event data and its sentences, job changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tiergate.store import (
    Discard,
    DiscardFilter,
    Message,
    MessageState,
    ReplayJob,
    ReplayState,
    RetryLater,
    Submitted,
)
from tiergate.store import _lifecycle as lc
from tiergate.store._common import MESSAGE_COLUMNS, row_to_message

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        (
            lc.event_data(lc.EventKind.LEASED, owner="w", tier="t0", revision="r1"),
            "owner=w tier=t0 revision=r1",
        ),
        (lc.event_data(lc.EventKind.SUBMITTED, upstream_id="u1"), "upstream_id=u1"),
        (lc.event_data(lc.EventKind.RETRY, error="boom"), "retry: boom"),
        (lc.event_data(lc.EventKind.DISCARDED, reason="expired"), "reason=expired"),
        (lc.event_data(lc.EventKind.RELEASED), "released unsent"),
        (lc.replay_data("job-1"), "replay job=job-1"),
        (lc.receipt_data("DELIVRD"), "DELIVRD"),
        (lc.receipt_data(None), None),
    ],
)
def test_each_event_kind_renders_the_sentence_the_api_always_showed(data: str, sentence: str | None) -> None:
    parsed = lc.parse_data(data)
    assert parsed is not None
    assert lc.render_detail(parsed) == sentence


def test_every_event_kind_has_a_sentence() -> None:
    for kind in lc.EventKind:
        lc.render_detail(
            {
                "event": kind.value,
                "owner": "",
                "tier": "",
                "revision": "",
                "upstream_id": "",
                "error": "",
                "reason": "",
                "job": "",
                "receipt": "",
            }
        )


def test_an_event_written_before_details_were_data_keeps_its_stored_sentence() -> None:
    values = dict.fromkeys(MESSAGE_COLUMNS)
    values.update(
        encoding="gsm7", state="queued", created_at=NOW.timestamp(), next_attempt_at=0, updated_at=0
    )
    message = row_to_message([values[c] for c in MESSAGE_COLUMNS], lambda v: None if v is None else NOW)
    rows = [{"at": 1.0, "state": "in_flight", "data": None, "detail": "owner=a tier=b revision=c"}]
    view = lc.history(message, rows, lambda _: NOW)
    assert [(h.state, h.detail, dict(h.data)) for h in view.history] == [
        (MessageState.QUEUED, "accepted", {}),
        (MessageState.IN_FLIGHT, "owner=a tier=b revision=c", {}),
    ]
    assert isinstance(view.message, Message)


def test_transitions_cover_every_outcome_and_take_each_field_once() -> None:
    by_outcome = {t.outcome: t for t in lc.TRANSITIONS}
    assert [f.name for f in by_outcome[RetryLater].fields()] == ["not_before", "error"]
    assert [f.name for f in by_outcome[Discard].fields()] == ["upstream_error", "reason"]
    assert by_outcome[Discard].returning == lc.DISCARD_SOURCE
    groups = lc.grouped([Discard("a", "w", "x"), Submitted("b", "w", "u"), Discard("c", "w", "y")])
    assert [(t.outcome, [i for i, _ in g]) for t, g in groups] == [(Submitted, [1]), (Discard, [0, 2])]
    assert lc.outcome_event(Discard("a", "w", "x")).state is MessageState.DISCARDED


def _job(state: ReplayState) -> ReplayJob:
    return ReplayJob("j", DiscardFilter(), None, False, None, None, state, 5, 0, 0, 0, "cur", None, NOW, NOW)


def test_job_changes_keep_what_is_not_given_and_refuse_an_unexpected_state() -> None:
    running = _job(ReplayState.RUNNING)
    assert lc.job_changes(running, None, (), None, None, "e") == ("running", 5, "cur", "e")
    assert lc.job_changes(running, ReplayState.DONE, (ReplayState.RUNNING,), 7, "c2", None) == (
        "done",
        7,
        "c2",
        None,
    )
    assert lc.job_changes(running, ReplayState.PAUSED, (ReplayState.PENDING,), None, None, None) is None
