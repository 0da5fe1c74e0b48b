"""Delivery receipt text parsing of the SMPP connector (SMPP 3.4 appendix B), table-driven."""

from __future__ import annotations

import random

import pytest
from aiosmpplib import DeliverSm, OptionalParam, PhoneNumber, SmppMessage
from aiosmpplib.protocol import DEFAULT_ENCODING
from aiosmpplib.state import RECEIPTED_MESSAGE_ID, SAR_MSG_REF_NUM, SAR_SEGMENT_SEQNUM, SAR_TOTAL_SEGMENTS

from tiergate.sender.connectors.base import Receipt
from tiergate.sender.connectors.smpp import fast_receipt, receipt_fields, receipt_of

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


# --- the fast path reads the same receipt as aiosmpplib's decoder, or steps aside ---------

RECEIPT = f"id:S0000000001 sub:001 dlvrd:001 {STAMP} stat:DELIVRD err:000 text:"


def _pdu(
    text: str,
    *,
    esm_class: int = 0x04,
    encoding: str | None = None,
    params: list[OptionalParam] | None = None,
    payload: bool = False,
) -> bytes:
    deliver = DeliverSm(
        sequence_num=7,
        short_message="" if payload else text,
        message_payload=text if payload else "",
        source=PhoneNumber("447700900123"),
        destination=PhoneNumber("ACME"),
        esm_class=esm_class,
        encoding=encoding,
        optional_params=params,
        auto_message_payload=False,
    )
    return bytes(deliver.pdu())


def _slow(pdu: bytes, default: str = DEFAULT_ENCODING) -> Receipt | None:
    header = SmppMessage.parse_header(pdu)
    deliver = DeliverSm.from_pdu(pdu, header, default, None)
    receipt = receipt_of(deliver)
    return None if receipt is None or deliver.is_segmented() else receipt


def _fast(pdu: bytes, default: str = DEFAULT_ENCODING) -> Receipt | None:
    return fast_receipt(pdu, len(pdu), default)


@pytest.mark.parametrize(
    "pdu",
    [
        _pdu(RECEIPT),
        _pdu(RECEIPT + "your code is 123456"),
        _pdu(RECEIPT + "odd @ _ $ [text] ~ é after the id part"),
        _pdu(RECEIPT.replace("DELIVRD", "UNDELIV").replace("000", "034", 1)),
        _pdu(f"ID:abc-9 {STAMP} STAT:expired Err:1 Text:x"),
        _pdu(RECEIPT, encoding="ascii"),
        _pdu(RECEIPT, encoding="latin_1"),
        _pdu(RECEIPT, params=[OptionalParam(RECEIPTED_MESSAGE_ID, "S0000000001")]),
    ],
    ids=["plain", "with-text", "odd-text", "undeliv", "cases", "ia5", "latin1", "id-tlv-too"],
)
def test_common_receipts_are_read_from_the_bytes_as_the_decoder_reads_them(pdu: bytes) -> None:
    fast = _fast(pdu)
    assert fast is not None
    assert fast == _slow(pdu)


@pytest.mark.parametrize(
    "pdu",
    [
        _pdu("hello, an ordinary message", esm_class=0x00),
        _pdu(RECEIPT.replace("DELIVRD", "ENROUTE")),
        _pdu("sub:001 stat:DELIVRD err:000", params=[OptionalParam(RECEIPTED_MESSAGE_ID, "T-42")]),
        _pdu(RECEIPT.replace("id:S0000000001", "id:S_00@1")),
        _pdu(RECEIPT.replace(" stat:", "\nstat:")),
        _pdu(RECEIPT, encoding="ucs2"),
        _pdu(
            RECEIPT,
            params=[
                OptionalParam(SAR_MSG_REF_NUM, 9),
                OptionalParam(SAR_TOTAL_SEGMENTS, 2),
                OptionalParam(SAR_SEGMENT_SEQNUM, 1),
            ],
        ),
        _pdu(RECEIPT, payload=True),
    ],
    ids=[
        "not-a-receipt",
        "not-final",
        "id-only-in-tlv",
        "odd-id",
        "newline",
        "ucs2",
        "segmented",
        "payload-tlv",
    ],
)
def test_anything_unusual_goes_to_the_decoder(pdu: bytes) -> None:
    assert _fast(pdu) is None


def test_a_custom_default_alphabet_goes_to_the_decoder() -> None:
    assert _fast(_pdu(RECEIPT), default="ucs2") is None


@pytest.mark.parametrize("seed", range(20))
def test_random_receipt_texts_never_read_differently(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "abcdefxyzABCDEFXYZ0123456789 :-_@$[]~\n\r\t" + "éÄ€"
    read = 0
    for _ in range(200):
        fields = [
            f"id:{''.join(rng.choices(alphabet[:36] + '-_@', k=rng.randint(0, 12)))}",
            f"sub:001 dlvrd:001 {STAMP}",
            f"stat:{rng.choice(['DELIVRD', 'UNDELIV', 'ENROUTE', 'delivrd', 'REJECTD'])}",
            f"err:{rng.randint(0, 999):03d}",
            f"text:{''.join(rng.choices(alphabet, k=rng.randint(0, 20)))}",
        ]
        rng.shuffle(fields)
        text = rng.choice([" ", "  ", "\n"]).join(fields)
        encoding = rng.choice([None, "gsm0338", "ascii", "latin_1"])
        try:
            pdu = _pdu(text, encoding=encoding)
        except ValueError:
            continue  # a character the chosen alphabet cannot carry
        fast = _fast(pdu)
        if fast is not None:
            read += 1
            assert fast == _slow(pdu), text
    assert read > 0
