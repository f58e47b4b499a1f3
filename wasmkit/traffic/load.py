"""Load captures for replay: one or more files, a limit, a filter, a warm cache."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from wasmkit.traffic import cache
from wasmkit.traffic.model import CaptureStats, Exchange, Skipped

if TYPE_CHECKING:
    from wasmkit.traffic.mitm import CaptureFormat

PathArg = str | os.PathLike[str]


class Capture(Iterator[Exchange]):
    """The exchanges of one or more captures, read lazily, with running counts.

    Iterate it (once) for :class:`Exchange` objects in capture order; skipped
    flows are counted in :attr:`stats`, not yielded. It holds an open file while
    iterating: :meth:`close` it, or use it as a context manager, if you stop
    early. Errors surface during iteration, after every exchange before them
    (see :func:`load_capture`).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        decoded: bool,
        limit: int | None,
        filter_expr: str | None,
        use_cache: bool,
        cache_dir: Path | None,
    ) -> None:
        self.paths = list(paths)
        """The capture files, in reading order."""
        self._decoded = decoded
        self._limit = limit
        self._filter = filter_expr
        self._use_cache = use_cache and filter_expr is None
        self._cache_dir = cache_dir
        self._done: list[CaptureStats] = []
        self._current = CaptureStats()
        self._yielded = 0
        self._gen = self._run()

    @property
    def stats(self) -> CaptureStats:
        """Counts so far, summed over the files (complete once iteration ends)."""
        total = CaptureStats()
        parts = [*self._done, self._current]
        for part in parts:
            total.flows += part.flows
            total.exchanges += part.exchanges
            total.request_only += part.request_only
            total.websocket_messages += part.websocket_messages
            total.filtered_out += part.filtered_out
            for kind, n in part.skipped.items():
                total.skipped[kind] = total.skipped.get(kind, 0) + n
        real = [p for p in parts if p.path is not None]
        if real:
            last = real[-1]
            total.path, total.format = last.path, last.format
            total.format_version = last.format_version
            total.from_cache = all(p.from_cache for p in real)
        return total

    def __iter__(self) -> Capture:
        return self

    def __next__(self) -> Exchange:
        return next(self._gen)

    def close(self) -> None:
        """Stop reading and close the file (an unfinished cache entry is dropped)."""
        self._gen.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _full(self) -> bool:
        return self._limit is not None and self._yielded >= self._limit

    def _run(self) -> Generator[Exchange, None, None]:
        offset = 0
        for path in self.paths:
            if self._full():
                return
            last = -1
            exchanges = self._one(path)
            try:
                for exchange in exchanges:
                    last = exchange.index
                    self._yielded += 1
                    yield (
                        exchange
                        if not offset
                        else dataclasses.replace(
                            exchange, index=exchange.index + offset
                        )
                    )
                    if self._full():
                        return
            finally:
                exchanges.close()  # now, not at garbage collection
            offset += max(self._current.flows, last + 1)
            self._done.append(self._current)
            self._current = CaptureStats()

    def _one(self, path: Path) -> Generator[Exchange, None, None]:
        entry: Path | None = None
        if self._use_cache:
            try:
                entry = cache.entry_path(
                    path, decoded=self._decoded, root=self._cache_dir
                )
            except OSError:
                entry = None  # the cold read reports the problem
        resume_after = -1
        if entry is not None and entry.is_file():
            reader = cache.CacheReader(entry)
            self._current = CaptureStats(path=str(path), from_cache=True)
            try:
                for exchange in reader:
                    resume_after = exchange.index
                    self._current.exchanges += 1
                    yield exchange
            except Exception:
                pass  # a damaged entry: carry on from the capture itself
            if reader.stats is not None:
                reader.stats.path = str(path)
                self._current = reader.stats
                return
            entry.unlink(missing_ok=True)
        yield from self._cold(path, entry, resume_after)

    def _cold(
        self, path: Path, entry: Path | None, resume_after: int
    ) -> Iterator[Exchange]:
        from wasmkit.traffic import mitm  # mitmproxy only when a file is parsed

        self._current = CaptureStats()
        flows = mitm.read_flows(
            path, decoded=self._decoded, filter_expr=self._filter, stats=self._current
        )
        writer = None
        if entry is not None:
            try:
                writer = cache.CacheWriter(entry)
            except OSError:
                writer = None  # a read-only cache directory only costs speed
        completed = False
        try:
            for item in flows:
                if isinstance(item, Skipped):
                    continue
                if writer is not None:
                    writer.add(item)
                if item.index > resume_after:
                    yield item
            completed = True
        finally:
            flows.close()
            if writer is not None:
                if completed and self._unchanged(path, entry):
                    try:
                        writer.commit(self._current)
                    except OSError:
                        writer.abort()
                else:
                    writer.abort()

    def _unchanged(self, path: Path, entry: Path | None) -> bool:
        # A file rewritten while it was read must not be cached under the old key.
        try:
            return entry == cache.entry_path(
                path, decoded=self._decoded, root=self._cache_dir
            )
        except OSError:
            return False


def load_capture(
    paths: PathArg | Sequence[PathArg],
    *,
    decoded: bool = False,
    limit: int | None = None,
    filter_expr: str | None = None,
    cache: bool = True,
    cache_dir: PathArg | None = None,
) -> Capture:
    """Open one or more mitmproxy ``.flow`` or HAR captures for replay.

    Flows stream one at a time, so a capture larger than memory works. Several
    files are read in order and their exchanges numbered on from one file to the
    next. After a file has been read to the end, its exchanges are cached (see
    :mod:`wasmkit.traffic.cache`) and the next load of the unchanged file reads
    the cache instead of parsing it again.

    Args:
        paths: a capture file or a list of them.
        decoded: hand the filter decoded bodies (``Content-Encoding`` undone, the
            header and ``Content-Length`` removed) as if Envoy's decompressor ran
            first; otherwise bodies are exactly as on the wire.
        limit: stop after this many exchanges.
        filter_expr: keep only flows matching this mitmproxy filter expression
            (for example ``"~d example.com & ~m POST"``); bypasses the cache.
        cache: use the warm-load cache.
        cache_dir: where to keep it (default ``$WASMKIT_CACHE/captures``).

    Returns:
        A :class:`Capture`: an iterator of exchanges with :attr:`Capture.stats`.

    Raises:
        ValueError: ``limit`` is negative or ``filter_expr`` is invalid.
        CaptureFormatError: a file is neither a ``.flow`` nor a HAR capture
            (raised during iteration, when that file is reached).
        CaptureReadError: during iteration, after every exchange before the
            damage: a file is truncated or corrupt, or written by a newer
            mitmproxy; ``.path``, ``.index`` and ``.format_version`` say where.
        CaptureError: a file cannot be opened.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    if filter_expr is not None:
        from wasmkit.traffic import mitm

        mitm.parse_filter(filter_expr)
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    return Capture(
        [Path(p) for p in items],
        decoded=decoded,
        limit=limit,
        filter_expr=filter_expr,
        use_cache=cache,
        cache_dir=None if cache_dir is None else Path(cache_dir),
    )


def capture_format(path: PathArg) -> CaptureFormat | None:
    """The format of the file at ``path``: ``flow``, ``har`` or ``None`` when empty.

    Raises:
        CaptureFormatError: it is neither.
    """
    from wasmkit.traffic import mitm

    return mitm.sniff(path)
