"""Body bytes on their way through a filter, copied only where the filter writes.

A body reaches the filter in frames and leaves it in the same frames unless
the filter changed them. The host keeps references, not copies:

* :class:`BodySlice` is one frame of a body delivered in chunks: a range of
  the message's own ``bytes``, no copy made.
* :func:`grow` makes the "before" body as frames arrive: a view of the
  message's body while part of it came, the very object once all of it did.
* :class:`HeldBody` is the body buffer the filter sees (Envoy's buffered
  body): the frames as they came, joined into one ``bytearray`` only when the
  filter writes (or reads several frames at once).
* :func:`joined` makes the "after" body from what was passed on: the
  "before" object itself when that is what went through, compared without a
  copy otherwise.

A 1 MiB body that the filter does not change is never copied, so it pays
neither the copy nor the page faults of fresh memory past the allocator's
mmap threshold.
"""

from __future__ import annotations

from collections.abc import Sequence


class BodySlice:
    """Bytes ``start:stop`` of ``base``, without a copy: one frame of a chunked body."""

    __slots__ = ("base", "start", "stop")

    def __init__(self, base: bytes, start: int, stop: int) -> None:
        self.base = base
        self.start = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __bool__(self) -> bool:
        return self.stop > self.start

    def __repr__(self) -> str:
        return f"BodySlice({len(self.base)} bytes, {self.start}:{self.stop})"

    def view(self) -> memoryview:
        """The bytes as a read-only view of ``base``."""
        return memoryview(self.base)[self.start : self.stop]


Chunk = bytes | bytearray | BodySlice
"""A body frame's payload: the sender's bytes, a slice of them, or bytes the
filter made (a ``bytearray``)."""

Readable = bytes | bytearray | memoryview
"""Bytes as the host reads them (``len``, slicing, buffer protocol)."""


def readable(chunk: Chunk) -> Readable:
    """``chunk`` as something with the buffer protocol (no copy)."""
    return chunk.view() if isinstance(chunk, BodySlice) else chunk


def grow(body: Readable, chunk: Chunk) -> Readable:
    """``body`` followed by ``chunk``: the "before" body as frames arrive.

    Consecutive slices of one message's body give a view of its start, and
    the body object itself once the last slice came; a single ``bytes``
    frame is kept as it is. Anything else is concatenated.
    """
    if not chunk:
        return body
    if isinstance(chunk, BodySlice):
        base = chunk.base
        size = len(body)
        if chunk.start == size and (
            size == 0 or (isinstance(body, memoryview) and body.obj is base)
        ):
            return base if chunk.stop == len(base) else memoryview(base)[: chunk.stop]
        return bytes(body) + chunk.view()
    if type(body) is not bytes:
        return bytes(body) + chunk
    return body + chunk


def as_bytes(body: Readable) -> bytes:
    """``body`` as ``bytes`` (a copy only of a view or a ``bytearray``)."""
    return body if type(body) is bytes else bytes(body)


class HeldBody:
    """The body bytes held at the filter: the buffer its body callbacks see.

    The frames stay as they arrived (references) until the filter writes,
    when they become one ``bytearray`` (:meth:`mutable`). Reads see the
    frames themselves (:meth:`view`): one frame, or consecutive slices of
    one body, are read without a copy; only frames of different origins are
    joined for a read (the one copy a body the filter does not change pays).
    """

    __slots__ = ("_parts", "data", "size")

    def __init__(self) -> None:
        self.data: bytearray | None = None
        """The held bytes joined into one ``bytearray`` (what the filter
        changes), frames that came after it excluded; ``None``: not made."""
        self._parts: list[Chunk] = []  # frames after it, as they came
        self.size = 0
        """Bytes in the frames held by reference (``data`` not counted):
        the buffer is empty when this is 0 and ``data`` is empty."""

    def __len__(self) -> int:
        data = self.data
        return self.size if data is None else self.size + len(data)

    def __bool__(self) -> bool:
        return self.size > 0 or bool(self.data)

    def __repr__(self) -> str:
        return f"HeldBody({len(self)} bytes)"

    def append(self, chunk: Chunk) -> None:
        """A frame arrived (held by reference)."""
        if chunk:
            self._parts.append(chunk)
            self.size += len(chunk)

    def mutable(self) -> bytearray:
        """The held bytes as one ``bytearray`` the caller may change."""
        data = self.data
        if data is None:
            data = self.data = bytearray()
        parts = self._parts
        if parts:
            for part in parts:
                data += readable(part)
            parts.clear()
            self.size = 0
        return data

    def view(self) -> Readable:
        """The held bytes to read: the frame itself when one is held."""
        data, parts = self.data, self._parts
        if not parts:
            return b"" if data is None else data
        if not data:
            if len(parts) == 1:
                return readable(parts[0])
            span = _span(parts)
            if span is not None:
                return span
        return self.mutable()

    def parts(self) -> list[Chunk]:
        """What is held, in order, without a copy."""
        data = self.data
        return [data, *self._parts] if data else list(self._parts)

    def take(self) -> list[Chunk]:
        """What is held, handed over (passed on): the buffer is empty after."""
        data, taken = self.data, self._parts
        if data:
            taken.insert(0, data)
        self.data = None
        self._parts = []
        self.size = 0
        return taken

    def clear(self) -> None:
        """Drop what is held."""
        self.data = None
        self._parts = []
        self.size = 0


def _span(parts: Sequence[Chunk]) -> Readable | None:
    # Consecutive slices of one body (a paused body delivered in chunks): one
    # view of them all, the body itself when they cover it.
    first = parts[0]
    if not isinstance(first, BodySlice):
        return None
    base, stop = first.base, first.stop
    for part in parts[1:]:
        if not isinstance(part, BodySlice) or part.base is not base:
            return None
        if part.start != stop:
            return None
        stop = part.stop
    if first.start == 0 and stop == len(base):
        return base
    return memoryview(base)[first.start : stop]


def joined(
    parts: Sequence[Chunk], received: Sequence[Chunk], before: Readable
) -> bytes:
    """The body made of ``parts``, shared with ``before`` when the same.

    Args:
        parts: what was passed on (and is still held), in order.
        received: every frame that reached the filter, in order; ``before``
            grew from them (and from nothing else when its size is theirs).
        before: the body as it arrived.

    Returns:
        ``before`` itself (as ``bytes``) when ``parts`` hold the same bytes;
        otherwise one new ``bytes``.
    """
    if len(parts) == 1 and parts[0] is before:
        return as_bytes(before)  # the one frame that came, passed on
    size = 0
    for part in parts:
        size += len(part)
    if size != len(before):
        return b"".join(map(readable, parts))
    if len(parts) == len(received) and all(
        a is b for a, b in zip(parts, received, strict=True)
    ):
        return as_bytes(before)  # the frames as they came: no compare needed
    whole = as_bytes(before)
    pos = 0
    for part in parts:
        end = pos + len(part)
        if not whole.startswith(readable(part), pos, end):
            return b"".join(map(readable, parts))
        pos = end
    return whole
