"""Batched ids (`new_ids`) are the same kind of id as `new_id`: same time prefix, same alphabet."""

from __future__ import annotations

import pytest

from tiergate.store.ids import _ALPHABET, new_id, new_ids


def _value(id_: str) -> int:
    value = 0
    for ch in id_:
        value = value * 32 + _ALPHABET.index(ch)
    return value


@pytest.mark.parametrize("now", [0.0, 1_700_000_000.123, 1_800_000_000.999, 281_474_976_710.655])
def test_batched_ids_carry_the_same_time_as_single_ids(now: float) -> None:
    batch = new_ids(500, now)
    single = new_id(now)
    assert len(set(batch)) == 500
    for id_ in [*batch, single]:
        assert len(id_) == 26
        assert set(id_) <= set(_ALPHABET)
        assert _value(id_) >> 80 == int(now * 1000) & 0xFFFF_FFFF_FFFF
    assert {i[:10] for i in batch} == {single[:10]}


def test_batched_ids_sort_after_earlier_batches() -> None:
    first = new_ids(100, 1_700_000_000.000)
    later = new_ids(100, 1_700_000_000.001)
    assert max(first) < min(later)
    assert new_ids(0) == []


def test_random_part_uses_every_symbol() -> None:
    tails = "".join(i[10:] for i in new_ids(2000))
    assert set(tails) == set(_ALPHABET)


def test_random_symbols_are_equally_likely() -> None:
    tails = "".join(i[10:] for i in new_ids(20_000))
    expected = len(tails) / len(_ALPHABET)
    counts = [tails.count(symbol) for symbol in _ALPHABET]
    # 320,000 symbols, 10,000 expected each: a biased mapping is off by far more than 5 %.
    assert max(abs(n - expected) / expected for n in counts) < 0.05
