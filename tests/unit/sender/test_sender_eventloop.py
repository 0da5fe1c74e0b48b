"""The event loop choice of the sender processes, and the queue-statistics pacing of the API."""

from __future__ import annotations

import asyncio

import pytest
import uvloop  # a dependency of the package on every platform the sender runs on

from tiergate.sender.api import STATS_SHARE, stats_pause
from tiergate.sender.errors import ConfigError
from tiergate.sender.eventloop import loop_factory, run


def test_asyncio_choice_means_the_standard_loop() -> None:
    assert loop_factory("asyncio") is None


def test_auto_picks_uvloop_when_installed() -> None:
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop


def test_unknown_choice_is_refused() -> None:
    with pytest.raises(ConfigError, match="TIERGATE_EVENT_LOOP"):
        loop_factory("trio")


def test_environment_picks_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERGATE_EVENT_LOOP", "asyncio")

    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(loop_type()).startswith("asyncio")


@pytest.mark.parametrize(
    ("interval", "took", "pause"),
    [(0.5, 0.001, 0.5), (0.5, 0.1, 0.1 / STATS_SHARE), (2.0, 0.05, 2.0)],
)
def test_stats_query_is_kept_to_a_share_of_the_time(interval: float, took: float, pause: float) -> None:
    assert stats_pause(interval, took) == pytest.approx(pause)
