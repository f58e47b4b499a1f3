"""Build proxy-wasm filters from source: AssemblyScript, Rust, Go (and TinyGo).

:func:`build` takes a project folder, a source file or source text (a notebook
cell), runs the kit's pinned compiler offline and returns an :class:`Artifact`;
unchanged rebuilds come from the build cache. :func:`doctor` reports which
toolchains are installed and whether they build.
"""

from __future__ import annotations

from wasmkit.build.driver import Artifact, build
from wasmkit.build.health import DoctorReport, ToolchainStatus, doctor
from wasmkit.build.languages import LANGUAGES
from wasmkit.build.toolchain import Diagnostic

__all__ = [
    "Artifact",
    "Diagnostic",
    "DoctorReport",
    "LANGUAGES",
    "ToolchainStatus",
    "build",
    "doctor",
]
