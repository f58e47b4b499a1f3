"""Go filters: Go >= 1.24 itself (``GOOS=wasip1 -buildmode=c-shared``), or TinyGo.

As ``scripts/build-go.sh``: the module's dependencies come from the kit's module
cache ``<kit cache>/gomod`` (filled by ``scripts/setup-go.sh`` when some are
missing) and the build runs with ``GOPROXY=off``, ``-trimpath`` and
``-buildvcs=false``, writing nothing into the module. TinyGo builds the same
modules when asked for (``lang="tinygo"``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from wasmkit.build.toolchain import (
    SETUP_TIMEOUT_S,
    TEMPLATES,
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

MIN_MINOR = 24
"""Go 1.24 is the first Go that builds proxy-wasm modules (``//go:wasmexport``)."""

INSTALL = (
    "Go >= 1.24: download it from https://go.dev/dl/, unpack it with `tar -C "
    "/usr/local -xzf go1.*.linux-amd64.tar.gz` and put /usr/local/go/bin on PATH "
    "(or conda-forge's `go`), then run `bash scripts/setup-go.sh` to download "
    "the SDK's modules (part of `make toolchains`)"
)

INSTALL_TINYGO = (
    "TinyGo >= 0.36 (https://tinygo.org/getting-started/install/linux/), e.g. "
    "`wget https://github.com/tinygo-org/tinygo/releases/download/v0.37.0/"
    "tinygo_0.37.0_amd64.deb && dpkg -i tinygo_0.37.0_amd64.deb`; it also needs "
    "the `go` command on PATH"
)

TINY_FILTER = """\
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &root{} })
}

type root struct {
	types.DefaultPluginContext
}

func (*root) NewHttpContext(uint32) types.HttpContext {
	return &types.DefaultHttpContext{}
}
"""

# ./main.go:12:5: undefined: x   (the column is optional)
_LOCATION = re.compile(r"^(?:\./)?(\S[^:]*\.go):(\d+)(?::(\d+))?: (.*)$")


def _env(*, go_flags: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    # The kit's module and build caches; a go.work elsewhere must not change
    # what is built; GOTOOLCHAIN=local never fetches another Go. A user's own
    # GOFLAGS are kept (after the kit's), then the build's go_flags.
    cache = kit_cache()
    env = dict(os.environ)
    flags = ["-modcacherw"]
    user = os.environ.get("GOFLAGS", "").strip()
    if user:
        flags.append(user)
    flags.extend(go_flags)
    env.update(
        GOMODCACHE=str(cache / "gomod"),
        GOCACHE=str(cache / "gocache"),
        GOFLAGS=" ".join(flags),
        GOWORK="off",
        GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN") or "local",
    )
    env.update(extra)
    return env


def _tags(options: Options) -> list[str]:
    return [f"-tags={','.join(options.tags)}"] if options.tags else []


def _which(tool: str, install: str) -> Path:
    found = shutil.which(tool)
    if found is None:
        raise ToolchainNotFoundError(
            f"the '{tool}' command is not on PATH: install {install}"
        )
    return Path(found)


def _diagnostics(text: str) -> list[Diagnostic]:
    out = []
    for line in text.splitlines():
        match = _LOCATION.match(line.strip())
        if match:
            file, row, col, message = match.groups()
            out.append(Diagnostic(file, int(row), int(col or 0), message))
    return out


class Go:
    """Go proxy-wasm filters (``github.com/proxy-wasm/proxy-wasm-go-sdk``)."""

    lang = "go"
    source_file = "main.go"
    install = INSTALL
    recipe = "go-c-shared-1"
    tiny_filter = TINY_FILTER

    def _go(self) -> Path:
        return _which("go", INSTALL)

    def versions(self, *, setup: bool = True) -> dict[str, str]:
        """``go``: its ``GOVERSION``, checked to be >= 1.24."""
        go = self._go()
        version = tool_version(go, ["env", "GOVERSION"], env=_env())
        match = re.search(r"go1\.(\d+)", version)
        if match is None or int(match.group(1)) < MIN_MINOR:
            raise ToolchainNotFoundError(
                f"{go} is {version}, but proxy-wasm filters need Go >= 1.{MIN_MINOR} "
                f"(GOOS=wasip1 -buildmode=c-shared with //go:wasmexport): install "
                + INSTALL
            )
        return {"go": version}

    def template(self, text: str, name: str) -> dict[str, bytes]:
        """go.mod and go.sum of the add_headers sample, module renamed."""
        base = TEMPLATES / "go"
        go_mod = re.sub(
            r"^module .*$",
            f"module wasmkit/filters/{name}",
            (base / "go.mod").read_text(),
            count=1,
            flags=re.M,
        )
        return {
            "go.mod": go_mod.encode(),
            "go.sum": (base / "go.sum").read_bytes(),
            self.source_file: text.encode(),
        }

    def prepare(self, project: Project, timeout: float) -> None:
        """Download the module's dependencies when the cache lacks some (once)."""
        check = run(
            [str(self._go()), "mod", "download"],
            cwd=project.root,
            env=_env(GOPROXY="off"),
            timeout=max(timeout, 120.0),
        )
        if check.returncode != 0:
            run_setup(
                "setup-go.sh",
                [str(project.root)],
                timeout=max(timeout, SETUP_TIMEOUT_S),
            )

    def _command(self, out: Path, options: Options) -> list[str]:
        return [
            str(self._go()),
            "build",
            "-buildmode=c-shared",
            "-trimpath",
            "-buildvcs=false",
            *_tags(options),
            *options.extra_args,
            "-o",
            str(out),
            ".",
        ]

    def _build_env(self, options: Options | None = None) -> dict[str, str]:
        return _env(
            go_flags=options.go_flags if options else (),
            GOPROXY="off",
            GOOS="wasip1",
            GOARCH="wasm",
            CGO_ENABLED="0",
        )

    def compile(self, project: Project, out: Path, options: Options) -> Compiled:
        """``go build`` offline into ``out``."""
        command = self._command(out, options)
        env = self._build_env(options)
        Path(env["GOCACHE"]).mkdir(parents=True, exist_ok=True)
        proc = run(command, cwd=project.root, env=env, timeout=options.timeout)
        log = proc.stderr + proc.stdout
        if proc.returncode != 0:
            raise project.compile_error(self.lang, proc, log, _diagnostics(log))
        if not out.is_file() or out.stat().st_size == 0:
            raise BuildError(
                f"{command[0]} wrote no module for {project.root} (is it a main "
                "package?)"
            )
        return Compiled(tuple(command), log)


class TinyGo(Go):
    """The same Go filters built by TinyGo (``lang="tinygo"``)."""

    lang = "tinygo"
    install = INSTALL_TINYGO
    recipe = "tinygo-c-shared-1"

    def versions(self, *, setup: bool = True) -> dict[str, str]:
        """``tinygo`` and the ``go`` it uses."""
        tinygo = _which("tinygo", INSTALL_TINYGO)
        go = _which("go", INSTALL_TINYGO)
        text = tool_version(tinygo, ["version"])
        match = re.search(r"version (\S+)", text)
        return {
            "tinygo": match.group(1) if match else text,
            "go": tool_version(go, ["env", "GOVERSION"], env=_env()),
        }

    def _command(self, out: Path, options: Options) -> list[str]:
        return [
            str(_which("tinygo", INSTALL_TINYGO)),
            "build",
            "-o",
            str(out),
            "-scheduler=none",
            "-target=wasip1",
            "-buildmode=c-shared",
            "-opt=2" if options.optimize else "-opt=1",
            *_tags(options),
            *options.extra_args,
            ".",
        ]

    def _build_env(self, options: Options | None = None) -> dict[str, str]:
        return _env(go_flags=options.go_flags if options else (), GOPROXY="off")
