"""What the toolchain adapters share: the protocol, projects, subprocesses, versions.

Compilers run as subprocesses with argument lists, a time limit and captured
output; a time-out kills the whole process group (cargo's rustc children too).
First-time set-up (``npm ci``, vendoring crates, downloading Go modules) is done
by the kit's ``scripts/setup-*.sh``; after it, every build is offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from wasmkit.errors import CompileError, ToolchainNotFoundError

KIT_ROOT = Path(__file__).resolve().parents[2]
"""The wasmkit checkout: ``scripts/`` and ``toolchains/`` for first-time set-up."""

TEMPLATES = Path(__file__).resolve().parent / "templates"
"""Project templates for source text, copied from the add_headers sample."""

SETUP_TIMEOUT_S = 1800.0
"""Time limit of a first-time set-up, which downloads (s)."""

TEXT_NAME = "<source>"
"""How diagnostics name source text given to :func:`wasmkit.build.build`."""


def kit_cache() -> Path:
    """``$WASMKIT_CACHE`` or ``~/.cache/wasmkit``: toolchains, crates, modules."""
    value = os.environ.get("WASMKIT_CACHE")
    return Path(value) if value else Path.home() / ".cache" / "wasmkit"


def build_cache() -> Path:
    """``$WASMKIT_BUILD_CACHE`` or ``<kit cache>/builds``: built modules, projects."""
    value = os.environ.get("WASMKIT_BUILD_CACHE")
    return Path(value) if value else kit_cache() / "builds"


class Diagnostic(NamedTuple):
    """One compiler message, located in the user's source."""

    file: str
    """The file: a path, or ``"<source>"`` for source text."""
    line: int
    """1-based line (0 when the compiler gave none)."""
    column: int
    """1-based column (0 when the compiler gave none)."""
    message: str
    """The compiler's message, first line."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class Options:
    """How to compile (part of the cache key, except the time limit)."""

    optimize: bool = True
    """Release build (``cargo --release``, ``asc --optimize``); Go always optimizes."""
    extra_args: tuple[str, ...] = ()
    """Extra compiler arguments, appended to the kit's."""
    timeout: float = 600.0
    """Time limit of the compile (s)."""
    tags: tuple[str, ...] = ()
    """Go build tags (``go build -tags``); Go and TinyGo only."""
    go_flags: tuple[str, ...] = ()
    """Flags added to ``GOFLAGS`` after the user's own; Go and TinyGo only."""

    def key(self) -> dict[str, object]:
        """The options that change the module."""
        key: dict[str, object] = {
            "optimize": self.optimize,
            "extra_args": list(self.extra_args),
        }
        if self.tags:
            key["tags"] = list(self.tags)
        if self.go_flags:
            key["go_flags"] = list(self.go_flags)
        return key


@dataclass(frozen=True, slots=True)
class Project:
    """A project folder to compile: the user's, or generated from source text."""

    lang: str
    """Canonical language name."""
    root: Path
    """The folder the compiler runs in."""
    name: str
    """Short name: the folder's, or the generated crate/module name."""
    digest: str
    """SHA-256 over every file of the project (hex)."""
    files: Mapping[str, bytes] | None = None
    """Contents of a generated project (relative path -> bytes); ``None`` for a
    user's folder."""
    shown: Mapping[str, str] = field(default_factory=dict)
    """Project-relative paths shown under another name in diagnostics."""

    def relative(self, reported: str) -> str | None:
        """``reported`` (absolute or relative to the root) relative to the root."""
        path = Path(reported)
        full = path if path.is_absolute() else self.root / path
        rel = os.path.relpath(os.path.normpath(full), os.path.normpath(self.root))
        if rel == os.curdir or rel.startswith(os.pardir):
            return None
        return Path(rel).as_posix()

    def display(self, reported: str) -> str:
        """The name a diagnostic's file is shown under."""
        rel = self.relative(reported)
        if rel is None:
            return reported
        return self.shown.get(rel, str(self.root / rel))

    def locate(self, diagnostic: Diagnostic) -> Diagnostic:
        """``diagnostic`` with its file shown as the user knows it."""
        return diagnostic._replace(file=self.display(diagnostic.file))

    def materialize(self) -> Path:
        """Write a generated project into its folder (once) and return the folder."""
        if self.files is None:
            return self.root
        marker = self.root / ".wasmkit-complete"
        if marker.exists():
            return self.root
        self.root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root.parent))
        for rel, data in self.files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / marker.name).write_text("")
        if self.root.exists() and not marker.exists():
            # Left half-written by an interrupted run.
            _remove_tree(self.root)
        try:
            tmp.rename(self.root)
        except OSError:
            # Written meanwhile by a concurrent build: same name, same content.
            _remove_tree(tmp)
        return self.root

    def compile_error(
        self,
        lang: str,
        proc: subprocess.CompletedProcess[str],
        stderr: str,
        diagnostics: Sequence[Diagnostic],
    ) -> CompileError:
        """The error for a failed compile, with diagnostics located."""
        located = [self.locate(d) for d in diagnostics]
        if located:
            lines = [str(d) for d in located[:20]]
            if len(located) > 20:
                lines.append(f"... and {len(located) - 20} more")
        else:
            lines = tail(stderr, 30)
        return CompileError(
            f"{lang} build failed (exit {proc.returncode}):\n" + "\n".join(lines),
            command=proc.args,
            returncode=proc.returncode,
            stderr=stderr,
            diagnostics=located,
        )


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Compiled:
    """What a successful compile said."""

    command: tuple[str, ...]
    """The command line that ran."""
    log: str
    """The compiler's output (warnings, progress)."""
    warnings: tuple[Diagnostic, ...] = ()
    """Warnings in the project's files, as the compiler named the files."""


