"""wasmkit: a Jupyter development kit for proxy-wasm filters.

The core is an in-process proxy-wasm host (:mod:`wasmkit.host`) that runs
filters built by the real SDKs the way Envoy runs them.
"""

from __future__ import annotations

from typing import Any

from wasmkit.build import Artifact, build, doctor
from wasmkit.errors import (
    FilterError,
    FilterLoadError,
    FilterStartError,
    FilterTrapError,
    WasmkitError,
)
from wasmkit.host import (
    FilterVm,
    HttpMessage,
    Limits,
    Plugin,
    PluginConfig,
    StreamResult,
    load,
    request,
    response,
)
from wasmkit.replay.compare import compare

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext wasmkit``: register the ``%%wasm`` and ``%wasmkit`` magics."""
    from wasmkit.notebook import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext wasmkit``: remove the magics and their settings."""
    from wasmkit.notebook import magics

    magics.unload_ipython_extension(ipython)


__all__ = [
    "Artifact",
    "FilterError",
    "FilterLoadError",
    "FilterStartError",
    "FilterTrapError",
    "FilterVm",
    "HttpMessage",
    "Limits",
    "Plugin",
    "PluginConfig",
    "StreamResult",
    "WasmkitError",
    "__version__",
    "build",
    "compare",
    "doctor",
    "load",
    "load_ipython_extension",
    "request",
    "response",
    "unload_ipython_extension",
]
