"""What to build: a project folder, a source file, or source text.

A folder is built as it is; its language comes from its manifest. A source file
inside a project (``src/*.rs`` under a ``Cargo.toml``, a ``.go`` file next to
``go.mod``, ``assembly/*.ts``) builds that project; a lone file, and source text
such as a notebook cell, are written into a generated project made from the
language's template, and diagnostics point back at the file or the text.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from wasmkit.build import rustworkspace
from wasmkit.build.languages import ALIASES, LANGUAGES, SUFFIXES, normalize, toolchain
from wasmkit.build.toolchain import TEXT_NAME, Project, build_cache
from wasmkit.errors import BuildError

MAX_FILES = 5000
"""Most files hashed in a project folder."""
MAX_BYTES = 100 * 1024 * 1024
"""Most bytes hashed in a project folder."""

PRUNED = frozenset({"target", "node_modules", "__pycache__"})
"""Folders that hold build output or installed packages, not sources."""

_MANIFESTS: dict[str, tuple[tuple[str, str], ...]] = {
    "rust": (
        ("Cargo.toml", ""),
        (
            "Cargo.lock",
            ' (commit one resolved for rustc 1.63: with rust-version = "1.63" in '
            "Cargo.toml, `CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo "
            "generate-lockfile`)",
        ),
    ),
    "go": (("go.mod", ""), ("go.sum", " (make one with `go mod tidy` there)")),
    "tinygo": (("go.mod", ""), ("go.sum", " (make one with `go mod tidy` there)")),
    "assemblyscript": (("assembly/index.ts", " (the entry file)"),),
}


def detect_folder(folder: Path) -> str | None:
    """The language of a project folder, from its manifest.

    Raises:
        ValueError: the folder looks like projects of several languages.
    """
    found = []
    if (folder / "Cargo.toml").is_file():
        found.append("rust")
    if (folder / "go.mod").is_file():
        found.append("go")
    if any(
        (folder / name).is_file()
        for name in ("package.json", "asconfig.json", "assembly/index.ts")
    ):
        found.append("assemblyscript")
    if len(found) > 1:
        raise ValueError(
            f"{folder} looks like a {' and a '.join(found)} project: pass lang="
        )
    return found[0] if found else None


def guess_text(text: str) -> str | None:
    """The language of source text, from telltale lines; ``None`` if unsure."""
    if re.search(r"^\s*package\s+main\b", text, re.M):
        return "go"
    if "@solo-io/proxy-runtime" in text or re.search(
        r"^\s*(import|export)\b.*\bfrom\s+[\"']", text, re.M
    ):
        return "assemblyscript"
    if "proxy_wasm::" in text or re.search(
        r"^\s*(pub\s+)?(use|fn|impl|struct|mod)\s", text, re.M
    ):
        return "rust"
    return None


def project_name(root_id: str | None) -> str:
    """A crate / module name made from a root id (``filter`` by default)."""
    name = re.sub(r"[^a-z0-9_]+", "_", (root_id or "").lower()).strip("_")
    if not name:
        return "filter"
    if not name[0].isalpha():
        name = "f_" + name
    return name[:40]


def digest_files(files: Mapping[str, bytes]) -> str:
    """SHA-256 over relative paths and contents (hex)."""
    return _combine({rel: hashlib.sha256(data).digest() for rel, data in files.items()})


def _combine(sums: Mapping[str, bytes]) -> str:
    outer = hashlib.sha256()
    for rel in sorted(sums):
        outer.update(rel.encode() + b"\0" + sums[rel])
    return outer.hexdigest()


def digest_tree(root: Path, lang: str) -> str:
    """:func:`digest_files` of every source file under ``root``.

    Hidden files and folders (but ``.cargo``), ``target``, ``node_modules``,
    ``__pycache__``, AssemblyScript's ``build`` and ``*.wasm`` files are left out.

    Raises:
        BuildError: more than :data:`MAX_FILES` files or :data:`MAX_BYTES` bytes.
    """
    pruned = PRUNED | ({"build"} if lang == "assemblyscript" else set())
    sums: dict[str, bytes] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d
            for d in dirnames
            if (not d.startswith(".") or d == ".cargo") and d not in pruned
        ]
        for filename in filenames:
            if filename.startswith(".") or filename.endswith(".wasm"):
                continue
            path = Path(dirpath, filename)
            try:
                data = path.read_bytes()
            except OSError:
                continue  # a socket, a broken link
            total += len(data)
            sums[path.relative_to(root).as_posix()] = hashlib.sha256(data).digest()
            if len(sums) > MAX_FILES or total > MAX_BYTES:
                raise BuildError(
                    f"{root} holds more than {MAX_FILES} files or "
                    f"{MAX_BYTES >> 20} MiB of sources: is it the project folder?"
                )
    return _combine(sums)


def _as_path(source: str) -> Path | None:
    if "\n" in source or len(source) > 4096 or not source.strip():
        return None
    path = Path(source).expanduser()
    if path.exists():
        return path
    if path.suffix in SUFFIXES or source.endswith(("/", ".wasm")):
        raise FileNotFoundError(errno.ENOENT, "no such file or folder", source)
    return None


def resolve(
    source: str | os.PathLike[str], lang: str | None = None, root_id: str | None = None
) -> Project:
    """The project that builds ``source``.

    Args:
        source: a project folder, a source file, or source text.
        lang: the language (any name :func:`~wasmkit.build.languages.normalize`
            accepts); detected when ``None``.
        root_id: names a generated project (crate / module name).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: the language cannot be told or is unknown.
        BuildError: the project lacks a file the build needs.
    """
    wanted = normalize(lang) if lang is not None else None
    path: Path | None
    if isinstance(source, os.PathLike):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(path))
    elif isinstance(source, str):
        path = _as_path(source)
    else:
        raise TypeError(
            f"source must be a path or source text, not {type(source).__name__}"
        )
    if path is None:
        assert isinstance(source, str)
        if not source.strip():
            raise ValueError("the source text is empty")
        detected = wanted or guess_text(source)
        if detected is None:
            raise ValueError(
                "cannot tell the language of the source text: pass lang='rust', "
                "'go' or 'assemblyscript'"
            )
        return generated(source, detected, root_id)
    path = path.resolve()
    if path.is_dir():
        return folder(path, wanted)
    detected = wanted or SUFFIXES.get(path.suffix)
    if detected is None:
        raise ValueError(
            f"cannot tell the language of {path}: expected a .rs, .go or .ts file "
            "or a project folder, or pass lang="
        )
    enclosing = _enclosing(path, detected)
    if enclosing is not None:
        return folder(enclosing, detected)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text") from exc
    return generated(text, detected, root_id, shown_as=str(path))


def _enclosing(path: Path, lang: str) -> Path | None:
    parents = list(path.parents)[:4]
    if lang in ("go", "tinygo"):
        return path.parent if (path.parent / "go.mod").is_file() else None
    if lang == "rust":
        return next((p for p in parents if (p / "Cargo.toml").is_file()), None)
    return next(
        (
            p
            for p in parents
            if (p / "assembly" / "index.ts").is_file()
            and path.is_relative_to(p / "assembly")
        ),
        None,
    )


def folder(root: Path, lang: str | None = None) -> Project:
    """A user's project folder, as it is.

    Raises:
        ValueError: no manifest tells its language.
        BuildError: a file the build needs is missing.
    """
    detected = lang or detect_folder(root)
    if detected is None:
        raise ValueError(
            f"cannot tell the language of {root}: it has no Cargo.toml, go.mod, "
            "package.json, asconfig.json or assembly/index.ts (or pass lang=)"
        )
    # A Cargo workspace member builds with the workspace's Cargo.lock; the
    # digest then covers the whole workspace (its manifest, lock, members).
    tree = rustworkspace.lock_folder(root) if detected == "rust" else root
    for name, hint in _MANIFESTS[detected]:
        if not ((tree if name == "Cargo.lock" else root) / name).is_file():
            raise BuildError(f"no {name} in {root}{hint}")
    # samples/filters/add_headers/rust (or .../rust-current) -> "add_headers"
    lang_name = root.name.split("-")[0]
    named = root.parent if lang_name in LANGUAGES or lang_name in ALIASES else root
    return Project(
        detected, root, project_name(named.name), digest_tree(tree, detected)
    )


def generated(
    text: str, lang: str, root_id: str | None, *, shown_as: str = TEXT_NAME
) -> Project:
    """A project generated from source text, in the build cache (not written yet)."""
    tool = toolchain(lang)
    name = project_name(root_id)
    files = tool.template(text, name)
    digest = digest_files(files)
    root = build_cache() / "projects" / tool.lang / f"{name}-{digest[:16]}"
    return Project(
        tool.lang, root, name, digest, files=files, shown={tool.source_file: shown_as}
    )
