"""Rust filters: rustup's or the kit's modern Rust, else Debian's rustc 1.63.

Which compiler is chosen is decided in :mod:`wasmkit.build.rustmodern`.

rustup's (a toolchain with the wasm32-wasip1 std) and the kit's modern Rust
(``scripts/setup-rust-modern.sh``, the default where it is set up): the
toolchain's own cargo and rustc, ``--target wasm32-wasip1``, crates fetched
once into ``<kit cache>/cargo-home`` (``cargo fetch``) and built ``--offline``
after that; source text uses the current proxy-wasm (0.2.5).

Debian's (the fallback): as ``scripts/build-rust.sh``, ``cargo build --release
--offline --locked --target wasm32-wasi`` with the crates from ``<kit
cache>/cargo-vendor`` (filled by ``scripts/setup-rust.sh`` when a lockfile
needs crates it lacks); source text uses proxy-wasm 0.2.2. Its cargo reads
lockfiles up to version 3 only. ``$WASMKIT_RUST_TARGET`` picks another target.

The target folder is ``<kit cache>/cargo-target/<package name>`` (rustup's
``cargo-target-rustup``, the modern ``cargo-target-modern``), so nothing is
written into the crate. A workspace member builds with the workspace's
Cargo.lock (:func:`wasmkit.build.rustworkspace.lock_folder`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path

from wasmkit.build import rustmodern
from wasmkit.build.rustmodern import ModernToolchain
from wasmkit.build.rustup import RustupToolchain, has_std
from wasmkit.build.rustworkspace import lock_folder
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

RUSTC = Path("/usr/bin/rustc")
"""Debian's rustc: the only one here with a wasm32 std."""
CARGO = Path("/usr/bin/cargo")
"""Debian's cargo, which builds offline from the vendored crates."""
LINKER = Path("/usr/bin/rust-lld")
"""The wasm linker (Debian package ``lld``)."""

INSTALL = (
    f"{rustmodern.MODERN_INSTALL}, used when present; or Debian's Rust with the "
    "wasm32 std, as root: `apt-get update && apt-get install -y rustc cargo "
    "libstd-rust-dev-wasm32 lld`, then `bash scripts/setup-rust.sh` to vendor "
    "the crates (both are part of `make toolchains`); or a rustup toolchain with "
    "the wasm32-wasip1 target (`rustup target add wasm32-wasip1`), used first"
)

TINY_FILTER = """\
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Pass;

impl Context for Pass {}

impl HttpContext for Pass {}
"""

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _target(chain: rustmodern.Chosen = None) -> str:
    if chain is not None:
        return rustmodern.target()
    return os.environ.get("WASMKIT_RUST_TARGET") or "wasm32-wasi"


def _missing(what: str) -> ToolchainNotFoundError:
    return ToolchainNotFoundError(f"{what} is missing: install {INSTALL}")


def _renamed(text: str, name: str) -> str:
    # The crate's own [package] / [[package]] entry is the one named add_headers.
    return re.sub(
        r'^name = "add_headers"$', f'name = "{name}"', text, count=1, flags=re.M
    )


