"""Pure parts of replay: the filter wire form, progress records, pacing and scheduling rules,
the halt → filter mapping and token parsing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tiergate.clients.replay import halt_filter
from tiergate.replay.filters import BadField, filter_to_wire, parse_filter, parse_seconds, query_to_wire
from tiergate.replay.progress import (
    Pacer,
    Progress,
    batch_size,
    conflicts,
    effective_rate,
    split_by_age,
)
from tiergate.replay.settings import ConfigError, Role, parse_tokens, replay_settings, token_digest
from tiergate.store import DiscardEvent, DiscardFilter, ReplayJob, ReplayState

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ({}, DiscardFilter()),
        ({"customer": "a"}, DiscardFilter(customer_ids=("a",))),
        (
            {"customer": "a,b", "tier": ["t1", "t2,t3"]},
            DiscardFilter(customer_ids=("a", "b"), tiers=("t1", "t2", "t3")),
        ),
        ({"customer": ["a", "a", " "]}, DiscardFilter(customer_ids=("a",))),
        ({"from": "2024-05-01T12:00:00Z"}, DiscardFilter(since=T0)),
        ({"to": "2024-05-01T14:00:00+02:00"}, DiscardFilter(until=T0)),
        ({"from": "2024-05-01T12:00:00"}, DiscardFilter(since=T0)),
        ({"replayed": "false", "reason": "max-age"}, DiscardFilter(replayed=False, reasons=("max-age",))),
        (
            {"replayed": True, "traffic_class": "otp", "revision": "abc"},
            DiscardFilter(replayed=True, traffic_classes=("otp",), revisions=("abc",)),
        ),
    ],
)
def test_parse_filter(wire: dict[str, object], expected: DiscardFilter) -> None:
    assert parse_filter(wire) == expected


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ({"from": "noon"}, "from"),
        ({"from": 12}, "from"),
        ({"to": ""}, "to"),
        ({"from": "2024-05-01T13:00:00Z", "to": "2024-05-01T12:00:00Z"}, "to"),
        ({"from": "2024-05-01T12:00:00Z", "to": "2024-05-01T12:00:00Z"}, "to"),
        ({"replayed": "sometimes"}, "replayed"),
        ({"tier": 7}, "tier"),
        ({"tier": [1]}, "tier"),
        ({"customer": ["c"] * 1001 and [f"c{i}" for i in range(1001)]}, "customer"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_filters_name_their_field(wire: dict[str, object], field: str) -> None:
    with pytest.raises(BadField) as caught:
        parse_filter(wire)
    assert caught.value.field == field


def test_filter_wire_round_trip() -> None:
    f = DiscardFilter(
        since=T0,
        until=T0 + timedelta(hours=1),
        customer_ids=("a", "b"),
        tiers=("t",),
        revisions=("r",),
        reasons=("x",),
        traffic_classes=("otp",),
        replayed=False,
    )
    assert parse_filter(filter_to_wire(f)) == f
    assert filter_to_wire(DiscardFilter()) == {}


def test_query_to_wire_keeps_lists_and_last_scalar() -> None:
    assert query_to_wire({"customer": ["a", "b"], "from": ["x", "y"], "limit": ["5"]}) == {
        "customer": ["a", "b"],
        "from": "y",
    }


@pytest.mark.parametrize(
    ("raw", "seconds"), [(30, 30.0), (1.5, 1.5), ("90", 90.0), ("15m", 900.0), ("1h30m", 5400.0)]
)
def test_parse_seconds(raw: object, seconds: float) -> None:
    assert parse_seconds("max_age", raw) == seconds


@pytest.mark.parametrize("raw", [0, -5, "soon", True, None, float("inf"), "0s"])
def test_parse_seconds_refuses(raw: object) -> None:
    with pytest.raises(BadField):
        parse_seconds("max_age", raw)


def test_progress_round_trip_and_foreign_cursors() -> None:
    p = Progress(allow_concurrent=True).after_page("abc", 3).after_page("def", 2)
    assert Progress.decode(p.encode()) == p
    assert (p.page, p.too_old, p.started, p.finished, p.allow_concurrent) == ("def", 5, True, False, True)
    assert p.after_page(None, 0).finished
    for foreign in (None, "", "not json", '{"v": 99, "page": "x"}', "[1]"):
        assert Progress.decode(foreign) == Progress()


def job(id: str, classes: tuple[str, ...] = (), *, dry: bool = False, shared: bool = False) -> ReplayJob:
    return ReplayJob(
        id=id,
        filter=DiscardFilter(traffic_classes=classes),
        rate=None,
        dry_run=dry,
        max_age_seconds=None,
        source=None,
        state=ReplayState.PENDING,
        matched=0,
        replayed=0,
        skipped=0,
        failed=0,
        cursor=Progress(allow_concurrent=shared).encode(),
        error=None,
        created_at=T0,
        updated_at=T0,
    )


@pytest.mark.parametrize(
    ("candidate", "running", "blocked_by"),
    [
        (job("n", ("bulk",)), [job("r", ("bulk",))], "r"),
        (job("n", ("bulk",)), [job("r", ("otp",))], None),
        (job("n", ("bulk", "otp")), [job("r", ("otp",))], "r"),
        (job("n"), [job("r", ("otp",))], "r"),
        (job("n", ("otp",)), [job("r")], "r"),
        (job("n", ("bulk",), shared=True), [job("r", ("bulk",))], None),
        (job("n", ("bulk",), dry=True), [job("r", ("bulk",))], None),
        (job("n", ("bulk",)), [job("r", ("bulk",), dry=True)], None),
        (job("n", ("bulk",)), [job("n", ("bulk",))], None),
        (job("n"), [], None),
    ],
)
def test_one_running_job_per_traffic_class(
    candidate: ReplayJob, running: list[ReplayJob], blocked_by: str | None
) -> None:
    blocker = conflicts(candidate, running)
    assert (blocker.id if blocker else None) == blocked_by


@pytest.mark.parametrize(
    ("requested", "cap", "effective"),
    [
        (None, None, None),
        (50.0, None, 50.0),
        (None, 200.0, 200.0),
        (50.0, 200.0, 50.0),
        (500.0, 200.0, 200.0),
    ],
)
def test_effective_rate_never_above_the_cap(
    requested: float | None, cap: float | None, effective: float | None
) -> None:
    assert effective_rate(requested, cap) == effective


@pytest.mark.parametrize(("rate", "size"), [(None, 500), (1.0, 1), (50.0, 5), (100.0, 10), (1e6, 500)])
def test_batch_size(rate: float | None, size: int) -> None:
    assert batch_size(rate, 500) == size


def discard(created: datetime) -> DiscardEvent:
    return DiscardEvent(
        id="d",
        message_id="m",
        customer_id="c",
        traffic_class="bulk",
        tier=None,
        revision=None,
        reason="x",
        upstream_error=None,
        attempts=1,
        discarded_at=T0,
        message_created_at=created,
        replay_job_id=None,
        replayed_at=None,
    )


def test_split_by_age() -> None:
    items = [discard(T0 - timedelta(seconds=s)) for s in (10, 599, 601, 3600)]
    fresh, stale = split_by_age(items, 600, T0)
    assert [d.message_created_at for d in fresh] == [items[0].message_created_at, items[1].message_created_at]
    assert len(stale) == 2
    assert split_by_age(items, None, T0) == (items, [])


async def test_pacer_holds_the_rate_in_batches() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(200.0, burst=10, clock=lambda: now[0], sleep=sleep)
    for _ in range(30):
        await pacer.take(10)
    # 300 messages at 200/s with a burst of 10 up front: exactly (300 - 10) / 200 s of waiting.
    assert now[0] == pytest.approx((300 - 10) / 200, rel=1e-6)


def halt(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "check": "error-rate",
        "revision": "7f3a",
        "message": "error-rate 0.3 above 0.02",
        "windowStart": "2024-05-01T12:00:00Z",
        "windowEnd": "2024-05-01T12:20:00Z",
        "at": "2024-05-01T12:19:00Z",
        "value": 0.3,
        "threshold": "max 0.02",
        "query": "q",
    }
    base.update(over)
    return base


def test_halt_filter_is_the_tier_revision_and_window() -> None:
    assert halt_filter("bulk-a", halt()) == {
        "tier": ["bulk-a"],
        "revision": ["7f3a"],
        "from": "2024-05-01T12:00:00+00:00",
        "to": "2024-05-01T12:20:00+00:00",
    }


def test_halt_filter_runs_to_now_while_the_window_is_open() -> None:
    now = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    wire = halt_filter("bulk-a", halt(windowEnd=None), now)
    assert wire["to"] == "2024-05-01T13:00:00+00:00"
    f = parse_filter(wire)
    assert f == DiscardFilter(since=T0, until=now, tiers=("bulk-a",), revisions=("7f3a",))
    assert replace(f, replayed=None) == f


def test_halt_filter_refuses_a_halt_without_revision() -> None:
    bad = halt()
    del bad["revision"]
    with pytest.raises(ValueError, match="revision"):
        halt_filter("bulk-a", bad)


def test_tokens_have_names_and_roles_and_are_kept_hashed() -> None:
    tokens = parse_tokens("s3cret=alice\n# comment\nlook=bob:read, other=carol:replay")
    assert tokens[token_digest("s3cret")].name == "alice"
    assert tokens[token_digest("s3cret")].role == Role.REPLAY
    assert tokens[token_digest("look")].role == Role.READ
    assert tokens[token_digest("other")].role == Role.REPLAY
    assert "s3cret" not in repr(tokens)
    for bad in ("justatoken", "=alice", "t=", "t=alice:admin"):
        with pytest.raises(ConfigError):
            parse_tokens(bad)


def test_settings_need_tokens_and_a_positive_cap(tmp_path: object) -> None:
    env = {"TIERGATE_STORE_URL": "sqlite:///tmp/x.db"}
    with pytest.raises(ConfigError, match="No replay tokens"):
        replay_settings(env=env)
    with pytest.raises(ConfigError, match="cap"):
        replay_settings(env={**env, "TIERGATE_REPLAY_TOKENS": "t=a", "TIERGATE_REPLAY_MAX_RATE": "0"})
    s = replay_settings(
        env={
            **env,
            "TIERGATE_REPLAY_TOKENS": "t=a",
            "TIERGATE_REPLAY_MAX_RATE": "250",
            "TIERGATE_REPLAY_PORT": "9000",
        }
    )
    assert (s.max_rate, s.port, s.store_url) == (250.0, 9000, "sqlite:///tmp/x.db")


def test_claim_batch_comes_from_flag_or_environment() -> None:
    env = {"TIERGATE_STORE_URL": "sqlite:///tmp/x.db", "TIERGATE_REPLAY_TOKENS": "t=a"}
    assert replay_settings(env=env).max_batch == 500
    assert replay_settings(env={**env, "TIERGATE_REPLAY_MAX_BATCH": "2000"}).max_batch == 2000
    assert replay_settings(max_batch=50, env={**env, "TIERGATE_REPLAY_MAX_BATCH": "2000"}).max_batch == 50
    for bad in ("0", "-5", "2.5"):
        with pytest.raises(ConfigError, match="claim batch"):
            replay_settings(env={**env, "TIERGATE_REPLAY_MAX_BATCH": bad})
