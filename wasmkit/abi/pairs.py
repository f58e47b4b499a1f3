"""Serialized header maps ("pairs"), the format of every map crossing the ABI.

Layout: ``u32 N``, then ``N`` times ``(u32 key_len, u32 value_len)``, then ``N``
times ``key 0x00 value 0x00``; integers little-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from wasmkit.abi.constants import MAX_PAIRS_BYTES, MAX_PAIRS_COUNT

Pairs = list[tuple[bytes, bytes]]


class PairsError(ValueError):
    """The bytes are not a valid serialized header map."""


def encode(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Serialize ``(name, value)`` byte pairs, order and repeats kept."""
    flat = [part for pair in pairs for part in pair]
    if not flat:
        return b"\0\0\0\0"
    # Keys and values alternate: "k0 0 v0 0 k1 0 v1 0 ...", sizes in that order.
    head = struct.pack(f"<{len(flat) + 1}I", len(flat) // 2, *map(len, flat))
    return head + b"\0".join(flat) + b"\0"


def decode(buf: bytes | bytearray | memoryview) -> Pairs:
    """Parse a serialized header map.

    Accepts the three empty forms hosts meet: no bytes, a single zero byte and
    ``N = 0``.

    Raises:
        PairsError: the bytes are truncated, inconsistent or over the limits
            (1 MiB, 1024 pairs).
    """
    raw = bytes(buf)
    size = len(raw)
    if size == 0 or raw == b"\0":
        return []
    if size > MAX_PAIRS_BYTES:
        raise PairsError(f"header map of {size} bytes is over the 1 MiB limit")
    if size < 4:
        raise PairsError(f"header map of {size} bytes is too short for its count")
    (count,) = struct.unpack_from("<I", raw, 0)
    if count > MAX_PAIRS_COUNT:
        raise PairsError(f"header map declares {count} pairs, over the 1024 limit")
    pos = 4 + 8 * count
    if pos > size:
        raise PairsError(f"header map declares {count} pairs but has {size} bytes")
    lengths = struct.unpack_from(f"<{2 * count}I", raw, 4)
    out: Pairs = []
    for i in range(count):
        klen = lengths[2 * i]
        vlen = lengths[2 * i + 1]
        end = pos + klen + 1 + vlen + 1
        if end > size:
            raise PairsError(f"pair {i} runs past the end of the header map")
        if raw[pos + klen] != 0 or raw[end - 1] != 0:
            raise PairsError(f"pair {i} is not NUL-terminated")
        out.append((raw[pos : pos + klen], raw[pos + klen + 1 : end - 1]))
        pos = end
    return out


def byte_size(pairs: Sequence[tuple[bytes, bytes]]) -> int:
    """Envoy's ``HeaderMap::byteSize()``: the sum of name and value lengths."""
    return sum(len(k) + len(v) for k, v in pairs)
