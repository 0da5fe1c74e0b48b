"""Message validation: encodings, segment counts and field errors, table-driven."""

from __future__ import annotations

import pytest

from tiergate.domain.messages import (
    Encoding,
    Rules,
    ValidationFailed,
    body_info,
    normalise_destination,
    sender_id_problem,
    validate_batch,
    validate_message,
)

RULES = Rules(traffic_classes=frozenset({"default", "bulk", "otp"}), max_segments=4, max_batch=3)
GOOD = {"destination": "+4915112345678", "sender_id": "Acme", "body": "hello", "customer_id": "cust-1"}


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        ("hello", Encoding.GSM7, 5, 1),
        ("a" * 160, Encoding.GSM7, 160, 1),
        ("a" * 161, Encoding.GSM7, 161, 2),
        ("a" * 306, Encoding.GSM7, 306, 2),
        ("a" * 307, Encoding.GSM7, 307, 3),
        ("€" * 80, Encoding.GSM7, 160, 1),
        ("€" * 81, Encoding.GSM7, 162, 2),
        ("a" * 152 + "€" + "a" * 10, Encoding.GSM7, 164, 2),
        ("äöüÄÖÜßèé@£$¥", Encoding.GSM7, 13, 1),
        ("{[]}~|^\\", Encoding.GSM7, 16, 1),
        ("Привет", Encoding.UCS2, 6, 1),
        ("ç", Encoding.UCS2, 1, 1),
        ("a" * 70 + "й", Encoding.UCS2, 71, 2),
        ("й" * 70, Encoding.UCS2, 70, 1),
        ("й" * 134, Encoding.UCS2, 134, 2),
        ("й" * 135, Encoding.UCS2, 135, 3),
        ("😀" * 35, Encoding.UCS2, 70, 1),
        ("😀" * 36, Encoding.UCS2, 72, 2),
        ("a" * 66 + "😀" + "a", Encoding.UCS2, 69, 1),
    ],
)
def test_body_info(body: str, encoding: Encoding, units: int, segments: int) -> None:
    info = body_info(body)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


def test_ucs2_surrogate_pair_is_not_split() -> None:
    # 66 units then a pair would straddle the 67-unit boundary: it moves to segment two.
    assert body_info("й" * 66 + "😀" + "й" * 10).segments == 2
    assert body_info("й" * 134).segments == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+4915112345678", "+4915112345678"),
        ("+14155552671", "+14155552671"),
        ("+447911123456", "+447911123456"),
        ("4915112345678", None),
        ("+49 151 12345678", None),
        ("+999123456", None),
        ("+1", None),
        ("+12345678901234567", None),
        ("", None),
        ("+491511234567a", None),
    ],
)
def test_normalise_destination(value: str, expected: str | None) -> None:
    assert normalise_destination(value) == expected


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("Acme", True),
        ("ACME Bank", True),
        ("12345", True),
        ("+4915112345678", True),
        ("123456789012345", True),
        ("1234567890123456", False),
        ("ABCDEFGHIJK", True),
        ("ABCDEFGHIJKL", False),
        ("Acme€", False),
        ("Acmé", True),
        ("\u0410cme", False),
        ("   ", False),
        ("+Acme", False),
        ("Ac\nme", False),
    ],
)
def test_sender_id(value: str, ok: bool) -> None:
    assert (sender_id_problem(value) is None) is ok


def test_valid_message_is_normalised() -> None:
    message = validate_message(
        {**GOOD, "traffic_class": "otp", "client_ref": "r-1", "idempotency_key": "k-1"}, RULES
    )
    assert message.destination == "+4915112345678"
    assert message.encoding is Encoding.GSM7
    assert message.segments == 1
    assert message.traffic_class == "otp"
    assert (message.client_ref, message.idempotency_key) == ("r-1", "k-1")


def test_customer_implied_by_token_and_traffic_class_defaulted() -> None:
    raw = {k: v for k, v in GOOD.items() if k != "customer_id"}
    message = validate_message(raw, RULES, customer_id="cust-9")
    assert message.customer_id == "cust-9"
    assert message.traffic_class == "default"


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"destination": "12345"}, "destination", "invalid_number"),
        ({"destination": 4915112345678}, "destination", "type"),
        ({"destination": None}, "destination", "required"),
        ({"sender_id": "WayTooLongSender"}, "sender_id", "invalid_sender_id"),
        ({"sender_id": ""}, "sender_id", "invalid_sender_id"),
        ({"body": ""}, "body", "empty"),
        ({"body": "a" * 700}, "body", "too_many_segments"),
        ({"body": "й" * 300}, "body", "too_many_segments"),
        ({"body": ["x"]}, "body", "type"),
        ({"body": "a\x00b"}, "body", "invalid_character"),
        ({"customer_id": "bad id!"}, "customer_id", "invalid"),
        ({"traffic_class": "vip"}, "traffic_class", "unknown"),
        ({"client_ref": "x" * 65}, "client_ref", "invalid"),
        ({"client_ref": "has space"}, "client_ref", "invalid"),
        ({"idempotency_key": ""}, "idempotency_key", "invalid"),
        ({"idempotency_key": "k" * 129}, "idempotency_key", "invalid"),
        ({"colour": "red"}, "colour", "unknown_field"),
    ],
)
def test_field_errors(change: dict[str, object], field: str, code: str) -> None:
    raw = {**GOOD, **change}
    if change.get(field, "") is None:
        del raw[field]
    with pytest.raises(ValidationFailed) as caught:
        validate_message(raw, RULES)
    assert [(e.field, e.code) for e in caught.value.errors] == [(field, code)]


def test_missing_customer_without_token() -> None:
    raw = {k: v for k, v in GOOD.items() if k != "customer_id"}
    with pytest.raises(ValidationFailed) as caught:
        validate_message(raw, RULES)
    assert caught.value.errors[0].field == "customer_id"


def test_customer_must_match_token() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_message(GOOD, RULES, customer_id="someone-else")
    assert (caught.value.errors[0].field, caught.value.errors[0].code) == ("customer_id", "forbidden")


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_message({"destination": "x", "sender_id": "", "body": ""}, RULES)
    assert {e.field for e in caught.value.errors} == {"destination", "sender_id", "body", "customer_id"}


def test_not_an_object() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_message(["x"], RULES)
    assert caught.value.errors[0].code == "type"


def test_batch_paths_name_the_item() -> None:
    raw = {"messages": [GOOD, {**GOOD, "body": ""}, {**GOOD, "destination": "1"}]}
    with pytest.raises(ValidationFailed) as caught:
        validate_batch(raw, RULES)
    assert [e.field for e in caught.value.errors] == ["messages[1].body", "messages[2].destination"]


@pytest.mark.parametrize(
    ("raw", "field", "code"),
    [
        ({"messages": [GOOD] * 4}, "messages", "too_many"),
        ({"messages": []}, "messages", "empty"),
        ({"messages": "x"}, "messages", "type"),
        ({}, "messages", "required"),
        ({"messages": [GOOD], "extra": 1}, "extra", "unknown_field"),
        ([GOOD], "", "type"),
    ],
)
def test_batch_shape(raw: object, field: str, code: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_batch(raw, RULES)
    assert (caught.value.errors[0].field, caught.value.errors[0].code) == (field, code)


def test_batch_ok() -> None:
    assert len(validate_batch({"messages": [GOOD, GOOD]}, RULES)) == 2
