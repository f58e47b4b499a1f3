"""A rustup toolchain with the wasm32-wasip1 std, when there is one.

A rustup toolchain that has the ``wasm32-wasip1`` standard library installed
(``rustup target add wasm32-wasip1``) builds with the current ``proxy-wasm``
crate, before the kit's modern Rust and Debian's rustc 1.63
(:mod:`wasmkit.build.rustmodern` makes the choice).

It is found by looking at files only (no process is started, so a cached
rebuild stays fast): ``$RUSTUP_HOME`` (``~/.rustup``), its ``settings.toml``
for the default toolchain, or ``$RUSTUP_TOOLCHAIN``.
``$WASMKIT_RUST_TOOLCHAIN`` forces the choice: ``auto`` (the default),
``rustup``, ``modern`` or ``debian``.
"""

from __future__ import annotations

import os
import platform
import tomllib
from dataclasses import dataclass
from pathlib import Path

from wasmkit.errors import ToolchainNotFoundError

WASIP1 = "wasm32-wasip1"
"""The target rustup toolchains build proxy-wasm filters for (Rust >= 1.78)."""

MODES = ("auto", "rustup", "modern", "debian")
"""Values of ``$WASMKIT_RUST_TOOLCHAIN``."""

RUSTUP_INSTALL = (
    f"a rustup toolchain with the {WASIP1} target: `rustup target add {WASIP1}` "
    "(or set WASMKIT_RUST_TOOLCHAIN=modern for the kit's modern Rust, or debian "
    "for Debian's rustc 1.63)"
)


@dataclass(frozen=True, slots=True)
class RustupToolchain:
    """An installed rustup toolchain with the wasm32-wasip1 std."""

    name: str
    """Its folder name, e.g. ``stable-x86_64-unknown-linux-gnu``."""
    root: Path
    """Its folder under ``$RUSTUP_HOME/toolchains``."""

    @property
    def rustc(self) -> Path:
        """The toolchain's own rustc (not rustup's proxy)."""
        return self.root / "bin" / "rustc"

    @property
    def cargo(self) -> Path:
        """The toolchain's own cargo."""
        return self.root / "bin" / "cargo"


def mode() -> str:
    """``$WASMKIT_RUST_TOOLCHAIN``: ``auto``, ``rustup``, ``modern`` or ``debian``.

    Raises:
        ValueError: any other value.
    """
    value = (os.environ.get("WASMKIT_RUST_TOOLCHAIN") or "auto").strip().lower()
    if value not in MODES:
        raise ValueError(
            f"WASMKIT_RUST_TOOLCHAIN={value!r}: expected one of {', '.join(MODES)}"
        )
    return value


def rustup_home() -> Path:
    """``$RUSTUP_HOME`` or ``~/.rustup``."""
    value = os.environ.get("RUSTUP_HOME")
    return Path(value) if value else Path.home() / ".rustup"


def default_toolchain(home: Path) -> str | None:
    """``$RUSTUP_TOOLCHAIN``, else the default in ``settings.toml``."""
    value = os.environ.get("RUSTUP_TOOLCHAIN")
    if value:
        return value
    try:
        settings = tomllib.loads((home / "settings.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = settings.get("default_toolchain")
    return name if isinstance(name, str) and name else None


def host_triple() -> str:
    """This machine's Rust host triple, e.g. ``x86_64-unknown-linux-gnu``."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return f"{arch}-unknown-linux-gnu"


def _toolchain_dir(home: Path, name: str) -> Path | None:
    folder = home / "toolchains"
    for candidate in (name, f"{name}-{host_triple()}"):
        path = folder / candidate
        if (path / "bin" / "rustc").is_file():
            return path
    return None


def has_std(root: Path, target: str) -> bool:
    """Whether a Rust sysroot has ``target``'s standard library."""
    return any((root / "lib" / "rustlib" / target / "lib").glob("libstd-*.rlib"))


def find(target: str = WASIP1) -> RustupToolchain | None:
    """The default rustup toolchain, when it has ``target``'s std installed."""
    home = rustup_home()
    name = default_toolchain(home)
    if name is None:
        return None
    root = _toolchain_dir(home, name)
    if root is None or not has_std(root, target):
        return None
    if not (root / "bin" / "cargo").is_file():
        return None
    return RustupToolchain(root.name, root)


def choose() -> RustupToolchain | None:
    """The rustup toolchain to build with, or ``None`` (modern or Debian's rustc).

    Raises:
        ToolchainNotFoundError: ``WASMKIT_RUST_TOOLCHAIN=rustup`` but no rustup
            toolchain has the wasm32-wasip1 std.
        ValueError: a bad ``WASMKIT_RUST_TOOLCHAIN``.
    """
    wanted = mode()
    if wanted in ("debian", "modern"):
        return None
    found = find()
    if found is None and wanted == "rustup":
        home = rustup_home()
        name = default_toolchain(home) or "(no default toolchain)"
        raise ToolchainNotFoundError(
            f"WASMKIT_RUST_TOOLCHAIN=rustup, but the rustup toolchain {name} in "
            f"{home} has no {WASIP1} std: install {RUSTUP_INSTALL}"
        )
    return found
