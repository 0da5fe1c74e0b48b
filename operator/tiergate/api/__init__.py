"""The SenderTier API: versioned pydantic models of the CRD, and the CRD generated from them."""

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