class Rust:
    """Rust proxy-wasm filters (crate ``proxy-wasm`` 0.2)."""

    lang = "rust"
    source_file = "src/lib.rs"
    install = INSTALL
    recipe = "cargo-1"
    tiny_filter = TINY_FILTER

    def versions(self, *, setup: bool = True) -> dict[str, str]:
        """``rustc``, ``cargo``, the target and where the compiler comes from.

        Checks the wasm std and the linker.
        """
        chain = rustmodern.choose(setup=setup)
        if isinstance(chain, ModernToolchain):
            return rustmodern.versions(chain)
        if chain is not None:
            return self._rustup_versions(chain)
        for exe in (RUSTC, CARGO):
            if not exe.is_file():
                raise _missing(str(exe))
        rustc = tool_version(RUSTC, ["--version"]).split()
        cargo = tool_version(CARGO, ["--version"]).split()
        sysroot = Path(tool_version(RUSTC, ["--print", "sysroot"]))
        target = _target()
        if not any((sysroot / "lib" / "rustlib" / target / "lib").glob("libstd-*")):
            raise _missing(f"the {target} std of {RUSTC} (libstd-rust-dev-wasm32)")
        if not LINKER.exists() and shutil.which("rust-lld") is None:
            raise _missing("the wasm linker rust-lld (lld)")
        return {
            "rustc": rustc[1] if len(rustc) > 1 else " ".join(rustc),
            "cargo": cargo[1] if len(cargo) > 1 else " ".join(cargo),
            "target": target,
            "from": "debian",
        }

    def _rustup_versions(self, chain: RustupToolchain) -> dict[str, str]:
        target = _target(chain)
        if not has_std(chain.root, target):
            raise ToolchainNotFoundError(
                f"the rustup toolchain {chain.name} has no {target} std: "
                f"`rustup target add {target}`"
            )
        rustc = tool_version(chain.rustc, ["--version"]).split()
        cargo = tool_version(chain.cargo, ["--version"]).split()
        return {
            "rustc": rustc[1] if len(rustc) > 1 else " ".join(rustc),
            "cargo": cargo[1] if len(cargo) > 1 else " ".join(cargo),
            "target": target,
            "from": f"rustup {chain.name}",
        }

    def template(self, text: str, name: str) -> dict[str, bytes]:
        """Cargo.toml and Cargo.lock of the add_headers sample, renamed.

        With rustup's or the modern Rust the manifest asks for the current
        proxy-wasm.
        """
        current = rustmodern.choose(setup=True) is not None
        base = TEMPLATES / ("rust-current" if current else "rust")
        return {
            "Cargo.toml": _renamed((base / "Cargo.toml").read_text(), name).encode(),
            "Cargo.lock": _renamed((base / "Cargo.lock").read_text(), name).encode(),
            self.source_file: text.encode(),
        }

    def prepare(self, project: Project, timeout: float) -> None:
        """Fetch or vendor the lockfile's crates when some are missing (once)."""
        chain = rustmodern.choose()
        if chain is not None:
            rustmodern.fetch(chain, project.root, timeout)
            return
        locked = lock_folder(project.root)
        missing = self._missing_crates(locked)
        if missing:
            run_setup(
                "setup-rust.sh",
                [str(locked)],
                timeout=max(timeout, SETUP_TIMEOUT_S),
            )
            still = self._missing_crates(locked)
            if still:
                raise ToolchainNotFoundError(
                    "crates still missing after scripts/setup-rust.sh: "
                    + ", ".join(still)
                )

    def _missing_crates(self, root: Path) -> list[str]:
        lock = root / "Cargo.lock"
        try:
            data = tomllib.loads(lock.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BuildError(f"cannot read {lock}: {exc}") from exc
        version = data.get("version", 3)
        if isinstance(version, int) and version > 3:
            raise BuildError(
                f"{lock} is a version {version} lockfile, which Debian's cargo "
                "1.63 cannot read (and Debian's rustc is the one building: "
                "WASMKIT_RUST_TOOLCHAIN=debian, or no modern Rust is set up). Build "
                f"it with {rustmodern.MODERN_INSTALL}; or set the lockfile's "
                "'version = ' line to 3 (or set rust-version = \"1.63\" in "
                "Cargo.toml and regenerate it)"
            )
        vendor = kit_cache() / "cargo-vendor"
        missing = []
        for package in data.get("package", []):
            source = str(package.get("source", ""))
            if not source.startswith("registry+"):
                continue
            folder = f"{package.get('name')}-{package.get('version')}"
            if not (vendor / folder / ".cargo-checksum.json").is_file():
                missing.append(folder)
        return missing

    def compile(self, project: Project, out: Path, options: Options) -> Compiled:
        """``cargo build`` offline; the crate's cdylib is copied to ``out``."""
        root = project.root
        manifest = root / "Cargo.toml"
        try:
            package = tomllib.loads(manifest.read_text()).get("package", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BuildError(f"cannot read {manifest}: {exc}") from exc
        name = str(package.get("name", ""))
        if not _NAME.match(name):
            raise BuildError(f"cannot read the package name from {manifest}")
        command, env = self._command(name, options)
        proc = run(command, cwd=root, env=env, timeout=options.timeout)
        rendered: list[str] = []
        errors: list[Diagnostic] = []
        warnings: list[Diagnostic] = []
        wasm: str | None = None
        for line in proc.stdout.splitlines():
            if not line.startswith("{"):
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("reason") == "compiler-artifact":
                for filename in message.get("filenames") or []:
                    if str(filename).endswith(".wasm"):
                        wasm = str(filename)
            elif message.get("reason") == "compiler-message":
                diag = message.get("message") or {}
                rendered.append(str(diag.get("rendered") or ""))
                located = _diagnostic(diag)
                if located is None:
                    continue
                if str(diag.get("level", "")).startswith("error"):
                    errors.append(located)
                elif diag.get("level") == "warning":
                    warnings.append(located)
        progress = [
            line
            for line in proc.stderr.splitlines()
            if not re.match(r"^\s+(Compiling|Finished|Fresh|Blocking)\b", line)
        ]
        log = "".join(rendered) + "\n".join(progress)
        if proc.returncode != 0:
            raise project.compile_error(self.lang, proc, log, errors)
        if wasm is None or not Path(wasm).is_file():
            raise BuildError(
                f'cargo built no .wasm for {root} (is crate-type = ["cdylib"] set '
                "in [lib]?)"
            )
        shutil.copyfile(wasm, out)
        return Compiled(tuple(command), log, tuple(warnings))

    def _command(self, name: str, options: Options) -> tuple[list[str], dict[str, str]]:
        chain = rustmodern.choose()
        cache = kit_cache()
        if isinstance(chain, ModernToolchain):
            folder = "cargo-target-modern"
        elif chain is not None:
            folder = "cargo-target-rustup"
        else:
            folder = "cargo-target"
        target_dir = cache / folder / name
        target_dir.mkdir(parents=True, exist_ok=True)
        common = [
            *(["--release"] if options.optimize else []),
            "--offline",
            "--locked",
            "--target-dir",
            str(target_dir),
            "--message-format=json",
        ]
        if chain is not None:
            env = rustmodern.env(chain)
            command = [str(chain.cargo), "build", "--target", _target(chain)]
            return [*command, *common, *options.extra_args], env
        vendor = cache / "cargo-vendor"
        env = dict(os.environ)
        # The vendor path is remapped so the module's bytes do not depend on
        # where the cache lives; flags from RUSTFLAGS are kept in front.
        flags = env.pop("RUSTFLAGS", "").split()
        flags.append(f"--remap-path-prefix={vendor}=/cargo-vendor")
        env["RUSTC"] = str(RUSTC)
        env["CARGO_ENCODED_RUSTFLAGS"] = "\x1f".join(flags)
        command = [
            str(CARGO),
            "build",
            "--target",
            _target(),
            *common,
            "--config",
            'source.crates-io.replace-with="wasmkit-vendor"',
            "--config",
            f"source.wasmkit-vendor.directory={json.dumps(str(vendor))}",
            *options.extra_args,
        ]
        return command, env


def _diagnostic(diag: Mapping[str, object]) -> Diagnostic | None:
    spans = diag.get("spans")
    if not isinstance(spans, list):
        return None
    for span in spans:
        if isinstance(span, dict) and span.get("is_primary"):
            return Diagnostic(
                str(span.get("file_name", "")),
                int(span.get("line_start") or 0),
                int(span.get("column_start") or 0),
                str(diag.get("message", "")),
            )
    return None
