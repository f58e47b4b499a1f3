"""The kit-managed modern Rust, and which Rust compiler builds a filter.

``scripts/setup-rust-modern.sh`` unpacks Debian's ``rustc-web`` and
``cargo-web`` (not installed: they would replace Debian's rustc 1.63) into
``<kit cache>/rust-modern/<release>-<commit>-<revision>/``, builds the std for
``wasm32-unknown-unknown`` and ``wasm32-wasip1`` into that prefix's own sysroot
and links with Debian's ``wasm-ld`` (``lld-N``). Its ``bin/cargo`` and
``bin/rustc`` are ready to use; ``rust-modern/current`` points at the prefix,
and ``wasmkit-toolchain.json`` in it says what was made.

:func:`choose` picks, by looking at files only (a cached rebuild starts no
process): a rustup toolchain with the wasm32-wasip1 std
(:mod:`wasmkit.build.rustup`), else the kit's modern Rust, else Debian's rustc
1.63 (``None``). ``$WASMKIT_RUST_TOOLCHAIN`` forces it: ``auto``, ``rustup``,
``modern`` or ``debian``. Rustup's and the modern toolchain build the same way:
``cargo build --target wasm32-wasip1``, crates fetched once into
``<kit cache>/cargo-home`` and built ``--offline``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from wasmkit.build import rustup
from wasmkit.build.rustup import RustupToolchain
from wasmkit.build.toolchain import SETUP_TIMEOUT_S, kit_cache, run, run_setup
from wasmkit.errors import BuildError, ToolchainNotFoundError

SETUP = "setup-rust-modern.sh"
"""The kit script that makes the modern Rust."""

STAMP = "wasmkit-toolchain.json"
"""What the set-up wrote into the prefix: versions, linker, protoc."""

MODERN_INSTALL = (
    "the kit's modern Rust: `bash scripts/setup-rust-modern.sh` (part of `make "
    "toolchains`; as root on Debian 12, it downloads Debian's rustc-web without "
    "installing it and builds the wasm32 std once, a few minutes)"
)


@dataclass(frozen=True, slots=True)
class ModernToolchain:
    """The kit's modern Rust, as its set-up recorded it."""

    root: Path
    """The prefix (``rust-modern/current`` resolved)."""
    release: str
    """rustc's release, e.g. ``1.96.0``."""
    cargo_release: str
    """cargo's release."""
    commit: str
    """rustc's commit hash."""
    debian_version: str
    """The Debian version of ``rustc-web`` it was unpacked from."""
    linker: Path
    """The wasm linker (``wasm-ld`` of ``lld-N``)."""
    protoc: Path | None
    """Debian's ``protoc`` (``protobuf-compiler``), for prost's build scripts."""

    @property
    def name(self) -> str:
        """How ``from`` names it: ``modern (rustc-web <Debian version>)``."""
        return f"modern (rustc-web {self.debian_version})"

    @property
    def rustc(self) -> Path:
        """The prefix's rustc (finds its own libraries and sysroot)."""
        return self.root / "bin" / "rustc"

    @property
    def cargo(self) -> Path:
        """The prefix's cargo (the prefix's rustc, its wasm linker)."""
        return self.root / "bin" / "cargo"


Chosen = RustupToolchain | ModernToolchain | None
"""What builds Rust: a rustup toolchain, the modern one, or Debian's (``None``)."""


def home() -> Path:
    """``<kit cache>/rust-modern``."""
    return kit_cache() / "rust-modern"


