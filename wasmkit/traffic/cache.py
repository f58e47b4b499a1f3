"""Warm-load cache: parsed exchanges kept beside the kit's other caches.

mitmproxy rebuilds full flow objects and reads a few thousand flows a second; a
replay loop that reloads the same capture should not pay that twice. After a
capture has been read to the end without error, its exchanges are written as
``marshal`` batches under ``$WASMKIT_CACHE/captures`` (default
``~/.cache/wasmkit/captures``), keyed by the file's absolute path, size,
modification and status-change times (``st_mtime_ns``, ``st_ctime_ns``),
device and inode, a digest of its first and last 64 KiB, the ``decoded``
option, this cache's format and the Python and mitmproxy versions. Changing
the file changes the key, also when it is rewritten in place with the same
size and its modification time set back (``os.utime`` cannot set the
status-change time, and the digest sees changes at either end); the entries
for the file's earlier states are deleted when a new one is written.

File layout: a sequence of frames, each an 8-byte big-endian length and a
``marshal`` payload: the header ``(MAGIC, FORMAT)``, batches of exchange
tuples, and a last ``("end", stats)`` frame. An entry is only renamed into
place once complete, so a reader never sees a partial one.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from wasmkit.traffic.model import CaptureStats, Exchange, Headers, Request, Response

MAGIC = "wasmkit-capture-cache"
FORMAT = 1
"""Bumped whenever the tuple layout below changes."""

_BATCH = 512
_LEN = 8


def cache_root() -> Path:
    """``$WASMKIT_CACHE/captures`` or ``~/.cache/wasmkit/captures``."""
    base = os.environ.get("WASMKIT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "wasmkit"
    return root / "captures"


def _mitmproxy_version() -> str:
    from importlib import metadata  # not at import: it costs a replay worker 7 ms

    try:
        return metadata.version("mitmproxy")
    except metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        return "?"


def entry_path(path: Path, *, decoded: bool, root: Path | None = None) -> Path:
    """Where the cache entry for ``path``'s current contents lives.

    Raises:
        OSError: ``path`` cannot be examined.
    """
    real = path.resolve()
    with open(real, "rb") as fo:
        st = os.fstat(fo.fileno())
        sample = _sample(fo, st.st_size)
    prefix = hashlib.sha256(f"{real}\0{decoded}".encode()).hexdigest()[:24]
    ident = "\0".join(
        str(x)
        for x in (
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_dev,
            st.st_ino,
            sample,
            FORMAT,
            _mitmproxy_version(),
            sys.version_info[:2],
            marshal.version,
        )
    )
    digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return (root or cache_root()) / f"{prefix}-{digest}.exchanges"


_SAMPLE = 1 << 16
"""Bytes read from each end of a capture for its cache key."""


def _sample(fo: BinaryIO, size: int) -> str:
    # A digest of the file's head and tail: cheap for any size, and the part
    # of a capture an append or a rewritten header changes.
    digest = hashlib.blake2b(fo.read(_SAMPLE), digest_size=16)
    if size > _SAMPLE:
        fo.seek(max(_SAMPLE, size - _SAMPLE))
        digest.update(fo.read(_SAMPLE))
    return digest.hexdigest()


Fields = tuple[tuple[bytes, bytes], ...]


def _same(fields: Fields) -> Fields:
    return fields


class _Sharer:
    """Makes equal header fields one object, so ``marshal`` writes references.

    Captures repeat most fields (``Accept``, ``Server``, ...); a shared tuple is
    written once per batch and loads without building a new object, which makes
    warm loads several times faster. Reset per batch: references only reach
    within one ``marshal.dumps``.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}

    def __call__(self, fields: Fields) -> Fields:
        seen = self.seen
        return tuple(seen.setdefault(f, f) if len(f[1]) < 256 else f for f in fields)


def encode(ex: Exchange, share: Callable[[Fields], Fields] = _same) -> tuple[Any, ...]:
    """An exchange as a tuple of marshal-able values."""
    rq = ex.request
    rs = ex.response

    def _hdr(headers: Headers | None) -> Fields | None:
        return None if headers is None else share(headers.fields)

    return (
        ex.index,
        (
            rq.method,
            rq.scheme,
            rq.host,
            rq.port,
            rq.path,
            rq.http_version,
            share(rq.headers.fields),
            rq.body,
            _hdr(rq.trailers),
            rq.authority,
            rq.timestamp_start,
            rq.timestamp_end,
        ),
        None
        if rs is None
        else (
            rs.status,
            rs.reason,
            rs.http_version,
            share(rs.headers.fields),
            rs.body,
            _hdr(rs.trailers),
            rs.timestamp_start,
            rs.timestamp_end,
        ),
        ex.error,
        ex.id,
        ex.client_address,
        ex.client_port,
        ex.listen_address,
        ex.listen_port,
        ex.server_address,
        ex.server_port,
        ex.tls,
        ex.tls_version,
        ex.sni,
        ex.alpn,
        ex.mtls,
        ex.timestamp_start,
        ex.timestamp_end,
        ex.decoded,
        ex.websocket_messages,
    )


