"""``build()``: source in, :class:`Artifact` out, through the build cache."""

from __future__ import annotations

import contextlib
import html
import os
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmkit.build import project as projects
from wasmkit.build.cache import BuildCache, Entry, make_key
from wasmkit.build.check import check_module
from wasmkit.build.languages import toolchain
from wasmkit.build.toolchain import (
    Diagnostic,
    Options,
    Project,
    Toolchain,
    build_cache,
    write_atomic,
)
from wasmkit.progress import Progress


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    """A built filter module.

    It is path-like, so ``wasmkit.load(artifact, ...)`` loads it.
    """

    path: Path
    """The ``.wasm`` file, in the build cache."""
    wasm: bytes = field(repr=False)
    """The module's bytes."""
    lang: str
    """The language: ``assemblyscript``, ``rust``, ``go`` or ``tinygo``."""
    toolchain: Mapping[str, str]
    """Versions of the tools, e.g. ``{"rustc": "1.63.0", "cargo": ...}``."""
    build_ms: float
    """How long this call took (ms): the compile, or the cache lookup on a hit."""
    compile_ms: float
    """How long the compile that made the module took (ms)."""
    cache_hit: bool
    """Whether the module came from the build cache."""
    source_digest: str
    """SHA-256 over the project's files (hex)."""
    key: str
    """The build cache key."""
    source: Path
    """The project folder compiled: the user's, or the one generated for text."""
    root_id: str | None = None
    """The root id given to :func:`build`."""
    warnings: tuple[Diagnostic, ...] = ()
    """Compiler warnings in the user's files."""
    log: str = field(default="", repr=False)
    """The compiler's output of that compile."""

    @property
    def size(self) -> int:
        """Size of the module (bytes)."""
        return len(self.wasm)

    def __fspath__(self) -> str:
        return str(self.path)

    def save(self, dest: str | os.PathLike[str]) -> Path:
        """Write the module to ``dest`` (replaced whole); returns its path."""
        path = Path(dest)
        write_atomic(path, self.wasm)
        return path

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (without the bytes)."""
        return {
            "path": str(self.path),
            "size": self.size,
            "lang": self.lang,
            "toolchain": dict(self.toolchain),
            "build_ms": round(self.build_ms, 3),
            "compile_ms": round(self.compile_ms, 3),
            "cache_hit": self.cache_hit,
            "source_digest": self.source_digest,
            "key": self.key,
            "source": str(self.source),
            "root_id": self.root_id,
            "warnings": [list(w) for w in self.warnings],
        }

    def summary(self) -> str:
        """One line: what was built, with what, how fast."""
        tools = ", ".join(f"{k} {v}" for k, v in self.toolchain.items())
        how = (
            f"cached, {self.build_ms:.0f} ms"
            if self.cache_hit
            else f"built in {self.build_ms / 1000:.1f} s"
        )
        return f"{self.path.name}: {self.size} bytes, {self.lang} ({tools}); {how}"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<li><code>{html.escape(str(w))}</code></li>" for w in self.warnings
        )
        warnings = f"<ul>{rows}</ul>" if rows else ""
        return f"<p><b>wasmkit build</b> {html.escape(self.summary())}</p>{warnings}"


GO_LANGS = ("go", "tinygo")
"""The languages that take build tags and GOFLAGS."""


def split_tags(tags: str | Sequence[str]) -> tuple[str, ...]:
    """Build tags from ``"a,b c"`` or a list; each checked to be a plain word.

    Raises:
        ValueError: a tag holds other characters than letters, digits, ``_``,
            ``.`` and ``-``.
    """
    items = [tags] if isinstance(tags, str) else list(tags)
    out: list[str] = []
    for item in items:
        for tag in str(item).replace(",", " ").split():
            if not all(c.isalnum() or c in "_.-" for c in tag):
                raise ValueError(f"not a Go build tag: {tag!r}")
            if tag not in out:
                out.append(tag)
    return tuple(out)


def split_flags(flags: str | Sequence[str]) -> tuple[str, ...]:
    """GOFLAGS items from one shell-like string or a list."""
    if isinstance(flags, str):
        return tuple(shlex.split(flags))
    return tuple(str(f) for f in flags)


def build(
    source: str | os.PathLike[str],
    lang: str | None = None,
    *,
    root_id: str | None = None,
    optimize: bool = True,
    extra_args: Sequence[str] = (),
    tags: str | Sequence[str] = (),
    go_flags: str | Sequence[str] = (),
    timeout: float = 600.0,
    force: bool = False,
    progress: bool | None = None,
) -> Artifact:
    """Build a proxy-wasm filter from source, through the build cache.

    An unchanged rebuild (same files, language, options and toolchain
    versions) returns the cached module without running a compiler. The first
    build of a language may set its toolchain up (download once); every later
    build is offline.

    Args:
        source: a project folder (``Cargo.toml``, ``go.mod``, or
            ``assembly/index.ts`` / ``package.json`` / ``asconfig.json``), a
            ``.rs`` / ``.go`` / ``.ts`` file, or source text (a notebook cell),
            which is built in a project generated from the language's template.
        lang: ``assemblyscript``, ``rust``, ``go`` or ``tinygo`` (also ``as``,
            ``rs``); detected from the manifest, extension or text when ``None``.
        root_id: recorded on the artifact; names the crate / module generated
            for source text.
        optimize: release build (``False``: cargo's debug profile, ``asc
            --debug``; Go always optimizes).
        extra_args: more compiler arguments, after the kit's.
        tags: Go build tags (``go build -tags``), a list or one string
            separated by commas or spaces, e.g. ``"no_fs_access
            memoize_builders"``; Go and TinyGo only.
        go_flags: more ``GOFLAGS`` (a list, or one string split like a shell
            line), added after the user's own ``$GOFLAGS``, which is kept;
            Go and TinyGo only.
        timeout: time limit of the compile (s).
        force: compile even when the cache has the module.
        progress: a compile that takes over a second shows a spinner with the
            time and closes with ``built NAME (rust) in 12.3 s``
            (:class:`wasmkit.progress.Progress`). ``None``: in a notebook or a
            terminal; ``True``: also as plain lines on a piped stderr.

    Raises:
        ToolchainNotFoundError: a compiler is missing; says what to install.
        CompileError: the compiler rejected the source; ``.diagnostics`` lists
            ``(file, line, column, message)`` in the user's source.
        BuildError: any other build failure.
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: the language is unknown or cannot be told.
    """
    started = time.perf_counter()
    project = projects.resolve(source, lang, root_id)
    tool = toolchain(project.lang)
    versions = tool.versions()
    options = Options(
        optimize,
        tuple(str(a) for a in extra_args),
        timeout,
        tags=split_tags(tags),
        go_flags=split_flags(go_flags),
    )
    key_fields: dict[str, object] = {
        "lang": project.lang,
        "source": project.digest,
        "options": options.key(),
        "toolchain": versions,
        "recipe": tool.recipe,
    }
    if project.lang in GO_LANGS:
        if os.environ.get("GOFLAGS"):
            key_fields["env_goflags"] = os.environ["GOFLAGS"]
    elif options.tags or options.go_flags:
        raise ValueError(
            f"build tags and GOFLAGS apply to Go and TinyGo builds, not to "
            f"{project.lang}"
        )
    key = make_key(key_fields)
    cache = BuildCache(build_cache())
    entry = None if force else cache.get(key)
    hit = entry is not None
    if entry is None:
        what = f"{project.name} ({project.lang})"
        with Progress(
            desc=f"building {what}",
            unit="",
            enabled=progress,
            ticker=True,
            bar_format="{desc} {elapsed}",
        ) as bar:
            entry = _compile(project, tool, options, cache, key, versions)
            bar.done(f"built {what}")
    meta = entry.meta
    return Artifact(
        path=entry.path,
        wasm=entry.path.read_bytes(),
        lang=project.lang,
        toolchain=dict(versions),
        build_ms=(time.perf_counter() - started) * 1000,
        compile_ms=float(meta.get("compile_ms", 0.0)),
        cache_hit=hit,
        source_digest=project.digest,
        key=key,
        source=project.root,
        root_id=root_id,
        warnings=tuple(
            project.locate(Diagnostic(str(f), int(r), int(c), str(m)))
            for f, r, c, m in meta.get("warnings", [])
        ),
        log=str(meta.get("log", "")),
    )


def _compile(
    project: Project,
    tool: Toolchain,
    options: Options,
    cache: BuildCache,
    key: str,
    versions: Mapping[str, str],
) -> Entry:
    root = project.materialize()
    tool.prepare(project, options.timeout)
    out = cache.scratch() / f"{key[:16]}-{uuid.uuid4().hex[:8]}.wasm"
    started = time.perf_counter()
    try:
        compiled = tool.compile(project, out, options)
        compile_ms = (time.perf_counter() - started) * 1000
        # A compile can succeed into a module no host loads: say why, cache nothing.
        check_module(
            out.read_bytes(), lang=project.lang, name=project.name, root=root
        )
        # Warnings are stored relative to the project, located when read.
        warnings = [
            [project.relative(w.file) or w.file, w.line, w.column, w.message]
            for w in compiled.warnings
        ]
        return cache.put(
            key,
            out,
            {
                "file": f"{project.name}.{project.lang}.wasm",
                "lang": project.lang,
                "toolchain": dict(versions),
                "compile_ms": compile_ms,
                "source_digest": project.digest,
                "source": str(root),
                "command": list(compiled.command),
                "warnings": warnings,
                "log": compiled.log,
                "created": time.time(),
            },
        )
    finally:
        with contextlib.suppress(OSError):
            out.unlink()
