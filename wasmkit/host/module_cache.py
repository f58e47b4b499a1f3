"""Compiled modules kept on disk, shared by every process of the machine.

wasmtime compiles a module to machine code once per process unless told
otherwise: 12 s for a 25 MB module on a quiet machine, while reading back the
code it serialized takes a few tens of milliseconds. This cache keeps that code
under ``<kit cache>/modules`` (``$WASMKIT_MODULE_CACHE``, or ``modules`` in
``$WASMKIT_CACHE`` / ``~/.cache/wasmkit``), one file per key.

The key covers everything that changes the code: the module's bytes, the
wasmtime version and every engine setting the host uses (fuel, epochs, memory
reservation...). An entry is written to a temporary file and renamed into place,
so readers see a whole entry or none; each starts with a header and a SHA-256
digest of its payload, checked before the payload reaches wasmtime (which
trusts serialized code), so a damaged entry is recompiled, never run. wasmtime
itself refuses an entry made for another CPU or configuration, which is
recompiled too. The directory is pruned, least recently used first, past
:data:`MAX_BYTES`.

``$WASMKIT_MODULE_CACHE=off`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

MAGIC = b"wasmkit-cwasm-2\n"
"""The first bytes of every entry."""

MAX_BYTES = 4 << 30
"""Entries kept on disk at most (bytes) before the least recently used go."""

_DIGEST = 32


def directory() -> Path | None:
    """Where compiled modules are kept; ``None`` when the cache is off."""
    value = os.environ.get("WASMKIT_MODULE_CACHE")
    if value is not None and value.strip().lower() in ("off", "0", "no", "false"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("WASMKIT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "wasmkit"
    return root / "modules"


def key(binary_digest: str, settings: Mapping[str, object]) -> str:
    """The entry name for a module (its SHA-256) under engine ``settings``."""
    # The entry format is part of the key: another wasmkit's entries are apart.
    text = json.dumps(
        {"format": MAGIC.decode().strip(), "module": binary_digest, **settings},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class Corrupt(Exception):
    """An entry that is not whole or not ours."""


def read(name: str) -> bytes | None:
    """The serialized code of entry ``name``; ``None`` if there is none.

    Raises:
        Corrupt: the entry exists but its header or digest is wrong (it is
            removed).
    """
    folder = directory()
    if folder is None:
        return None
    path = folder / f"{name}.cwasm"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + _DIGEST
    payload = data[head:]
    if (
        not data.startswith(MAGIC)
        or len(data) <= head
        or hashlib.sha256(payload).digest() != data[len(MAGIC) : head]
    ):
        discard(name)
        raise Corrupt(f"{path}: damaged compiled-module cache entry")
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: pruned last
    return payload


def write(name: str, payload: bytes | bytearray) -> Path | None:
    """Store ``payload`` as entry ``name`` atomically; ``None`` if not stored.

    A cache that cannot be written (read-only, full disk) is skipped silently:
    the module still works, it is only compiled again next time.
    """
    folder = directory()
    if folder is None:
        return None
    digest = hashlib.sha256(payload).digest()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name[:16]}-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)  # other processes of the machine read it too
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC)
                out.write(digest)
                out.write(payload)
            path = folder / f"{name}.cwasm"
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return None
    prune(folder)
    return path


def discard(name: str) -> None:
    """Remove entry ``name`` if present."""
    folder = directory()
    if folder is not None:
        with contextlib.suppress(OSError):
            (folder / f"{name}.cwasm").unlink()


def prune(folder: Path, max_bytes: int = MAX_BYTES) -> None:
    """Remove the least recently used entries until ``folder`` fits."""
    entries = []
    total = 0
    with contextlib.suppress(OSError):
        for item in folder.glob("*.cwasm"):
            with contextlib.suppress(OSError):
                stat = item.stat()
                entries.append((stat.st_mtime, stat.st_size, item))
                total += stat.st_size
    if total <= max_bytes:
        return
    for _mtime, size, item in sorted(entries):
        with contextlib.suppress(OSError):
            item.unlink()
            total -= size
        if total <= max_bytes:
            break
