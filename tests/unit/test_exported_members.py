"""The public surface of the package, pinned: a name added, renamed or dropped is a decision.

Like httpx's ``tests/test_exported_members.py``: every name a public ``__all__`` lists exists,
and the lists themselves are written out here, so a change to them shows in review.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import tiergate
import tiergate.errors

PUBLIC = {
    "tiergate": ["__version__"],
    "tiergate.api": [
        "API_VERSION",
        "Check",
        "Condition",
        "GROUP",
        "HealthGate",
        "KIND",
        "OnFailure",
        "PLURAL",
        "Phase",
        "SenderTier",
        "SenderTierSpec",
        "SenderTierStatus",
        "VERSION",
    ],
    "tiergate.store": [
        "ClaimOutcome",
        "Clock",
        "Discard",
        "DiscardEvent",
        "DiscardFilter",
        "DiscardGroup",
        "DiscardPage",
        "Encoding",
        "EnqueueResult",
        "HistoryEntry",
        "InvalidRequest",
        "Message",
        "MessageFate",
        "MessageState",
        "MessageView",
        "NewMessage",
        "NewReplayJob",
        "NotFound",
        "QueueStats",
        "ReceiptUpdate",
        "Release",
        "ReplayJob",
        "ReplayState",
        "RetryLater",
        "SchemaTooNew",
        "SkipReason",
        "Store",
        "StoreCounters",
        "StoreError",
        "StoreUnavailable",
        "Submitted",
        "WebhookBacklog",
        "WebhookEvent",
        "WebhookResult",
        "WorkerIdentity",
        "WorkerOutcome",
        "new_id",
        "open_store",
    ],
    "tiergate.sender.errors": [
        "ConfigError",
        "PermanentError",
        "ThrottledError",
        "TransientError",
        "UnavailableError",
        "UpstreamError",
    ],
}

SUBPACKAGES = [
    "api",
    "cli",
    "clients",
    "controller",
    "domain",
    "errors",
    "httpbody",
    "httpserver",
    "monitoring",
    "replay",
    "sender",
    "store",
]

ERRORS = [
    "ConfigError",
    "ConflictError",
    "PermanentError",
    "PrometheusUnavailable",
    "ThrottledError",
    "TiergateError",
    "TransientError",
    "UnavailableError",
]


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_each_public_all_is_the_pinned_list_and_every_name_exists(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names {name}, which it does not define"


def test_the_top_level_modules_are_the_pinned_ones() -> None:
    assert sorted(m.name for m in pkgutil.iter_modules(tiergate.__path__)) == SUBPACKAGES


def test_the_error_tree_has_one_root_and_the_pinned_classes() -> None:
    classes = {
        n: v
        for n, v in vars(tiergate.errors).items()
        if isinstance(v, type) and v.__module__ == "tiergate.errors"
    }
    assert sorted(classes) == ERRORS
    assert all(issubclass(c, tiergate.errors.TiergateError) for c in classes.values())
