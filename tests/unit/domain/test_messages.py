"""Message validation: encodings, segment counts and field errors, table-driven; fast paths
checked against the definitions they shortcut."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from tiergate.domain.messages import (
    UNSURE,
    Delivery,
    Encoding,
    Rules,
    ValidationFailed,
    _accept,
    _check,
    _Collector,
    body_info,
    body_info_reference,
    fast_destination,
    normalise_destination,
    sender_id_problem,
    slow_destination,
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


# --- fast paths: each must agree with the definition it shortcuts ---------------------------


def _numbers() -> list[str]:
    """Example numbers of every region and type, mutated, plus seeded random numbers."""
    rng = random.Random(4)
    examples = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                examples.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    numbers = list(examples)
    for number in examples:
        digits = list(number[1:])
        at = rng.randrange(len(digits))
        numbers.append("+" + "".join([*digits[:at], str(rng.randrange(10)), *digits[at + 1 :]]))
        numbers.append("+" + "".join([*digits[:at], str(rng.randrange(10)), *digits[at:]]))
        numbers.append("+" + "".join(digits[:at] + digits[at + 1 :]))
        numbers.append(number[:-3] + f"{rng.randrange(1000):03d}")
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for _ in range(1500):
        code = str(rng.choice(codes))
        length = rng.randrange(1, 16 - len(code))
        numbers.append("+" + code + "".join(str(rng.randrange(10)) for _ in range(length)))
    return numbers


NUMBERS = _numbers()
TRICKY_NUMBERS = [
    "+4901511234567",  # national prefix after the country code: phonenumbers strips it
    "+390612345678",  # Italian leading zero
    "+11234567890",  # NANPA national prefix 1
    "+12015550123",
    "+16135550123",  # Canada, shares +1
    "+441624123456",  # Isle of Man number that is not valid
    "+441624612345",
    "+79161234567",
    "+77011234567",  # Kazakhstan, shares +7
    "+80012345678",  # non-geographic
    "+4915112345678\n",
    "+٤٩١٥١١٢٣٤٥٦٧٨",  # Arabic-Indic digits
    "+491",
    "+49",
    "+0",
    "+",
]


def test_fast_destination_agrees_with_phonenumbers_whenever_it_decides() -> None:
    decided = 0
    for number in NUMBERS + TRICKY_NUMBERS:
        fast = fast_destination(number)
        if fast is not UNSURE:
            decided += 1
            assert fast == slow_destination(number), number
    assert decided > len(NUMBERS) * 0.6, "the fast path should decide most plain numbers"
    assert sum(1 for n in NUMBERS if slow_destination(n)) > 1000, "the table needs valid numbers"


@pytest.mark.parametrize("number", TRICKY_NUMBERS)
def test_normalise_destination_matches_phonenumbers_on_tricky_input(number: str) -> None:
    assert normalise_destination(number) == slow_destination(number)
    assert normalise_destination(number, strict=False) == slow_destination(number, strict=False)


def test_fast_destination_defers_what_needs_phonenumbers() -> None:
    for number in ("+4901511234567", "+390612345678", "+11234567890", "+80012345678", "+٤٩١٥١١٢٣٤٥٦٧٨"):
        assert fast_destination(number) is UNSURE


def _bodies() -> list[str]:
    rng = random.Random(5)
    alphabets = ["a", "€", "{", "é", "й", "😀", "\n", "ç", "Ω"]
    bodies = [
        "",
        "\ud83d",  # a lone surrogate counts one unit
        "a" * 152 + "€",
        "a" * 152 + "€" * 2,
        "€" * 77 + "a",
        "й" * 66 + "😀",
        "a" * 66 + "😀" * 2,
    ]
    for length in (1, 69, 70, 71, 133, 134, 135, 152, 153, 154, 159, 160, 161, 305, 306, 307, 459, 460):
        for mix in (["a"], ["a", "€"], ["a", "й"], ["й", "😀"], ["a", "{", "é"], alphabets):
            bodies.append("".join(rng.choice(mix) for _ in range(length)))
    return bodies


@pytest.mark.parametrize("body", _bodies())
def test_body_info_agrees_with_the_reference(body: str) -> None:
    assert body_info(body) == body_info_reference(body)


BAD_INPUTS: list[object] = [
    {**GOOD, "destination": "12345"},
    {**GOOD, "destination": 4915112345678},
    {k: v for k, v in GOOD.items() if k != "destination"},
    {**GOOD, "sender_id": ""},
    {**GOOD, "sender_id": None},
    {**GOOD, "body": ""},
    {**GOOD, "body": "a" * 700},
    {**GOOD, "body": "a\x00b"},
    {**GOOD, "body": ["x"]},
    {**GOOD, "customer_id": "bad id!"},
    {**GOOD, "customer_id": 7},
    {**GOOD, "customer_id": "someone-else"},
    {**GOOD, "traffic_class": "vip"},
    {**GOOD, "traffic_class": ""},
    {**GOOD, "client_ref": "x" * 65},
    {**GOOD, "client_ref": ""},
    {**GOOD, "idempotency_key": "has space"},
    {**GOOD, "idempotency_key": 5},
    {**GOOD, "colour": "red"},
    ["x"],
    None,
]
GOOD_INPUTS: list[object] = [
    GOOD,
    {**GOOD, "traffic_class": "otp", "client_ref": "r-1", "idempotency_key": "k-1"},
    {**GOOD, "traffic_class": None, "client_ref": None},
    {k: v for k, v in GOOD.items() if k != "customer_id"},
    {**GOOD, "body": "Привет " * 20, "destination": "+447400123456"},
    {**GOOD, "destination": "+390612345678"},
]


@pytest.mark.parametrize("raw", BAD_INPUTS + GOOD_INPUTS)
def test_one_pass_check_accepts_exactly_what_the_full_check_accepts(raw: object) -> None:
    customer = "cust-1"
    out = _Collector("")
    full = _check(raw, RULES, customer, out)
    quick = _accept(raw, RULES, customer)
    if out.errors:
        assert quick is None
    else:
        assert full is not None
        assert quick == full
    if raw in GOOD_INPUTS:
        assert quick is not None


NOW = 1_899_936_000.0  # 2030-03-17T00:00:00Z
SIGNING = Delivery(can_sign=True)


def _one(extra: dict[str, object], delivery: Delivery = SIGNING, rules: Rules = RULES) -> object:
    return validate_message({**GOOD, **extra}, rules, delivery=delivery, now=NOW)


@pytest.mark.parametrize(
    ("extra", "expires_at", "send_at"),
    [
        ({"validity": "90s"}, NOW + 90, None),
        ({"validity": "1h30m"}, NOW + 5400, None),
        ({"validity": "2030-03-17T11:00:00Z"}, NOW + 39_600, None),
        ({"send_at": "2030-03-17T02:00:00+01:00"}, None, NOW + 3_600),
        ({"send_at": "2030-03-17T01:00:00Z", "validity": "10m"}, NOW + 3_600 + 600, NOW + 3_600),
        ({"send_at": "2020-01-01T00:00:00Z"}, None, NOW),
    ],
)
def test_validity_and_send_at(
    extra: dict[str, object], expires_at: float | None, send_at: float | None
) -> None:
    message = _one(extra)
    assert message.expires_at == expires_at  # type: ignore[attr-defined]
    assert message.send_at == send_at  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "field", "code"),
    [
        ({"validity": "soon"}, "validity", "invalid"),
        ({"validity": 60}, "validity", "type"),
        ({"validity": "2030-03-17T11:00:00"}, "validity", "invalid"),
        ({"validity": "0s"}, "validity", "in_past"),
        ({"validity": "2020-01-01T00:00:00Z"}, "validity", "in_past"),
        ({"validity": "73h"}, "validity", "too_long"),
        ({"send_at": "tomorrow"}, "send_at", "invalid"),
        ({"send_at": "2031-01-01T00:00:00Z"}, "send_at", "too_far"),
        ({"send_at": "2030-03-17T01:00:00Z", "validity": "2030-03-17T00:30:00Z"}, "validity", "in_past"),
        ({"callback_url": "http://hooks.example/x"}, "callback_url", "invalid"),
        ({"callback_url": "http://127.0.0.1:9/x"}, "callback_url", "invalid"),
        ({"callback_url": "https://user:pw@hooks.example/x"}, "callback_url", "invalid"),
        ({"callback_url": "https:///x"}, "callback_url", "invalid"),
        ({"callback_url": "https://hooks.example/" + "x" * 2048}, "callback_url", "invalid"),
        ({"callback_url": "ftp://hooks.example/x"}, "callback_url", "invalid"),
    ],
)
def test_delivery_option_errors_name_the_field(extra: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(ValidationFailed) as failed:
        _one(extra)
    assert [(e.field, e.code) for e in failed.value.errors] == [(field, code)]


def test_a_callback_needs_a_secret_to_sign_with() -> None:
    with pytest.raises(ValidationFailed) as failed:
        _one({"callback_url": "https://hooks.example/x"}, delivery=Delivery())
    assert [(e.field, e.code) for e in failed.value.errors] == [("callback_url", "no_secret")]


def test_http_callbacks_on_loopback_only_with_the_test_switch() -> None:
    rules = Rules(traffic_classes=RULES.traffic_classes, allow_http_loopback_callbacks=True)
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/hook"):
        assert _one({"callback_url": url}, rules=rules).callback_url == url  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed):
        _one({"callback_url": "http://10.0.0.1/hook"}, rules=rules)


def test_the_customer_default_callback_applies_on_both_paths() -> None:
    delivery = Delivery(default_callback_url="https://hooks.example/default", can_sign=True)
    fast = validate_message(GOOD, RULES, delivery=delivery, now=NOW)
    assert fast.callback_url == "https://hooks.example/default"
    slow = _one({"validity": "1m"}, delivery=delivery)
    assert slow.callback_url == "https://hooks.example/default"  # type: ignore[attr-defined]
    own = _one({"callback_url": "https://own.example/h"}, delivery=delivery)
    assert own.callback_url == "https://own.example/h"  # type: ignore[attr-defined]


def test_batch_errors_name_the_message_and_field() -> None:
    raw = {"messages": [GOOD, {**GOOD, "validity": "forever"}]}
    with pytest.raises(ValidationFailed) as failed:
        validate_batch(raw, RULES, now=NOW)
    assert [(e.field, e.code) for e in failed.value.errors] == [("messages[1].validity", "invalid")]
