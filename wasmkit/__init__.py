"""wasmkit: a Jupyter development kit for proxy-wasm filters.

The core is an in-process proxy-wasm host (:mod:`wasmkit.host`) that runs
filters built by the real SDKs the way Envoy runs them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from wasmkit.errors import (
    FilterError,
    FilterLoadError,
    FilterStartError,
    FilterTrapError,
    WasmkitError,
)
from wasmkit.host import (
    ConnectionManager,
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

if TYPE_CHECKING:
    from wasmkit.build import Artifact, build, doctor
    from wasmkit.replay.compare import compare

__version__ = "0.1.0"

_LAZY = {
    "Artifact": "wasmkit.build",
    "build": "wasmkit.build",
    "doctor": "wasmkit.build",
    "compare": "wasmkit.replay.compare",
}
"""Names loaded on first use: the build and compare layers cost a replay
worker process (or a ``wasmkit run``) a third of its start-up otherwise."""


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'wasmkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    # ``wasmkit.build`` is the build function. Importing the ``wasmkit.build``
    # subpackage makes the import system set the subpackage as this package's
    # ``build`` attribute: keep the function there instead.
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext wasmkit``: register the ``%%wasm`` and ``%wasmkit`` magics."""
    from wasmkit.notebook import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext wasmkit``: remove the magics and their settings."""
    from wasmkit.notebook import magics

    magics.unload_ipython_extension(ipython)


def _notebook_bundle(obj: Any) -> Any:
    from wasmkit.notebook import formatters  # the widgets load on first display

    return formatters.show_in_kernel(obj)


def _register_display() -> None:
    # In a running kernel, replay results and comparisons display as widgets.
    # Registered by type name only: nothing of the notebook layer loads here.
    get = getattr(sys.modules.get("IPython"), "get_ipython", None)
    shell = get() if callable(get) else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return
    formatter = shell.display_formatter.mimebundle_formatter
    for module, name in (
        ("wasmkit.replay.results", "ReplayResult"),
        ("wasmkit.replay.compare", "Comparison"),
    ):
        formatter.for_type_by_name(module, name, _notebook_bundle)


_register_display()

__all__ = [
    "Artifact",
    "ConnectionManager",
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
