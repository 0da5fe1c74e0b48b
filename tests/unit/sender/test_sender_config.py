"""Pure parts of the sender: fault switch, settings, retry policy, SMPP status mapping."""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest

from tiergate.sender import eventloop
from tiergate.sender.connectors.smpp import classify_status, destination_address, source_address
from tiergate.sender.errors import ConfigError, PermanentError, ThrottledError, TransientError
from tiergate.sender.faults import Faults, parse_faults
from tiergate.sender.retry import RetryPolicy
from tiergate.sender.settings import api_settings, parse_tokens, token_digest, worker_settings


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", Faults()),
        ("no-bind", Faults(no_bind=True)),
        ("fail-submits=0.3", Faults(fail_submits=0.3)),
        ("slow-start=5", Faults(slow_start=5.0)),
        (" no-bind , fail-submits=1 ", Faults(no_bind=True, fail_submits=1.0)),
        ("no-bind,fail-after=120", Faults(no_bind=True, fail_after=120.0)),
        ("fail-submits=0.5,fail-after=2.5", Faults(fail_submits=0.5, fail_after=2.5)),
        ("no-bind,fail-class=priority", Faults(no_bind=True, fail_class="priority")),
        ("slow-start=1,fail-class=bulk", Faults(slow_start=1.0, fail_class="bulk")),
        (
            "fail-class=priority,fail-after=60,fail-submits=1",
            Faults(fail_submits=1.0, fail_after=60.0, fail_class="priority"),
        ),
    ],
)
def test_faults_parse_when_allowed(spec: str, expected: Faults) -> None:
    assert parse_faults(spec, allowed=True) == expected


@pytest.mark.parametrize("spec", ["no-bind", "fail-submits=0.1", "slow-start=1"])
def test_faults_refused_without_allow_flag(spec: str) -> None:
    with pytest.raises(ConfigError, match="TIERGATE_ALLOW_FAULTS"):
        parse_faults(spec, allowed=False)


@pytest.mark.parametrize(
    "spec",
    [
        "explode",
        "fail-submits=2",
        "fail-submits=x",
        "slow-start=-1",
        "no-bind=1",
        "fail-after=10",
        "slow-start=5,fail-after=10",
        "no-bind,fail-after=-1",
        "no-bind,fail-after=soon",
        "fail-class=priority",
        "no-bind,fail-class=",
        "fail-after=5,fail-class=priority",
    ],
)
def test_bad_faults(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_faults(spec, allowed=True)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(no_bind=True, fail_submits=0.25, slow_start=3),
        Faults(no_bind=True, fail_after=90, fail_class="priority"),
        Faults(fail_submits=1, fail_after=0.5),
    ],
)
def test_faults_describe_round_trips(faults: Faults) -> None:
    assert parse_faults(faults.describe(), allowed=True) == faults


@pytest.mark.parametrize(
    ("spec", "no_bind_at_start", "delayed", "failing_at"),
    [
        ("no-bind", True, False, {0.0: True, 5.0: True}),
        ("fail-submits=1", False, False, {0.0: True}),
        ("no-bind,fail-after=120", False, True, {0.0: False, 119.9: False, 120.0: True, 500.0: True}),
        ("fail-submits=0.5,fail-after=3", False, True, {2.9: False, 3.0: True}),
        ("slow-start=4", False, False, {0.0: True}),
    ],
)
def test_fault_timing(
    spec: str, no_bind_at_start: bool, delayed: bool, failing_at: dict[float, bool]
) -> None:
    faults = parse_faults(spec, allowed=True)
    assert (faults.no_bind_at_start, faults.delayed) == (no_bind_at_start, delayed)
    assert {elapsed: faults.failing(elapsed) for elapsed in failing_at} == failing_at


@pytest.mark.parametrize(
    ("spec", "traffic_class", "kept"),
    [
        ("no-bind,fail-class=priority", "priority", True),
        ("no-bind,fail-class=priority", "bulk", False),
        ("fail-submits=1,fail-after=60,fail-class=priority", "standard", False),
        ("no-bind", "bulk", True),
    ],
)
def test_fault_class_limits_the_switch(spec: str, traffic_class: str, kept: bool) -> None:
    faults = parse_faults(spec, allowed=True)
    assert faults.for_traffic_class(traffic_class) == (faults if kept else Faults())


