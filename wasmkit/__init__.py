"""wasmkit: a Jupyter development kit for proxy-wasm filters.

The core is an in-process proxy-wasm host (:mod:`wasmkit.host`) that runs
filters built by the real SDKs the way Envoy runs them.
"""

from __future__ import annotations

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
    "request",
    "response",
]