def find() -> ModernToolchain | None:
    """The modern Rust the set-up made, when it is complete."""
    current = home() / "current"
    try:
        data = json.loads((current / STAMP).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    fields = {k: str(v) for k, v in data.items() if isinstance(v, str)}
    needed = ("release", "commit", "debian_version", "linker")
    if not all(fields.get(k) for k in needed):
        return None
    root = current.resolve()
    linker = Path(fields["linker"])
    if not ((root / "bin" / "cargo").is_file() and linker.is_file()):
        return None
    protoc = Path(fields["protoc"]) if fields.get("protoc") else None
    return ModernToolchain(
        root=root,
        release=fields["release"],
        cargo_release=fields.get("cargo") or fields["release"],
        commit=fields["commit"],
        debian_version=fields["debian_version"],
        linker=linker,
        protoc=protoc if protoc is not None and protoc.is_file() else None,
    )


def choose(*, setup: bool = False) -> Chosen:
    """The compiler to build with; ``None`` for Debian's rustc 1.63.

    Args:
        setup: with ``WASMKIT_RUST_TOOLCHAIN=modern``, run the set-up when the
            modern Rust is not made yet (minutes, once).

    Raises:
        ToolchainNotFoundError: the forced toolchain is not there.
        ValueError: a bad ``WASMKIT_RUST_TOOLCHAIN``.
    """
    wanted = rustup.mode()
    if wanted == "debian":
        return None
    if wanted != "modern":
        chain = rustup.choose()
        if chain is not None or wanted == "rustup":
            return chain
    found = find()
    if found is None and wanted == "modern":
        if setup:
            run_setup(SETUP, timeout=SETUP_TIMEOUT_S)
            found = find()
        if found is None:
            raise ToolchainNotFoundError(
                f"WASMKIT_RUST_TOOLCHAIN=modern, but {home() / 'current'} holds no "
                f"complete toolchain: make {MODERN_INSTALL}"
            )
    return found


def versions(chain: ModernToolchain) -> dict[str, str]:
    """The modern toolchain's versions, from its stamp (no process started)."""
    return {
        "rustc": chain.release,
        "cargo": chain.cargo_release,
        "target": target(),
        "from": chain.name,
    }


def target() -> str:
    """``$WASMKIT_RUST_TARGET``, else ``wasm32-wasip1``."""
    return os.environ.get("WASMKIT_RUST_TARGET") or rustup.WASIP1


def env(chain: RustupToolchain | ModernToolchain) -> dict[str, str]:
    """The environment for the toolchain's cargo: its rustc, the kit's crates."""
    environ = dict(os.environ)
    cargo_home = kit_cache() / "cargo-home"
    environ["RUSTC"] = str(chain.rustc)
    environ["CARGO_HOME"] = str(cargo_home)
    # The toolchain's own binaries first, so build scripts find the same rustc.
    environ["PATH"] = os.pathsep.join(
        [str(chain.root / "bin"), environ.get("PATH", "")]
    )
    flags = environ.pop("RUSTFLAGS", "").split()
    # Rust 1.96 stopped passing --allow-undefined to wasm-ld; proxy-wasm before
    # 0.2.3 declares its host functions without #[link(wasm_import_module)], so
    # they stay imports from "env" only with it, as they were.
    flags.append("-Clink-arg=--allow-undefined")
    if isinstance(chain, ModernToolchain):
        if chain.protoc is not None and not environ.get("PROTOC"):
            environ["PROTOC"] = str(chain.protoc)
        for triple in ("WASM32_WASIP1", "WASM32_UNKNOWN_UNKNOWN"):
            environ[f"CARGO_TARGET_{triple}_LINKER"] = str(chain.linker)
        # Crate sources are remapped so the module's bytes do not depend on
        # where the kit cache lives.
        flags.append(f"--remap-path-prefix={cargo_home}=/cargo-home")
    # Flags from RUSTFLAGS are kept in front.
    environ["CARGO_ENCODED_RUSTFLAGS"] = "\x1f".join(flags)
    return environ


def fetch(chain: RustupToolchain | ModernToolchain, root: Path, timeout: float) -> None:
    """``cargo fetch`` the lockfile's crates into the kit's cargo home (once).

    Raises:
        BuildError: the fetch failed (offline, or a stale Cargo.lock).
    """
    # Offline first: a second build of the same lockfile downloads nothing.
    # The host's crates too: build scripts and proc macros run on it.
    environ = env(chain)
    base = [str(chain.cargo), "fetch", "--locked", "--target", target()]
    base += ["--target", rustup.host_triple()]
    if run([*base, "--offline"], cwd=root, env=environ, timeout=timeout).returncode:
        proc = run(base, cwd=root, env=environ, timeout=max(timeout, SETUP_TIMEOUT_S))
        if proc.returncode:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise BuildError(
                f"`cargo fetch` failed in {root} (exit {proc.returncode}; is "
                f"crates.io reachable? is Cargo.lock up to date?):\n{tail}"
            )
