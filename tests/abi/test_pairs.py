"""Serialized header maps: golden bytes, empty forms, limits, fuzzing."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmkit.abi import pairs
from wasmkit.abi.constants import MAX_PAIRS_BYTES, MAX_PAIRS_COUNT

# ABI reference §7.1: {"a": "1", "b": "22"} (the spec prints the digits as
# "0x49/0x50"; the real bytes are 0x31/0x32).
SPEC_EXAMPLE = bytes.fromhex(
    "02000000  01000000 01000000 01000000 02000000  61 00 31 00 62 00 3232 00"
)


def test_golden_bytes_of_the_spec_example():
    assert pairs.encode([(b"a", b"1"), (b"b", b"22")]) == SPEC_EXAMPLE
    assert pairs.decode(SPEC_EXAMPLE) == [(b"a", b"1"), (b"b", b"22")]


@pytest.mark.parametrize("empty", [b"", b"\x00", b"\x00\x00\x00\x00"])
def test_the_three_empty_forms_decode_to_no_pairs(empty):
    assert pairs.decode(empty) == []


def test_empty_map_encodes_as_a_zero_count():
    assert pairs.encode([]) == b"\x00\x00\x00\x00"


def test_order_repeats_and_empty_values_are_kept():
    items = [(b"x", b"1"), (b":path", b"/"), (b"x", b""), (b"", b"v")]
    assert pairs.decode(pairs.encode(items)) == items


def test_decode_accepts_bytearray_and_memoryview():
    assert pairs.decode(bytearray(SPEC_EXAMPLE)) == pairs.decode(
        memoryview(SPEC_EXAMPLE)
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01\x00", "too short"),
        (b"\x01\x00\x00\x00", "declares 1 pairs but has 4 bytes"),
        (b"\x01\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00ab\x00\x00", "past the end"),
        (b"\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00aXbX", "NUL-terminated"),
    ],
)
def test_malformed_maps_raise_pairs_error(raw, message):
    with pytest.raises(pairs.PairsError, match=message):
        pairs.decode(raw)


def test_pairs_error_is_a_value_error():
    assert issubclass(pairs.PairsError, ValueError)


def test_count_limit_is_1024_pairs():
    at_limit = [(b"k", b"v")] * MAX_PAIRS_COUNT
    assert MAX_PAIRS_COUNT == 1024
    assert pairs.decode(pairs.encode(at_limit)) == at_limit
    with pytest.raises(pairs.PairsError, match="1024"):
        pairs.decode(pairs.encode([*at_limit, (b"k", b"v")]))


def test_a_huge_declared_count_is_rejected_before_reading_lengths():
    with pytest.raises(pairs.PairsError, match="over the 1024 limit"):
        pairs.decode(struct.pack("<I", 0xFFFFFFFF) + b"\x00" * 64)


def test_size_limit_is_1_mib():
    assert MAX_PAIRS_BYTES == 1 << 20
    overhead = len(pairs.encode([(b"k", b"")]))
    at_limit = [(b"k", b"v" * (MAX_PAIRS_BYTES - overhead))]
    encoded = pairs.encode(at_limit)
    assert len(encoded) == MAX_PAIRS_BYTES
    assert pairs.decode(encoded) == at_limit
    over = pairs.encode([(b"k", b"v" * (MAX_PAIRS_BYTES - overhead + 1))])
    with pytest.raises(pairs.PairsError, match="1 MiB"):
        pairs.decode(over)


def test_byte_size_is_the_sum_of_names_and_values():
    assert pairs.byte_size([(b"ab", b"123"), (b"c", b"")]) == 6
    assert pairs.byte_size([]) == 0


header_maps = st.lists(
    st.tuples(st.binary(max_size=40), st.binary(max_size=40)), max_size=30
)


@given(header_maps)
def test_encode_decode_round_trip(items):
    encoded = pairs.encode(items)
    assert pairs.decode(encoded) == items
    assert len(encoded) == 4 + sum(8 + len(k) + len(v) + 2 for k, v in items)


@given(st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_raises_only_pairs_error(raw):
    try:
        out = pairs.decode(raw)
    except pairs.PairsError:
        return
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in out)


@given(header_maps, st.integers(min_value=0, max_value=2000), st.binary(max_size=8))
def test_decode_of_corrupted_maps_raises_only_pairs_error(items, index, junk):
    raw = bytearray(pairs.encode(items))
    pos = index % (len(raw) + 1)
    raw[pos : pos + len(junk)] = junk
    with contextlib.suppress(pairs.PairsError):
        pairs.decode(bytes(raw))
