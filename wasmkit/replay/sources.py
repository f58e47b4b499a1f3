"""Captures named by ``fsspec`` URLs: the local file each process reads.

A replay's captures may be paths or URLs (``file:///shared/api.flow``,
``s3://bucket/api.flow``, ``zip://api.flow::file:///data/captures.zip``, any
protocol ``fsspec`` knows whose files every worker can open). A URL stays the
capture's name everywhere: in the partition index
(:mod:`wasmkit.replay.partitions`) and in the tasks, so a worker on another
machine opens the same URL. Reading needs a local file, since captures are
parsed with mitmproxy and kept in the warm-load cache
(:mod:`wasmkit.traffic.cache`):

* a ``file://`` URL (or any protocol on the local file system) is its path;
* any other protocol is copied once per machine into
  ``$WASMKIT_CACHE/remote/``, named after the URL and what the file system
  says of the file (size, modification time or ETag), so a changed file is
  copied again. The copy is then indexed and cut into partitions as a path
  is, and workers on the same machine share it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from wasmkit.errors import CaptureError
from wasmkit.traffic import cache

PathArg = str | os.PathLike[str]

_STAMP_KEYS = ("size", "mtime", "LastModified", "ETag", "etag", "date_time", "crc")
"""What of a remote file's ``info`` names its contents."""


def is_url(capture: PathArg) -> bool:
    """``capture`` is an ``fsspec`` URL rather than a path."""
    text = os.fspath(capture)
    return "://" in text or "::" in text


def name_of(capture: PathArg) -> str:
    """How every process names ``capture``: the URL as given, or the absolute path."""
    text = os.fspath(capture)
    return text if is_url(text) else str(Path(text).absolute())


def remote_root() -> Path:
    """``$WASMKIT_CACHE/remote``: this machine's copies of remote captures."""
    return cache.cache_root().parent / "remote"


def local_path(capture: PathArg) -> Path:
    """The local file to read for ``capture`` (a path, or an ``fsspec`` URL).

    Raises:
        CaptureError: the URL's protocol is unknown or needs a package that
            is not installed, or the file cannot be found or copied.
    """
    text = os.fspath(capture)
    if not is_url(text):
        return Path(text)
    try:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]
        from fsspec.implementations.local import (  # type: ignore[import-untyped]
            LocalFileSystem,
        )

        fs, path = url_to_fs(text)
        if isinstance(fs, LocalFileSystem):
            return Path(path)
        info = fs.info(path)
        return _copy(text, fs, path, info)
    except CaptureError:
        raise
    except (OSError, ValueError, ImportError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CaptureError(
            f"{text}: cannot open the capture ({type(exc).__name__}"
            + (f": {reason}" if reason else "")
            + ")"
        ) from None


def _copy(url: str, fs: Any, path: str, info: dict[str, Any]) -> Path:
    if info.get("type") == "directory":
        raise CaptureError(f"{url}: is a directory, not a capture")
    stamp = repr([(k, str(info.get(k))) for k in _STAMP_KEYS if k in info])
    name = hashlib.sha256(url.encode()).hexdigest()[:24]
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    suffix = "".join(Path(path.rsplit("/", 1)[-1]).suffixes[-1:])
    root = remote_root()
    target = root / f"{name}-{digest}{suffix}"
    if target.is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        fs.get_file(path, str(tmp))
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    # The copies of the file's earlier states go.
    for old in root.glob(f"{name}-*"):
        if old != target and not old.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                old.unlink()
    return target