class Toolchain(Protocol):
    """A compiler adapter: one per language."""

    lang: str
    """Canonical language name."""
    source_file: str
    """Where source text goes in a generated project."""
    install: str
    """How to install the toolchain (shell commands and where to get it)."""
    recipe: str
    """Changes whenever the kit builds differently (part of the cache key)."""
    tiny_filter: str
    """The smallest filter source, built by ``doctor``."""

    def versions(self, *, setup: bool = True) -> dict[str, str]:
        """Versions of the tools (fast when unchanged).

        Raises:
            ToolchainNotFoundError: a tool is missing (the message says what to
                install and how).
        """
        ...

    def template(self, text: str, name: str) -> dict[str, bytes]:
        """The files of a generated project holding ``text``."""
        ...

    def prepare(self, project: Project, timeout: float) -> None:
        """Make the project's dependencies available offline (downloads once)."""
        ...

    def compile(self, project: Project, out: Path, options: Options) -> Compiled:
        """Compile ``project`` into ``out``.

        Raises:
            CompileError: the compiler failed.
            BuildError: it succeeded but wrote no module.
        """
        ...


def tail(text: str, lines: int) -> list[str]:
    """The last ``lines`` non-empty lines of ``text``."""
    kept = [line for line in text.splitlines() if line.strip()]
    return kept[-lines:]


def run(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with captured output (text, undecodable bytes replaced).

    Raises:
        ToolchainNotFoundError: the program cannot be started.
        CompileError: it did not finish within ``timeout`` seconds (its process
            group is killed).
    """
    args = [str(a) for a in command]
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise ToolchainNotFoundError(
            f"cannot run {args[0]}: {exc.strerror or exc}"
        ) from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out, err = _kill(proc)
        raise CompileError(
            f"{shlex.join(args)} did not finish within {timeout:g} s",
            command=args,
            returncode=proc.returncode if proc.returncode is not None else -9,
            stderr=err,
        ) from exc
    except BaseException:
        # KeyboardInterrupt in a notebook: leave no compiler behind.
        _kill(proc)
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _kill(proc: subprocess.Popen[str]) -> tuple[str, str]:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        return "", ""
    return out or "", err or ""


def run_setup(script: str, args: Sequence[str] = (), *, timeout: float) -> str:
    """Run ``scripts/<script>`` of the kit (first-time set-up); its stdout.

    Raises:
        ToolchainNotFoundError: the script is not there or failed; the message
            carries its explanation.
    """
    path = KIT_ROOT / "scripts" / script
    if not path.is_file():
        raise ToolchainNotFoundError(
            f"the toolchain is not set up and {path} is missing: run `make "
            "toolchains` in a wasmkit checkout"
        )
    proc = run(["bash", str(path), *args], timeout=timeout)
    if proc.returncode != 0:
        raise ToolchainNotFoundError(
            f"`bash {path} {shlex.join(args)}` failed (exit {proc.returncode}):\n"
            + "\n".join(tail(proc.stderr, 15))
        )
    return proc.stdout.strip()


_versions: dict[str, str] = {}
_versions_lock = threading.Lock()


def tool_version(
    exe: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> str:
    """The stripped output of ``exe args``, remembered per executable file.

    The answer is kept in memory and in ``<build cache>/tool-versions.json``,
    keyed by the resolved executable's path, size, mtime and inode, so an
    unchanged toolchain is not asked again (a cache hit starts no process).

    Raises:
        ToolchainNotFoundError: the program is missing or failed.
    """
    try:
        real = exe.resolve()
        st = real.stat()
    except OSError as exc:
        raise ToolchainNotFoundError(f"cannot run {exe}: {exc.strerror}") from exc
    ident = "|".join(
        [str(real), str(st.st_size), str(st.st_mtime_ns), str(st.st_ino), *args]
    )
    with _versions_lock:
        if ident in _versions:
            return _versions[ident]
    memo_path = build_cache() / "tool-versions.json"
    memo = _read_json(memo_path)
    value = memo.get(ident)
    if not isinstance(value, str):
        proc = run([str(exe), *args], env=env, timeout=timeout)
        if proc.returncode != 0:
            raise ToolchainNotFoundError(
                f"`{shlex.join([str(exe), *args])}` failed (exit {proc.returncode}):"
                f" {' '.join(tail(proc.stderr, 3))}"
            )
        lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        value = lines[0].strip() if lines else "unknown"
        memo = _read_json(memo_path)
        memo[ident] = value
        write_atomic(memo_path, json.dumps(memo, indent=1).encode())
    with _versions_lock:
        _versions[ident] = value
    return value


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
