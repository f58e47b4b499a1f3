"""Every flow's record and summary row on disk, one pair of files per partition.

A replay given ``records_to`` (and a replay on wasmkit's local Dask cluster
with ``keep="summary"``, into a temporary folder its result owns) writes,
from wherever each partition replays, two JSON-lines files per partition:

* ``part-00003.records.jsonl``: one :meth:`FlowResult.record` per line (what
  :meth:`ReplayResult.records` and :meth:`ReplayResult.to_json` give), in
  capture order;
* ``part-00003.summary.jsonl``: one :meth:`FlowResult.summary` row per line.

The records then never travel through the submitting process: it gets the
totals, the flows it keeps in full and the files' names. Once the replay is
done it writes ``manifest.json`` (the partitions in order, their first
position, flow count and files), and :class:`StoredRecords` reads it all
back lazily: records one at a time, the summary as a Dask DataFrame with the
columns and nullable dtypes of the pandas :meth:`ReplayResult.summary`, one
Dask partition per replay partition (so ``.to_parquet(path)`` writes it
without loading it). The folder may be an ``fsspec`` URL every worker and
this process can write and read (``s3://bucket/run``, ``file:///shared/run``).

A partition replayed again (in a VM failed by an earlier partition, see
:mod:`wasmkit.replay.distributed`) writes ``part-00003.r1.*`` files; the
manifest names the ones the result holds, and the others are removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasmkit.replay.flows import FlowResult

MANIFEST = "manifest.json"
"""The file naming a folder's partitions (written last)."""

FORMAT = 1
"""Bumped when the files' layout changes."""

PathArg = str | os.PathLike[str]


