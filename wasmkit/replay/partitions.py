"""Partitions of a capture: flow ranges that each worker reads from the path.

A capture is indexed once: after the warm-load cache
(:mod:`wasmkit.traffic.cache`) holds its exchanges, :func:`index_capture`
notes the byte offset and row count of each of the cache entry's batches and
keeps that index beside the entry (``<entry>.parts``, under the same key, so
an edited capture is indexed again). :func:`plan` cuts the replayed rows into
contiguous partitions, and a worker given a :class:`Slice` seeks straight to
its first batch (:func:`read_slices`), so flows never travel through the
process that submitted the replay.

A worker that cannot see the submitting machine's cache entry (another
machine, a cache directory that is not shared) indexes the capture itself
from the same path, in its own warm-load cache: once per machine and capture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import marshal
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasmkit.errors import CaptureReadError
from wasmkit.replay import sources
from wasmkit.traffic import cache, load_capture
from wasmkit.traffic.model import Exchange

INDEX_FORMAT = 1
"""Bumped when the index file's layout changes."""

_MAGIC = "wasmkit-capture-parts"


@dataclass(frozen=True, slots=True)
class FileIndex:
    """Where each batch of one capture's cache entry starts."""

    capture: str
    """The capture (absolute path, or its ``fsspec`` URL as given)."""
    entry: str
    """Its warm-load cache entry (absolute path)."""
    size: int
    """The entry's size (bytes): a worker checks it sees the same entry."""
    frames: tuple[tuple[int, int], ...]
    """Per batch: its byte offset in the entry and its number of exchanges."""
    flows: int
    """Flows in the capture, skipped ones included (how later files number on)."""
    last_index: int
    """The last exchange's index (-1: none)."""
    first_stamp: float | None
    """The first finite timestamp of an exchange (virtual time zero)."""
    skipped: dict[str, int]
    """Flows not replayed, by kind."""

    @property
    def rows(self) -> int:
        """Exchanges in the capture."""
        return sum(n for _, n in self.frames)


@dataclass(frozen=True, slots=True)
class Slice:
    """Rows ``row`` to ``row + count`` of one capture's exchanges."""

    capture: str
    decoded: bool
    entry: str
    size: int
    row: int
    count: int
    offset: int
    """Byte offset of the entry's batch holding ``row``."""
    skip: int
    """Rows of that batch before ``row``."""
    shift: int
    """Added to each index (later files of a multi-file replay number on)."""


@dataclass(frozen=True, slots=True)
class Partition:
    """One task's flows: positions ``positions`` of the replay."""

    number: int
    positions: range
    slices: tuple[Slice, ...] = ()
    exchanges: tuple[Any, ...] | None = None
    """The exchanges themselves, when they are not read from a path."""


def _index_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".parts")


def _scan(capture: str, entry: Path) -> FileIndex:
    # One pass over the entry: each batch's offset and rows, and the trailer.
    frames: list[tuple[int, int]] = []
    first: float | None = None
    last = -1
    with open(entry, "rb") as fo:
        header, pos = cache.read_frame(fo)
        if header != (cache.MAGIC, cache.FORMAT):
            raise ValueError("not a wasmkit capture cache entry of this format")
        while True:
            frame, took = cache.read_frame(fo)
            if isinstance(frame, tuple):
                if len(frame) != 2 or frame[0] != "end":
                    raise ValueError("bad cache trailer")
                stats = frame[1]
                break
            frames.append((pos, len(frame)))
            if frame:
                last = frame[-1][0]
            if first is None:
                for row in frame:
                    stamp = cache.decode(row).timestamp
                    if stamp is not None and math.isfinite(stamp):
                        first = stamp
                        break
            pos += took
        size = os.fstat(fo.fileno()).st_size
    return FileIndex(
        capture=capture,
        entry=str(entry),
        size=size,
        frames=tuple(frames),
        flows=int(stats["flows"]),
        last_index=last,
        first_stamp=first,
        skipped=dict(stats["skipped"]),
    )


