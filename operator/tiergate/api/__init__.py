"""The SenderTier API: versioned pydantic models of the CRD, and the CRD generated from them.

The models load on first use of one of these names (PEP 562): `tiergate.api.durations` is
imported by the sender's domain and settings, and a process that serves messages has no use
for the CRD's pydantic models (building them took about 0.2 s and 14 MiB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tiergate.api.v1alpha1 import (
        API_VERSION,
        GROUP,
        KIND,
        PLURAL,
        VERSION,
        Check,
        Condition,
        HealthGate,
        OnFailure,
        Phase,
        SenderTier,
        SenderTierSpec,
        SenderTierStatus,
    )

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Check",
    "Condition",
    "HealthGate",
    "OnFailure",
    "Phase",
    "SenderTier",
    "SenderTierSpec",
    "SenderTierStatus",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tiergate.api import v1alpha1

        return getattr(v1alpha1, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
