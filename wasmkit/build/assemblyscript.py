"""AssemblyScript filters: the kit's pinned asc and ``@solo-io/proxy-runtime``.

As ``scripts/build-assemblyscript.sh``: the toolchain is installed once by
``scripts/setup-assemblyscript.sh`` (``npm ci`` from the committed lockfile in
``toolchains/assemblyscript``) into ``<kit cache>/toolchains/assemblyscript``;
``assembly/index.ts`` of the project is compiled with fixed options (an
``asconfig.json`` is not applied) and packages resolve from that toolchain only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from wasmkit.build.toolchain import (
    KIT_ROOT,
    SETUP_TIMEOUT_S,
    Compiled,
    Diagnostic,
    Options,
    Project,
    kit_cache,
    run,
    run_setup,
    tool_version,
)
from wasmkit.errors import BuildError, ToolchainNotFoundError

PINNED = KIT_ROOT / "toolchains" / "assemblyscript"
"""The committed package.json and package-lock.json of the toolchain."""

ENTRY = "assembly/index.ts"
"""The entry file of a project."""

INSTALL = (
    "Node.js with npm (tested with Node 20), e.g. `apt-get install -y nodejs "
    "npm`, then `bash scripts/setup-assemblyscript.sh` to install the pinned "
    "AssemblyScript toolchain (part of `make toolchains`)"
)

TINY_FILTER = """\
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext } from "@solo-io/proxy-runtime";

class Root extends RootContext {
  createContext(context_id: u32): Context {
    return new Context(context_id, this);
  }
}

registerRootContext((context_id: u32): RootContext => new Root(context_id), "tiny");
"""

# ERROR TS2304: Cannot find name 'y'.   /   WARNING AS201: Conversion ...
_HEADER = re.compile(r"^(ERROR|WARNING|INFO|PEDANTIC)(?: \w+)?: (.*)$")
#  in tmp/x/assembly/index.ts(12,5)     (paths relative to --baseDir /)
_LOCATION = re.compile(r"^\s*in (.+)\((\d+),(\d+)\)$")


def toolchain_dir() -> Path:
    """Where the toolchain is installed."""
    return kit_cache() / "toolchains" / "assemblyscript"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _installed() -> bool:
    home = toolchain_dir()
    if not os.access(home / "node_modules" / ".bin" / "asc", os.X_OK):
        return False
    if not PINNED.is_dir():
        return True
    return all(
        _same(PINNED / name, home / name)
        for name in ("package.json", "package-lock.json")
    )


def _package_version(name: str) -> str:
    path = toolchain_dir() / "node_modules" / name / "package.json"
    try:
        return str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError) as exc:
        raise ToolchainNotFoundError(
            f"cannot read the version of {name} in {path}: install " + INSTALL
        ) from exc


def _diagnostics(text: str) -> tuple[list[Diagnostic], list[Diagnostic]]:
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    level = message = ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            level, message = header.groups()
            continue
        where = _LOCATION.match(line)
        if where and level:
            file, row, col = where.groups()
            if not file.startswith(("~", "/")):
                file = "/" + file
            diag = Diagnostic(file, int(row), int(col), message)
            (errors if level == "ERROR" else warnings).append(diag)
            level = ""
    return errors, warnings


class AssemblyScript:
    """AssemblyScript proxy-wasm filters (assemblyscript 0.14, proxy-runtime 0.1)."""

    lang = "assemblyscript"
    source_file = ENTRY
    install = INSTALL
    recipe = "asc-1"
    tiny_filter = TINY_FILTER

    def versions(self, *, setup: bool = True) -> dict[str, str]:
        """``node``, ``assemblyscript`` and ``proxy-runtime``; installs them once."""
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                raise ToolchainNotFoundError(
                    f"'{tool}' was not found on PATH: AssemblyScript builds need "
                    + INSTALL
                )
        if not _installed():
            if not setup:
                raise ToolchainNotFoundError(
                    f"the AssemblyScript toolchain is not installed in "
                    f"{toolchain_dir()}: run `bash scripts/setup-assemblyscript.sh`"
                )
            run_setup("setup-assemblyscript.sh", timeout=SETUP_TIMEOUT_S)
        node = Path(shutil.which("node") or "node")
        return {
            "node": tool_version(node, ["--version"]).lstrip("v"),
            "assemblyscript": _package_version("assemblyscript"),
            "proxy-runtime": _package_version("@solo-io/proxy-runtime"),
        }

    def template(self, text: str, name: str) -> dict[str, bytes]:
        """Just ``assembly/index.ts``: packages come from the toolchain."""
        return {ENTRY: text.encode()}

    def prepare(self, project: Project, timeout: float) -> None:
        """Nothing per project: the toolchain holds every package."""

    def compile(self, project: Project, out: Path, options: Options) -> Compiled:
        """``asc`` with the kit's options into ``out``."""
        entry = project.root / ENTRY
        if not entry.is_file():
            raise BuildError(f"entry file not found: {entry}")
        home = toolchain_dir()
        node = shutil.which("node") or "node"
        # Imports resolve through --path to the pinned toolchain; with base
        # directory "/" a stray node_modules near the project cannot shadow
        # them, and --config /dev/null applies no asconfig.json.
        command = [
            node,
            str((home / "node_modules" / ".bin" / "asc").resolve()),
            str(entry),
            "--baseDir",
            "/",
            "--config",
            "/dev/null",
            "--path",
            str(home / "node_modules"),
            "--binaryFile",
            str(out),
            "--use",
            "abort=abort_proc_exit",
            "--optimize" if options.optimize else "--debug",
            "--noColors",
            *options.extra_args,
        ]
        proc = run(command, cwd=project.root, timeout=options.timeout)
        log = proc.stderr + proc.stdout
        errors, warnings = _diagnostics(log)
        if proc.returncode != 0:
            raise project.compile_error(self.lang, proc, log, errors)
        if not out.is_file() or out.stat().st_size == 0:
            raise BuildError(f"asc produced no output for {entry}")
        mine = [
            w
            for w in warnings
            if not w.file.startswith("~") and project.relative(w.file) is not None
        ]
        return Compiled(tuple(command), log, tuple(mine))