def _load_index(path: Path, capture: str, entry: Path) -> FileIndex | None:
    try:
        raw = marshal.loads(path.read_bytes())
        magic, version, fields = raw
        if magic != _MAGIC or version != INDEX_FORMAT:
            return None
        index = FileIndex(
            capture=capture,
            entry=str(entry),
            size=fields[0],
            frames=tuple(tuple(f) for f in fields[1]),
            flows=fields[2],
            last_index=fields[3],
            first_stamp=fields[4],
            skipped=dict(fields[5]),
        )
    except (OSError, ValueError, EOFError, TypeError, IndexError):
        return None
    return index if index.size == _size(entry) else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _save_index(index: FileIndex, entry: Path) -> None:
    fields = (
        index.size,
        list(index.frames),
        index.flows,
        index.last_index,
        index.first_stamp,
        index.skipped,
    )
    target = _index_path(entry)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(marshal.dumps((_MAGIC, INDEX_FORMAT, fields)))
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return  # a read-only cache only costs the scan next time
    # The indexes of the capture's earlier states go with their entries.
    prefix = entry.name.split("-", 1)[0] + "-"
    for old in entry.parent.glob(prefix + "*.exchanges.parts"):
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()


def index_capture(path: str | os.PathLike[str], *, decoded: bool) -> FileIndex | None:
    """The batch index of ``path``'s warm-load cache entry, made if needed.

    ``path`` may be an ``fsspec`` URL (:mod:`wasmkit.replay.sources`): the
    index is then the URL's, read from this machine's copy of the file.
    Reads the capture to the end first when the cache has no entry for it
    (which fills the cache). ``None``: no entry can be made (the capture is
    damaged, or the cache directory is not writable); then the caller reads
    the capture itself.

    Raises:
        CaptureError: the file cannot be opened.
        CaptureFormatError: it is not a capture.
    """
    name = sources.name_of(path)
    capture = sources.local_path(path).absolute()
    try:
        entry = cache.entry_path(capture, decoded=decoded)
    except OSError:
        return None  # reading it reports the problem
    known = _load_index(_index_path(entry), name, entry)
    if known is not None:
        return known
    if not entry.is_file():
        try:
            with load_capture(capture, decoded=decoded) as exchanges:
                for _ in exchanges:
                    pass
        except CaptureReadError:
            return None
        try:
            entry = cache.entry_path(capture, decoded=decoded)
        except OSError:
            return None
        if not entry.is_file():
            return None
    try:
        index = _scan(name, entry)
    except (OSError, ValueError, EOFError):
        return None
    _save_index(index, entry)
    return index


def plan(
    indexes: Sequence[FileIndex],
    *,
    decoded: bool,
    limit: int | None,
    partitions: int,
) -> list[Partition]:
    """Cut the rows of ``indexes`` (in order, at most ``limit``) into partitions.

    Contiguous, near-equal flow ranges, at most ``partitions`` of them (fewer
    when there are fewer rows).
    """
    total = sum(ix.rows for ix in indexes)
    if limit is not None:
        total = min(total, limit)
    parts: list[Partition] = []
    for number, positions in enumerate(split(total, partitions)):
        parts.append(
            Partition(number, positions, tuple(_slices(indexes, positions, decoded)))
        )
    return parts


def _slices(
    indexes: Sequence[FileIndex], positions: range, decoded: bool
) -> Iterator[Slice]:
    # The rows of ``positions`` file by file, each from its batch's offset.
    base = 0  # the file's first position
    shift = 0  # what its indexes are shifted by
    for ix in indexes:
        rows = ix.rows
        start = max(positions.start, base)
        stop = min(positions.stop, base + rows)
        if start < stop:
            row = start - base
            offset, skip = locate(ix, row)
            yield Slice(
                ix.capture, decoded, ix.entry, ix.size, row, stop - start,
                offset, skip, shift,
            )  # fmt: skip
        base += rows
        shift += max(ix.flows, ix.last_index + 1)


