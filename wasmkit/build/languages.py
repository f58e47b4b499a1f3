"""The languages wasmkit builds, their aliases and their toolchain adapters."""

from __future__ import annotations

from wasmkit.build.assemblyscript import AssemblyScript
from wasmkit.build.go import Go, TinyGo
from wasmkit.build.rust import Rust
from wasmkit.build.toolchain import Toolchain

LANGUAGES = ("assemblyscript", "rust", "go", "tinygo")
"""Canonical language names, in the order ``doctor`` reports them."""

REQUIRED = ("assemblyscript", "rust", "go")
"""The languages the kit sets up (TinyGo is optional)."""

ALIASES = {
    "as": "assemblyscript",
    "asc": "assemblyscript",
    "ts": "assemblyscript",
    "rs": "rust",
    "golang": "go",
}
"""Other names accepted for ``lang``."""

SUFFIXES = {".ts": "assemblyscript", ".rs": "rust", ".go": "go"}
"""Source file extensions."""

_TOOLCHAINS: dict[str, Toolchain] = {
    "assemblyscript": AssemblyScript(),
    "rust": Rust(),
    "go": Go(),
    "tinygo": TinyGo(),
}


def normalize(lang: str) -> str:
    """The canonical name of ``lang``.

    Raises:
        ValueError: an unknown language.
    """
    name = lang.strip().lower()
    name = ALIASES.get(name, name)
    if name not in _TOOLCHAINS:
        raise ValueError(
            f"unknown language {lang!r}: expected one of {', '.join(LANGUAGES)}"
        )
    return name


def toolchain(lang: str) -> Toolchain:
    """The adapter building ``lang`` (any accepted name)."""
    return _TOOLCHAINS[normalize(lang)]
