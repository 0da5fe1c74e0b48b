"""The fault switch on an upstream: what it reports and draws before and after the fault starts."""

from __future__ import annotations

import pytest

from tiergate.sender.connectors.base import Connector, Outbound
from tiergate.sender.faults import Faults
from tiergate.sender.upstream import Upstream


class _Upstream(Connector):
    """An always-bound upstream that accepts every submit."""

    kind = "loopback"

    @property
    def bound(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def _submit(self, message: Outbound) -> str:
        return f"up-{message.message_id}"

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        return "smpp://127.0.0.1:2775"


@pytest.mark.parametrize(
    ("share", "no_bind", "failing", "bound", "fails"),
    [
        (0.0, True, False, True, False),
        (0.0, True, True, False, False),
        (1.0, False, False, True, False),
        (1.0, False, True, True, True),
        (1.0, True, True, False, True),
    ],
)
def test_an_upstream_holds_its_fault_only_while_failing(
    share: float, no_bind: bool, failing: bool, bound: bool, fails: bool
) -> None:
    faults = Faults(no_bind=no_bind, fail_submits=share, fail_after=30.0)
    upstream = Upstream.single(_Upstream(window=4), faults=faults, failing=lambda: failing, seed=1)
    assert upstream.bound is bound
    assert upstream.can_send() is bound
    assert (upstream.route("+447700900001") is not None) is bound
    assert (upstream.unserved() == []) is bound
    assert upstream.should_fail() is fails


def test_an_upstream_turns_unbound_when_the_fault_clock_does() -> None:
    state = {"failing": False}
    faults = Faults(no_bind=True, fail_after=30.0)
    upstream = Upstream.single(_Upstream(window=4), faults=faults, failing=lambda: state["failing"])
    assert upstream.bound and upstream.can_send()
    state["failing"] = True
    assert not upstream.bound and not upstream.can_send()
    assert upstream.unserved() == [""]
