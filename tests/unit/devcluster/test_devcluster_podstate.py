"""Pod IPs, probe thresholds, restart backoff and pod status of the pod runner."""

from __future__ import annotations

import pytest

from tiergate_kits.devcluster.podstate import (
    ContainerView,
    IpPool,
    PoolExhaustedError,
    ProbeState,
    pod_phase,
    pod_status,
    restart_delay,
    should_restart,
)


def test_ip_pool_gives_unique_stable_addresses() -> None:
    pool = IpPool("127.2.0.0/16")
    a, b = pool.allocate("a"), pool.allocate("b")
    assert a != b
    assert pool.allocate("a") == a
    assert all(ip.startswith("127.2.") for ip in (a, b))
    pool.release("a")
    assert len(pool) == 1


def test_ip_pool_honours_preferred_address_when_free() -> None:
    pool = IpPool("127.2.0.0/16")
    assert pool.allocate("a", preferred="127.2.3.4") == "127.2.3.4"
    assert pool.allocate("b", preferred="127.2.3.4") != "127.2.3.4"
    assert pool.allocate("c", preferred="10.0.0.1").startswith("127.2.")
    assert pool.allocate("d", preferred="garbage").startswith("127.2.")


def test_ip_pool_skips_network_and_broadcast_like_addresses_and_exhausts() -> None:
    pool = IpPool("127.3.0.0/30")
    assert pool.allocate("a") == "127.3.0.1"
    assert pool.allocate("b") == "127.3.0.2"
    assert pool.allocate("c") == "127.3.0.3"
    with pytest.raises(PoolExhaustedError):
        pool.allocate("d")


def test_ip_pool_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        IpPool("10.0.0.0/8")


def run(state: ProbeState, outcomes: str, success: int, failure: int) -> list[bool]:
    seen = []
    for o in outcomes:
        state = state.observe(o == "+", success, failure)
        seen.append(state.ok)
    return seen


@pytest.mark.parametrize(
    ("initial", "outcomes", "success", "failure", "expected"),
    [
        (False, "+", 1, 3, [True]),
        (False, "++", 2, 3, [False, True]),
        (False, "+-+", 2, 3, [False, False, False]),
        (True, "--+-", 1, 3, [True, True, True, True]),
        (True, "---", 1, 3, [True, True, False]),
        (True, "---+", 1, 3, [True, True, False, True]),
        (False, "-", 1, 1, [False]),
    ],
)
def test_probe_thresholds(
    initial: bool, outcomes: str, success: int, failure: int, expected: list[bool]
) -> None:
    assert run(ProbeState(ok=initial), outcomes, success, failure) == expected


def test_restart_backoff_doubles_to_a_cap() -> None:
    assert [restart_delay(n) for n in range(7)] == [0, 1, 2, 4, 8, 16, 30]


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy: str, code: int, expected: bool) -> None:
    assert should_restart(policy, code) is expected


def test_pod_phase() -> None:
    creating = ContainerView(name="c", image="i")
    running = creating.with_(state={"running": {}}, started=True)
    done = creating.with_(terminal=True, exit_code=0)
    failed = creating.with_(terminal=True, exit_code=3)
    assert pod_phase([creating]) == "Pending"
    assert pod_phase([running]) == "Running"
    assert pod_phase([done]) == "Succeeded"
    assert pod_phase([done, failed]) == "Failed"
    assert pod_phase([creating.with_(restart_count=2)]) == "Running"


def conditions(status: dict[str, object]) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined]


def test_pod_status_ready_follows_containers_and_keeps_transition_times() -> None:
    c = ContainerView(name="c", image="i", state={"running": {"startedAt": "t0"}}, started=True)
    args = {"host_ip": "127.0.0.1", "pod_ip": "127.2.0.9", "start_time": "t0"}
    first = pod_status(previous=None, now="t1", containers=[c], **args)
    assert first["phase"] == "Running"
    assert first["podIP"] == "127.2.0.9"
    assert first["podIPs"] == [{"ip": "127.2.0.9"}]
    assert conditions(first)["Ready"]["status"] == "False"
    assert conditions(first)["Ready"]["reason"] == "ContainersNotReady"
    assert conditions(first)["PodScheduled"]["status"] == "True"

    second = pod_status(previous=first, now="t2", containers=[c], **args)
    assert conditions(second)["Ready"]["lastTransitionTime"] == "t1"

    ready = pod_status(previous=second, now="t3", containers=[c.with_(ready=True)], **args)
    assert conditions(ready)["Ready"] == {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "t3",
    }
    assert conditions(ready)["ContainersReady"]["status"] == "True"
    assert conditions(ready)["Initialized"]["lastTransitionTime"] == "t1"
    assert ready["containerStatuses"][0]["ready"] is True


def test_pod_status_reports_restarts_and_pid() -> None:
    c = ContainerView(
        name="c",
        image="i",
        restart_count=2,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last_state={"terminated": {"exitCode": 1}},
    )
    status = pod_status(
        previous=None,
        now="t",
        containers=[c],
        host_ip="h",
        pod_ip="p",
        start_time="t",
        pids={"c": 42},
    )
    (cs,) = status["containerStatuses"]
    assert cs["restartCount"] == 2
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert cs["lastState"] == {"terminated": {"exitCode": 1}}
    assert cs["containerID"] == "process://42"
