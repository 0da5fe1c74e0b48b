"""The pure pieces of connector routing: AIMD rate, circuit breaker, route choice, config."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tiergate.sender.connectors.config import SecretRef, parse_upstream, single_upstream
from tiergate.sender.errors import ConfigError
from tiergate.sender.routing import AimdRate, Candidate, Circuit, CircuitBreaker, choose, unserved


@pytest.mark.parametrize(
    ("events", "at", "rate"),
    [
        ([], 0.0, 500.0),
        ([0.0], 0.0, 350.0),
        # A window's worth of throttles at once is one congestion event.
        ([0.0, 0.01, 0.2, 0.49], 0.49, 350.0 + 250.0 * 0.49),
        ([0.0, 0.5], 0.5, (350.0 + 125.0) * 0.7),
        # Additive increase: tps/2 per second, capped at tps.
        ([0.0], 0.4, 450.0),
        ([0.0], 0.6, 500.0),
        ([0.0], 10.0, 500.0),
        # Repeated cuts settle where the climb between them balances the cut.
        ([t * 0.5 for t in range(40)], 19.5, 291.0),
    ],
)
def test_aimd_rate(events: list[float], at: float, rate: float) -> None:
    aimd = AimdRate(500.0)
    for t in events:
        aimd.throttled(t)
    assert aimd.rate(at) == pytest.approx(rate, abs=1.0)


def test_aimd_never_falls_below_its_floor() -> None:
    aimd = AimdRate(500.0, increase=0.0)
    for k in range(20):
        aimd.throttled(k * 0.5)
    assert aimd.rate(10.0) == 25.0


def test_aimd_reports_the_first_cut_and_the_recovery_once() -> None:
    aimd = AimdRate(100.0)
    assert aimd.throttled(0.0) is True
    assert aimd.throttled(0.1) is False
    assert aimd.recovered(0.2) is False
    assert aimd.recovered(1.0) is True
    assert aimd.recovered(1.1) is False
    assert aimd.throttled_since is None


@pytest.mark.parametrize(
    ("script", "states"),
    [
        # Four failures leave it closed; the fifth opens it.
        ("ffff", [Circuit.CLOSED]),
        ("fffff", [Circuit.OPEN]),
        # A success resets the count.
        ("ffffsffff", [Circuit.CLOSED]),
    ],
)
def test_breaker_opens_after_consecutive_failures(script: str, states: list[Circuit]) -> None:
    breaker = CircuitBreaker(threshold=5, open_for=5.0)
    for step in script:
        breaker.failed(0.0) if step == "f" else breaker.succeeded()
    assert [breaker.state(0.0)] == states


def test_breaker_probes_once_then_closes_or_backs_off() -> None:
    breaker = CircuitBreaker(threshold=1, open_for=5.0, max_open_for=12.0)
    assert breaker.failed(0.0) is True
    assert not breaker.allows(4.9)
    assert breaker.state(5.0) is Circuit.HALF_OPEN
    assert breaker.allows(5.0)
    assert breaker.sent(5.0) is True
    assert not breaker.allows(5.1), "one probe at a time"
    assert breaker.failed(5.2) is True
    assert breaker.open_for == 10.0
    assert breaker.state(15.1) is Circuit.OPEN
    assert breaker.sent(15.2) is True
    breaker.failed(15.3)
    assert breaker.open_for == 12.0, "capped"
    assert breaker.sent(27.3) is True
    assert breaker.succeeded() is True
    assert breaker.state(27.4) is Circuit.CLOSED
    assert breaker.open_for == 5.0


def c(
    name: str, *prefixes: str, failover: int = 0, weight: float = 1.0, up: bool = True, backlog: float = 0.0
) -> Candidate:
    return Candidate(name, prefixes, failover, weight, up, backlog)


ROUTES = [
    c("de", "+49"),
    c("uk", "+44", "+353"),
    c("world", failover=1),
]


@pytest.mark.parametrize(
    ("destination", "candidates", "wanted"),
    [
        ("+4915112345678", ROUTES, "de"),
        ("+447400123456", ROUTES, "uk"),
        ("+353861234567", ROUTES, "uk"),
        ("+33612345678", ROUTES, "world"),
        # A failover order is used only when the lower orders cannot send.
        ("+4915112345678", [c("de", "+49", up=False), *ROUTES[1:]], "world"),
        ("+4915112345678", [c("de", "+49", up=False), ROUTES[1]], None),
        ("+33612345678", ROUTES[:2], None),
        # At saturation the connector whose backlog clears first wins, whatever the weights.
        ("+49151", [c("a", weight=100, backlog=0.4), c("b", weight=1, backlog=0.1)], "b"),
        ("+49151", [c("a", weight=100, backlog=0.4), c("b", backlog=0.1, up=False)], "a"),
        ("+49151", [c("a", backlog=0.4), c("b", backlog=0.0)], "b"),
    ],
)
def test_route(destination: str, candidates: list[Candidate], wanted: str | None) -> None:
    chosen = choose(destination, candidates, random.Random(0))
    assert (chosen.name if chosen else None) == wanted


def test_route_splits_by_weight_while_there_is_spare_rate() -> None:
    rng = random.Random(1)
    candidates = [c("a", weight=3), c("b", weight=1)]
    counts = Counter(choose("+49151", candidates, rng).name for _ in range(4000))  # type: ignore[union-attr]
    assert 0.72 < counts["a"] / 4000 < 0.78


@pytest.mark.parametrize(
    ("candidates", "bound", "missing"),
    [
        (ROUTES, [True, True, True], []),
        (ROUTES, [False, True, True], []),
        (ROUTES, [False, True, False], ["", "+49"]),
        (ROUTES, [True, True, False], [""]),
        ([c("de", "+49"), c("de-mobile", "+4915")], [True, False], []),
        ([c("de", "+49"), c("de-mobile", "+4915")], [False, True], ["+49"]),
    ],
)
def test_unserved_prefixes(candidates: list[Candidate], bound: list[bool], missing: list[str]) -> None:
    assert unserved(candidates, bound) == missing


CONFIG = """
connectors:
  - name: carrier-a
    url: smpp://smsc-a:2775
    tps: 300
    binds: 2
    weight: 3
    prefixes: ["+49"]
    passwordFrom: {env: PW_A}
  - name: backup
    url: https://sms.example/v1/send
    failover: 1
    systemIdFrom: {file: /nonexistent/system-id}