def _fs(folder: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs  # type: ignore[import-untyped]

    return url_to_fs(folder)  # type: ignore[no-any-return]


def folder_of(where: PathArg) -> str:
    """``where`` as the folder every process names the same way.

    A URL (``scheme://...``) stays as given; a path becomes absolute.
    """
    text = os.fspath(where)
    if "://" in text:
        return text
    return str(Path(text).absolute())


def _join(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


def names(number: int, round_: int) -> tuple[str, str]:
    """The records and summary file names of partition ``number``."""
    tail = f".r{round_}" if round_ else ""
    return (
        f"part-{number:05d}{tail}.records.jsonl",
        f"part-{number:05d}{tail}.summary.jsonl",
    )


class PartWriter:
    """Writes one partition's records and summary rows as they are replayed.

    The files appear under their names only when :meth:`close` succeeds (a
    partition replayed again, or cancelled, never leaves half a file).

    Raises:
        OSError: the folder cannot be written.
    """

    def __init__(self, folder: str, number: int, round_: int = 0) -> None:
        fs, root = _fs(folder)
        fs.makedirs(root, exist_ok=True)
        self._fs = fs
        self._root = root
        self.names = names(number, round_)
        tag = f".{os.getpid()}-{secrets.token_hex(4)}.tmp"
        self._tmp = [_join(root, n + tag) for n in self.names]
        self._files: list[IO[str]] = []
        for tmp in self._tmp:
            raw = fs.open(tmp, "wb")
            self._files.append(io.TextIOWrapper(raw, encoding="utf-8", newline="\n"))
        self.flows = 0
        self._dumps = json.JSONEncoder(separators=(",", ":")).encode

    def add(self, flow: FlowResult) -> None:
        """Write ``flow``'s record and summary row."""
        records, summary = self._files
        records.write(self._dumps(flow.record()))
        records.write("\n")
        summary.write(self._dumps(flow.summary()))
        summary.write("\n")
        self.flows += 1

    def close(self) -> tuple[str, str]:
        """Finish both files; their names in the folder."""
        for f in self._files:
            f.close()
        for tmp, name in zip(self._tmp, self.names, strict=True):
            self._fs.mv(tmp, _join(self._root, name))
        return self.names

    def abort(self) -> None:
        """Drop what was written."""
        for f in self._files:
            with contextlib.suppress(Exception):
                f.close()
        for tmp in self._tmp:
            with contextlib.suppress(Exception):
                self._fs.rm(tmp)


@dataclass(frozen=True, slots=True)
class StoredPart:
    """One partition's files."""

    number: int
    """The replay partition."""
    start: int
    """Its first flow's position among the replayed flows."""
    flows: int
    """Flows in it."""
    records: str
    """The records file's name in the folder."""
    summary: str
    """The summary rows file's name in the folder."""


def prepare(where: PathArg) -> str:
    """``where`` made ready for a replay's files (see :func:`folder_of`).

    Made if missing; an earlier replay's partition files and manifest there
    are removed.

    Raises:
        ReplayError: it cannot be made or written, or it is not a folder.
    """
    from wasmkit.errors import ReplayError

    folder = folder_of(where)
    try:
        fs, root = _fs(folder)
        if fs.isfile(root):
            raise NotADirectoryError(f"{root} is a file")
        fs.makedirs(root, exist_ok=True)
        old = fs.glob(_join(root, "part-*.jsonl"))
        if fs.exists(_join(root, MANIFEST)):
            old.append(_join(root, MANIFEST))
        for path in old:
            fs.rm(path)
        probe = _join(root, f".probe-{secrets.token_hex(4)}")
        with fs.open(probe, "wb") as fo:
            fo.write(b"")
        fs.rm(probe)
    except (OSError, ValueError, ImportError) as exc:
        raise ReplayError(
            f"records_to {folder}: cannot write replay records there "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return folder


class StoredRecords:
    """A replay's records and summary rows on disk (see the module).

    Iterate it for the records (dicts, as :meth:`ReplayResult.records` gives
    them), in capture order, read a line at a time. A temporary folder the
    replay made (``owned``) is removed by :meth:`close` or when this object
    is garbage collected.
    """

    def __init__(
        self, folder: str, parts: list[StoredPart], *, owned: bool = False
    ) -> None:
        self.folder = folder
        """Where the files are (a path or an ``fsspec`` URL)."""
        self.parts = parts
        """The partitions, in capture order."""
        self.owned = owned
        """The folder is a temporary one this object removes."""
        self._finalizer = (
            weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            if owned
            else None
        )

    @classmethod
    def open(cls, folder: PathArg) -> StoredRecords:
        """The records an earlier replay wrote to ``folder``.

        Raises:
            ValueError: the folder holds no complete replay's records.
        """
        where = folder_of(folder)
        fs, root = _fs(where)
        try:
            with fs.open(_join(root, MANIFEST), "rb") as fo:
                doc = json.loads(fo.read())
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, not {FORMAT}")
            parts = [StoredPart(**p) for p in doc["parts"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{where}: no replay records here ({type(exc).__name__}: {exc})"
            ) from None
        return cls(where, parts)

    def write_manifest(self, *, interrupted: bool = False) -> None:
        """Write ``manifest.json`` and remove partition files it does not name."""
        fs, root = _fs(self.folder)
        doc = {
            "format": FORMAT,
            "interrupted": interrupted,
            "flows": len(self),
            "parts": [asdict(p) for p in self.parts],
        }
        with fs.open(_join(root, MANIFEST), "wb") as fo:
            fo.write(json.dumps(doc, indent=1).encode())
        keep = {n for p in self.parts for n in (p.records, p.summary)}
        for path in fs.glob(_join(root, "part-*")):
            if path.rsplit("/", 1)[-1] not in keep:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(path)

    def __len__(self) -> int:
        return sum(p.flows for p in self.parts)

    def __repr__(self) -> str:
        return (
            f"StoredRecords({self.folder!r}, {len(self.parts)} partitions, "
            f"{len(self)} flows)"
        )

    @property
    def files(self) -> list[str]:
        """Every file (records, then summary, partition by partition)."""
        return [
            _join(self.folder, n) for p in self.parts for n in (p.records, p.summary)
        ]

    def _lines(self, name: str) -> Iterator[Any]:
        fs, root = _fs(self.folder)
        with fs.open(_join(root, name), "rb") as fo:
            for line in fo:
                yield json.loads(line)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for part in self.parts:
            yield from self._lines(part.records)

    def summary_rows(self, part: StoredPart) -> list[dict[str, Any]]:
        """The summary rows of one partition."""
        return list(self._lines(part.summary))

    def summary(self, *, lazy: bool = True) -> Any:
        """The summary of every stored flow.

        ``lazy``: a Dask DataFrame, one partition per file, indexed by the
        flows' positions (divisions known); else a pandas DataFrame (read
        whole). Columns and nullable dtypes are those of
        :meth:`ReplayResult.summary`.
        """
        from wasmkit.diff import frames  # pandas loads only when asked for

        if not lazy:
            return frames.summary_frame([r for p in self.parts for r in self._read(p)])
        import dask
        import dask.dataframe as dd

        meta = frames.summary_frame([])
        if not self.parts:
            return one_partition(meta)
        divisions = (
            *(p.start for p in self.parts),
            self.parts[-1].start + max(self.parts[-1].flows - 1, 0),
        )
        # The columns keep pandas' own string dtype (not pyarrow strings).
        with dask.config.set({"dataframe.convert-string": False}):
            return dd.from_map(  # type: ignore[no-untyped-call]
                _SummaryPart(self.folder),
                self.parts,
                meta=meta,
                divisions=divisions,
                enforce_metadata=False,
            )

    def _read(self, part: StoredPart) -> list[dict[str, Any]]:
        return self.summary_rows(part)

    def to_json(self, path: PathArg) -> None:
        """Write every record as one JSON array (as :meth:`ReplayResult.to_json`).

        Streamed: memory stays flat in the number of records. Written whole
        or not at all.

        Raises:
            OSError: it cannot be written; ``filename`` is ``path``.
        """
        from wasmkit.traffic import _atomic

        with _atomic.AtomicFile(path, "w") as fo:
            fo.write("[")
            for n, record in enumerate(self):
                fo.write(",\n" if n else "\n")
                fo.write(json.dumps(record, indent=1))
            fo.write("\n]" if len(self) else "]")

    def close(self) -> None:
        """Remove the folder if this object owns it (a temporary one)."""
        if self._finalizer is not None:
            self._finalizer()


def one_partition(frame: Any) -> Any:
    """A pandas frame as a Dask DataFrame of one partition, dtypes as they are."""
    import dask
    import dask.dataframe as dd

    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_pandas(  # type: ignore[no-untyped-call]
            frame, npartitions=1, sort=False
        )


class _SummaryPart:
    # One Dask partition of the summary: a stored partition's rows as a frame,
    # indexed by the flows' positions. A class so that Dask tokenizes it by
    # the folder.
    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __dask_tokenize__(self) -> Any:
        return ("wasmkit-summary", self.folder)

    def __call__(self, part: StoredPart) -> Any:
        from wasmkit.diff import frames

        frame = frames.summary_frame(StoredRecords(self.folder, []).summary_rows(part))
        frame.index = range(part.start, part.start + len(frame))
        return frame
