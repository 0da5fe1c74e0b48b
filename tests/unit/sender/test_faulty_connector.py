"""The fault wrapper around a connector: what it reports and raises before and after the fault starts."""

from __future__ import annotations

import pytest

from tiergate.sender.connectors.base import Connector, FaultyConnector, Outbound
from tiergate.sender.errors import TransientError

MESSAGE = Outbound(message_id="m1", source="tiergate", destination="+447700900001", body="hi")


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


@pytest.mark.parametrize(
    ("share", "unbind", "failing", "bound", "error"),
    [
        (0.0, True, False, True, None),
        (0.0, True, True, False, "not-bound"),
        (1.0, False, False, True, None),
        (1.0, False, True, True, "fault"),
        (1.0, True, True, False, "not-bound"),
    ],
)
async def test_faulty_connector_holds_its_fault_only_while_failing(
    share: float, unbind: bool, failing: bool, bound: bool, error: str | None
) -> None:
    connector = FaultyConnector(_Upstream(), share, seed=1, unbind=unbind, failing=lambda: failing)
    assert connector.bound is bound
    if error is None:
        assert await connector.submit(MESSAGE) == "up-m1"
    else:
        with pytest.raises(TransientError) as caught:
            await connector.submit(MESSAGE)
        assert caught.value.code == error


async def test_faulty_connector_turns_when_the_clock_does() -> None:
    state = {"failing": False}
    connector = FaultyConnector(_Upstream(), 0.0, unbind=True, failing=lambda: state["failing"])
    assert connector.bound and await connector.submit(MESSAGE) == "up-m1"
    state["failing"] = True
    assert not connector.bound