"""


def test_connectors_file_parses_with_defaults() -> None:
    spec = parse_upstream(CONFIG)
    a, backup = spec.connectors
    assert (a.tps, a.binds, a.window, a.weight, a.prefixes, a.failover) == (300, 2, 64, 3, ("+49",), 0)
    assert (backup.tps, backup.binds, backup.prefixes, backup.failover) == (None, 1, (), 1)
    assert a.credentials({"PW_A": "s3cret", "TIERGATE_SMPP_SYSTEM_ID": "sys"}) == ("sys", "s3cret")
    with pytest.raises(ConfigError, match="PW_A"):
        a.credentials({})
    with pytest.raises(ConfigError, match="/nonexistent/system-id"):
        backup.credentials({})


def test_secret_ref_reads_a_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "pw"
    path.write_text("hunter2\n")
    assert SecretRef(file=str(path)).resolve({}) == "hunter2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("connectors: []", "connectors: Tuple should have at least 1 item"),
        ("connectors: [{name: a}]", r"connectors\[0\]\(a\)\.url: Field required"),
        ("connectors: [{name: a, url: 'smpp://h:1', tps: 0}]", r"connectors\[0\]\(a\)\.tps"),
        ("connectors: [{name: a, url: 'smpp://h'}]", "needs a host and a port"),
        ("connectors: [{name: a, url: 'ftp://h:1'}]", "unsupported scheme"),
        ("connectors: [{name: a, url: 'smpp://u:pw@h:1'}]", "passwordFrom"),
        ("connectors: [{name: a, url: 'smpp://h:1', prefixes: ['49']}]", "not an E.164 prefix"),
        ("connectors: [{name: a, url: 'smpp://h:1', password: x}]", r"connectors\[0\]\(a\)\.password: Extra"),
        ("connectors: [{name: a, url: 'smpp://h:1', passwordFrom: {}}]", "exactly one of env or file"),
        ("connectors: [{name: a, url: 'smpp://h:1'}, {name: a, url: 'smpp://h:2'}]", "unique: a"),
        ("connectors: [{name: Carrier_A, url: 'smpp://h:1'}]", r"\(Carrier_A\)\.name"),
        ("connectors: [", "not YAML"),
    ],
)
def test_bad_connectors_files_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_upstream(text)


def test_the_single_url_form_is_one_default_connector() -> None:
    (only,) = single_upstream("smpp://smsc:2775", 40.0, 128).connectors
    assert (only.name, only.url, only.tps, only.window, only.prefixes) == (
        "default",
        "smpp://smsc:2775",
        40,
        128,
        (),
    )
    with pytest.raises(ConfigError, match="TIERGATE_UPSTREAM_URL"):
        single_upstream("tcp://x:1", None, 64)


def test_the_example_fleet_connectors_parse() -> None:
    import yaml
    from tests.unit.chart.chart_helm import ROOT

    (config, _secret) = yaml.safe_load_all((ROOT / "examples" / "fleet" / "sender-config.yaml").read_text())
    (smsc,) = parse_upstream(config["data"]["connectors.yaml"]).connectors
    assert (smsc.name, smsc.tps, smsc.binds) == ("smsc", 500, 2)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"throttle": "yes"}, "throttle must be true or false"),
        ({"tps": 0}, "tps must be a positive number or null"),
        ({"tps": True}, "tps must be a positive number or null"),
        ({"reject_status": "ESME_NOPE"}, "reject_status must be one of"),
        ({"reject_prefixes": "+49"}, "reject_prefixes must be a list"),
        ({"volume": 11}, "unknown switches: volume"),
    ],
)
def test_smsc_switches_refuse_bad_values(body: dict[str, object], error: str) -> None:
    from tiergate_kits.smsc import Switches

    with pytest.raises(ValueError, match=error):
        Switches().changed(body)


def test_smsc_switches_change_only_what_is_given() -> None:
    from tiergate_kits.smsc import Switches

    on = Switches().changed({"throttle": True, "tps": 250, "reject_prefixes": ["+4930"]})
    assert on.view() == {
        "throttle": True,
        "tps": 250.0,
        "reject_all": False,
        "reject_status": "ESME_RSYSERR",
        "reject_prefixes": ["4930"],
        "silent": False,
    }
    assert on.changed({"tps": None}).view()["throttle"] is True