@pytest.mark.parametrize(
    ("traffic_class", "expected"), [("priority", "no-bind,fail-class=priority"), ("bulk", "")]
)
def test_worker_settings_apply_the_fault_class(traffic_class: str, expected: str) -> None:
    env = {
        "TIERGATE_TIER": "t",
        "TIERGATE_UPSTREAM_URL": "smpp://h:1",
        "TIERGATE_STORE_URL": "sqlite:///x.db",
        "TIERGATE_FAULTS": "no-bind,fail-class=priority",
        "TIERGATE_ALLOW_FAULTS": "1",
        "TIERGATE_TRAFFIC_CLASS": traffic_class,
    }
    assert worker_settings(tier=None, env=env).faults.describe() == expected


def test_worker_settings_from_env(tmp_path: object) -> None:
    env = {
        "TIERGATE_TIER": "gold",
        "TIERGATE_REVISION": "abc",
        "TIERGATE_UPSTREAM_URL": "smpp://smsc:2775",
        "TIERGATE_STORE_URL": "sqlite:///x.db",
        "TIERGATE_SMPP_SYSTEM_ID": "sys",
        "TIERGATE_SMPP_PASSWORD": "pw",
        "TIERGATE_HTTP_PORT": "9000",
    }
    s = worker_settings(tier=None, env=env)
    assert (s.tier, s.traffic_class, s.revision, s.port) == ("gold", "gold", "abc", 9000)
    assert s.credentials == {"default": ("sys", "pw")}
    assert [c.url for c in s.upstream.connectors] == ["smpp://smsc:2775"]
    assert "pw" not in repr(s)
    flagged = worker_settings(tier="silver", traffic_class="bulk", port=1, env=env)
    assert (flagged.tier, flagged.traffic_class, flagged.port) == ("silver", "bulk", 1)


@pytest.mark.parametrize(
    "env",
    [
        {"TIERGATE_UPSTREAM_URL": "smpp://h:1"},
        {"TIERGATE_TIER": "t"},
        {"TIERGATE_TIER": "t", "TIERGATE_UPSTREAM_URL": "smpp://h:1", "TIERGATE_FAULTS": "no-bind"},
        {"TIERGATE_TIER": "t", "TIERGATE_UPSTREAM_URL": "smpp://h:1", "TIERGATE_HTTP_PORT": "x"},
    ],
)
def test_worker_settings_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        worker_settings(tier=None, env={"TIERGATE_STORE_URL": "sqlite:///x.db", **env})


def test_api_settings_and_tokens() -> None:
    env = {
        "TIERGATE_API_TOKENS": "a=c1, b=c2",
        "TIERGATE_STORE_URL": "sqlite:///x.db",
        "TIERGATE_TRAFFIC_CLASSES": "otp,bulk",
        "TIERGATE_MAX_QUEUE_DEPTH": "10",
    }
    s = api_settings(env=env)
    assert s.tokens[token_digest("a")] == "c1"
    assert "a" not in s.tokens
    assert s.rules.traffic_classes == {"otp", "bulk"}
    assert s.max_queue_depth == 10
    with pytest.raises(ConfigError):
        api_settings(env={"TIERGATE_STORE_URL": "sqlite:///x.db"})
    with pytest.raises(ConfigError):
        parse_tokens("no-separator")


API_ENV = {"TIERGATE_API_TOKENS": "a=c1", "TIERGATE_STORE_URL": "sqlite:///x.db"}


@pytest.mark.parametrize(("raw", "expected"), [("", 1), ("1", 1), ("2", 2), ("64", 64)])
def test_api_processes_setting(raw: str, expected: int) -> None:
    assert api_settings(env={**API_ENV, "TIERGATE_API_PROCESSES": raw}).processes == expected


