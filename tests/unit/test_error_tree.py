"""Every error tiergate raises on purpose is a `TiergateError`, and httpx's stay behind the replay client."""

from __future__ import annotations

import pytest

from tiergate.clients.replay import ReplayApiError, ReplayClient, ReplayUnavailable
from tiergate.clients.tiers import TierNotFound
from tiergate.domain.messages import ValidationFailed
from tiergate.errors import ConfigError, PermanentError, TiergateError, TransientError
from tiergate.replay.engine import RateAboveCap, WrongState
from tiergate.replay.filters import BadField
from tiergate.replay.settings import replay_settings
from tiergate.sender import errors as sender_errors
from tiergate.store import StoreError
from tiergate_kits.helpers import free_port


@pytest.mark.parametrize(
    "cls",
    [
        ConfigError,
        TransientError,
        PermanentError,
        StoreError,
        ReplayApiError,
        ReplayUnavailable,
        TierNotFound,
        ValidationFailed,
        BadField,
        RateAboveCap,
        WrongState,
    ],
)
def test_every_error_class_is_in_the_one_tree(cls: type[Exception]) -> None:
    assert issubclass(cls, TiergateError)


def test_the_sender_and_replay_name_the_same_classes_as_the_tree() -> None:
    assert sender_errors.TransientError is TransientError
    assert sender_errors.PermanentError is PermanentError
    assert sender_errors.ConfigError is ConfigError
    with pytest.raises(ConfigError):
        replay_settings(env={})


async def test_an_unreachable_replay_service_is_a_transient_error_not_an_httpx_one() -> None:
    async with ReplayClient(f"http://127.0.0.1:{free_port()}", "token", timeout=2) as client:
        with pytest.raises(ReplayUnavailable) as caught:
            await client.get_job("j")
    assert isinstance(caught.value, TransientError)
