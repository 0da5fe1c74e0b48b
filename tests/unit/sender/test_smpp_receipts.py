"""Delivery receipt text parsing of the SMPP connector (SMPP 3.4 appendix B), table-driven."""

from __future__ import annotations

import pytest

from tiergate.sender.connectors.smpp import receipt_fields

STAMP = "submit date:2611272130 done date:2611272131"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"id:S0000000001 sub:001 dlvrd:001 {STAMP} stat:DELIVRD err:000 text:",
            {"id": "S0000000001", "stat": "DELIVRD", "err": "000"},
        ),
        (
            f"id:abc-9 sub:001 dlvrd:000 {STAMP} stat:UNDELIV err:034 text:hello stat:DELIVRD",
            {"id": "abc-9", "stat": "UNDELIV", "err": "034"},
        ),
        (f"ID:77 {STAMP} STAT:expired Err:1", {"id": "77", "stat": "expired", "err": "1"}),
        ("sub:001 dlvrd:001 stat:DELIVRD", {"stat": "DELIVRD"}),
        ("text:id:1 stat:DELIVRD", {}),
        ("", {}),
    ],
)
def test_receipt_fields(text: str, expected: dict[str, str]) -> None:
    assert receipt_fields(text) == expected
