"""The build cache: built modules stored by a key over everything that shapes them.

The key hashes the project's files, the language, the options, the toolchain
versions and the kit's build recipe. An entry is a folder
``<build cache>/entries/<key[:2]>/<key>/`` holding the module and
``meta.json``; both are replaced atomically and ``meta.json`` is written last,
so a reader sees a whole entry or none. Entries are never evicted: delete the
folder to reclaim space.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasmkit.build.toolchain import write_atomic

FORMAT = 1
"""Version of the entry layout (part of every key)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached module."""

    path: Path
    """The ``.wasm`` file."""
    meta: Mapping[str, Any]
    """What the build recorded: language, versions, compile time, warnings..."""


def make_key(parts: Mapping[str, object]) -> str:
    """The cache key of a build described by ``parts`` (JSON-able)."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class BuildCache:
    """Built modules on disk, by key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, key: str) -> Path:
        """The folder of ``key``'s entry."""
        return self.root / "entries" / key[:2] / key

    def get(self, key: str) -> Entry | None:
        """The entry of ``key``, or ``None`` when absent or incomplete."""
        folder = self.folder(key)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            path = folder / os.path.basename(str(meta["file"]))
            if path.stat().st_size != meta["size"]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Entry(path, meta)

    def put(self, key: str, wasm: Path, meta: Mapping[str, Any]) -> Entry:
        """Store ``wasm`` (moved into the cache) under ``key``."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / os.path.basename(str(meta["file"]))
        record = {**meta, "size": wasm.stat().st_size}
        os.chmod(wasm, 0o644)
        os.replace(wasm, path)
        write_atomic(folder / "meta.json", json.dumps(record, indent=1).encode())
        return Entry(path, record)

    def scratch(self) -> Path:
        """A folder for compiler output, on the cache's file system."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path