@pytest.mark.parametrize("raw", ["0", "65", "-1", "two"])
def test_api_processes_out_of_range_is_refused_naming_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match="TIERGATE_API_PROCESSES"):
        api_settings(env={**API_ENV, "TIERGATE_API_PROCESSES": raw})


def test_gc_tuning_threshold_from_the_environment() -> None:
    before = gc.get_threshold()
    try:
        assert eventloop.tune_gc({}) == eventloop.GC_YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == eventloop.GC_YOUNG_THRESHOLD
        assert eventloop.tune_gc({"TIERGATE_GC_THRESHOLD": "5000"}) == 5000
        gc.set_threshold(*before)
        assert eventloop.tune_gc({"TIERGATE_GC_THRESHOLD": "0"}) == before[0]
        assert gc.get_threshold() == before
        with pytest.raises(ConfigError, match="TIERGATE_GC_THRESHOLD"):
            eventloop.tune_gc({"TIERGATE_GC_THRESHOLD": "lots"})
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_retry_backoff_grows_caps_and_jitters() -> None:
    policy = RetryPolicy(base_delay=1, max_delay=10)
    rng = random.Random(0)
    delays = [policy.backoff(n, rng) for n in range(1, 8)]
    assert 0.5 <= delays[0] <= 1
    assert 4 <= delays[3] <= 8
    assert all(d <= 10 for d in delays)


@pytest.mark.parametrize(
    ("attempts", "age", "reason"),
    [(1, 0, None), (8, 0, "max-attempts"), (2, 6 * 3600, "max-age")],
)
def test_give_up(attempts: int, age: float, reason: str | None) -> None:
    assert RetryPolicy().give_up_reason(attempts, age) == reason


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ESME_ROK", None),
        ("ESME_RTHROTTLED", ThrottledError),
        ("ESME_RMSGQFUL", ThrottledError),
        ("ESME_RINVDSTADR", PermanentError),
        ("ESME_RINVSRCADR", PermanentError),
        ("ESME_RX_R_APPN", PermanentError),
        ("ESME_RSYSERR", TransientError),
        ("ESME_RSUBMITFAIL", TransientError),
        ("ESME_RUNKNOWNERR", TransientError),
    ],
)
def test_classify_status(name: str, kind: type | None) -> None:
    error = classify_status(name, 0x58)
    if kind is None:
        assert error is None
    else:
        assert type(error) is kind
        assert error is not None and name in error.code


def test_smpp_addresses() -> None:
    assert (source_address("Acme").ton, source_address("Acme").npi) == (5, 0)
    assert source_address("+4915112345678").number == "4915112345678"
    assert destination_address("+4915112345678").number == "4915112345678"
    assert destination_address("+4915112345678").ton == 1


def test_worker_connectors_come_from_a_file_then_inline_then_the_url(tmp_path: Path) -> None:
    base = {
        "TIERGATE_TIER": "t",
        "TIERGATE_STORE_URL": "sqlite:///x.db",
        "TIERGATE_UPSTREAM_URL": "smpp://u:1",
    }
    inline = "connectors: [{name: inline, url: 'smpp://i:1', binds: 3, window: 100, passwordFrom: {env: PW}}]"
    path = tmp_path / "connectors.yaml"
    path.write_text("connectors: [{name: filed, url: 'smpp://f:1'}]")
    assert [c.name for c in worker_settings(tier=None, env=base).upstream.connectors] == ["default"]
    s = worker_settings(tier=None, env={**base, "TIERGATE_CONNECTORS": inline, "PW": "pw"})
    assert [c.name for c in s.upstream.connectors] == ["inline"]
    assert s.credentials == {"inline": ("", "pw")}
    assert s.window == 300, "room for every bind's window"
    filed = {**base, "TIERGATE_CONNECTORS": inline, "TIERGATE_CONNECTORS_FILE": str(path)}
    assert [c.name for c in worker_settings(tier=None, env=filed).upstream.connectors] == ["filed"]
    with pytest.raises(ConfigError, match=r"Connector inline: environment variable PW is not set"):
        worker_settings(tier=None, env={**base, "TIERGATE_CONNECTORS": inline})
