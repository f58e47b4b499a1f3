"""wasmkit in Jupyter: the ``%%wasm`` / ``%wasmkit`` magics and the filter object.

``%load_ext wasmkit`` loads :mod:`wasmkit.notebook.magics`; the core never
imports this package.
"""

from __future__ import annotations

from wasmkit.notebook.display import Filter

__all__ = ["Filter"]