def locate(index: FileIndex, row: int) -> tuple[int, int]:
    """The byte offset of the batch holding ``row`` and the rows before it there."""
    first = 0
    for offset, count in index.frames:
        if row < first + count:
            return offset, row - first
        first += count
    raise IndexError(f"row {row} is past the capture's {first} exchanges")


def split(count: int, parts: int) -> list[range]:
    """Contiguous, near-equal ranges of ``range(count)``, at most ``parts``."""
    parts = max(1, min(parts, count))
    size, extra = divmod(count, parts)
    out, start = [], 0
    for k in range(parts):
        stop = start + size + (1 if k < extra else 0)
        out.append(range(start, stop))
        start = stop
    return [r for r in out if len(r)]


def read_slices(slices: Sequence[Slice]) -> Iterator[Exchange]:
    """The exchanges of ``slices``, in order, read from their cache entries.

    An entry this machine does not see as the submitting one did (another
    machine, another cache) is replaced by this machine's own entry for the
    same capture path, made and indexed here if needed.

    Raises:
        CaptureError: the capture cannot be read here.
    """
    for s in slices:
        entry, offset, skip = Path(s.entry), s.offset, s.skip
        if _size(entry) != s.size:
            entry, offset, skip = _here(s)
        yield from _rows(entry, offset, skip, s.count, s.shift)


def _here(s: Slice) -> tuple[Path, int, int]:
    from wasmkit.errors import CaptureError

    index = index_capture(s.capture, decoded=s.decoded)
    if index is None or index.rows < s.row + s.count:
        raise CaptureError(
            f"{s.capture}: this worker cannot read flows {s.row} to "
            f"{s.row + s.count - 1} of the capture (is it on storage every "
            "worker shares, unchanged?)"
        )
    offset, skip = locate(index, s.row)
    return Path(index.entry), offset, skip


def _rows(
    entry: Path, offset: int, skip: int, count: int, shift: int
) -> Iterator[Exchange]:
    decode = cache.decode
    with open(entry, "rb") as fo:
        fo.seek(offset)
        while count > 0:
            frame, _ = cache.read_frame(fo)
            if not isinstance(frame, list):
                raise EOFError(f"{entry}: fewer exchanges than its index says")
            rows = frame[skip : skip + count]
            skip = 0
            count -= len(rows)
            if shift:
                for row in rows:
                    yield dataclasses.replace(decode(row), index=row[0] + shift)
            else:
                for row in rows:
                    yield decode(row)


class Rows:
    """A partition's exchanges for the submitting process, read when asked for.

    Kept flows rebuild their states from their exchanges; those are read
    again from the cache entry a batch at a time, when a flow is first read.
    """

    __slots__ = ("_batches", "_exchanges", "_indexes", "_slices")

    def __init__(
        self, partition: Partition, indexes: dict[str, FileIndex] | None = None
    ) -> None:
        self._exchanges = partition.exchanges
        self._slices = partition.slices
        self._indexes = indexes or {}
        self._batches: dict[int, list[Exchange]] = {}

    def get(self, position: int) -> Any:
        """The exchange at ``position`` within the partition."""
        if self._exchanges is not None:
            return self._exchanges[position]
        batch = position // READ_BATCH
        found = self._batches.get(batch)
        if found is None:
            found = self._batches[batch] = self._read(batch * READ_BATCH)
        return found[position % READ_BATCH]

    def _read(self, start: int) -> list[Exchange]:
        # READ_BATCH exchanges from ``start``, across the slices.
        want: list[Slice] = []
        base = 0
        for s in self._slices:
            lo = max(start, base)
            hi = min(start + READ_BATCH, base + s.count)
            if lo < hi:
                row = s.row + lo - base
                want.append(dataclasses.replace(s, row=row, count=hi - lo))
            base += s.count
        out: list[Exchange] = []
        for s in want:
            index = self._indexes.get(s.entry)
            if index is None:
                index = self._indexes[s.entry] = _scan(s.capture, Path(s.entry))
            offset, skip = locate(index, s.row)
            out += _rows(Path(index.entry), offset, skip, s.count, s.shift)
        return out


READ_BATCH = 512
"""Exchanges the submitting process reads back at once (a cache batch)."""