def decode(row: tuple[Any, ...]) -> Exchange:
    """The exchange :func:`encode` turned into ``row``."""
    trusted = Headers._trusted
    rq = row[1]
    rs = row[2]
    request = Request(
        rq[0],
        rq[1],
        rq[2],
        rq[3],
        rq[4],
        rq[5],
        trusted(rq[6]),
        rq[7],
        None if rq[8] is None else trusted(rq[8]),
        rq[9],
        rq[10],
        rq[11],
    )
    response = (
        None
        if rs is None
        else Response(
            rs[0],
            rs[1],
            rs[2],
            trusted(rs[3]),
            rs[4],
            None if rs[5] is None else trusted(rs[5]),
            rs[6],
            rs[7],
        )
    )
    return Exchange(row[0], request, response, *row[3:])


def _stats_row(stats: CaptureStats) -> dict[str, Any]:
    row = stats.as_dict()
    row.pop("from_cache")
    return row


def _write_frame(fo: BinaryIO, value: Any) -> None:
    data = marshal.dumps(value)
    fo.write(len(data).to_bytes(_LEN, "big"))
    fo.write(data)


def read_frame(fo: BinaryIO) -> tuple[Any, int]:
    """The next frame of an entry and its size in bytes, length prefix included.

    Raises:
        EOFError: the entry ends inside the frame.
    """
    head = fo.read(_LEN)
    if len(head) != _LEN:
        raise EOFError("cache entry cut short")
    size = int.from_bytes(head, "big")
    data = fo.read(size)
    if len(data) != size:
        raise EOFError("cache entry cut short")
    return marshal.loads(data), _LEN + size


def _read_frame(fo: BinaryIO) -> Any:
    return read_frame(fo)[0]


class CacheWriter:
    """Writes one cache entry as the cold read streams; :meth:`commit` publishes it."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        self._fo: BinaryIO | None = open(self._tmp, "wb")  # noqa: SIM115
        self._batch: list[tuple[Any, ...]] = []
        self._share = _Sharer()
        _write_frame(self._fo, (MAGIC, FORMAT))

    def add(self, exchange: Exchange) -> None:
        """Queue one exchange."""
        self._batch.append(encode(exchange, self._share))
        if len(self._batch) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch and self._fo is not None:
            _write_frame(self._fo, self._batch)
            self._batch = []
            self._share = _Sharer()

    def commit(self, stats: CaptureStats) -> None:
        """Finish the entry and move it into place; drop the file's older entries."""
        if self._fo is None:
            return
        self._flush()
        _write_frame(self._fo, ("end", _stats_row(stats)))
        self._fo.close()
        self._fo = None
        os.replace(self._tmp, self.target)
        prefix = self.target.name.split("-", 1)[0] + "-"
        for old in self.target.parent.glob(prefix + "*.exchanges"):
            if old != self.target:
                with contextlib.suppress(OSError):
                    old.unlink()

    def abort(self) -> None:
        """Forget the entry (the read stopped early or failed)."""
        if self._fo is not None:
            self._fo.close()
            self._fo = None
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class CacheReader:
    """Streams the exchanges of a cache entry; :attr:`stats` is set at the end.

    Raises ``ValueError`` (or ``EOFError``) when the entry is damaged; the loader
    then falls back to reading the capture.
    """

    def __init__(self, entry: Path) -> None:
        self.entry = entry
        self.stats: CaptureStats | None = None

    def __iter__(self) -> Iterator[Exchange]:
        with open(self.entry, "rb") as fo:
            if _read_frame(fo) != (MAGIC, FORMAT):
                raise ValueError("not a wasmkit capture cache entry of this format")
            while True:
                frame = _read_frame(fo)
                if isinstance(frame, tuple):
                    if len(frame) != 2 or frame[0] != "end":
                        raise ValueError("bad cache trailer")
                    self.stats = _stats_from(frame[1])
                    return
                for row in frame:
                    yield decode(row)


def _stats_from(row: dict[str, Any]) -> CaptureStats:
    return CaptureStats(
        path=row["path"],
        format=row["format"],
        format_version=row["format_version"],
        flows=row["flows"],
        exchanges=row["exchanges"],
        request_only=row["request_only"],
        skipped=dict(row["skipped"]),
        websocket_messages=row["websocket_messages"],
        filtered_out=row["filtered_out"],
        from_cache=True,
    )
