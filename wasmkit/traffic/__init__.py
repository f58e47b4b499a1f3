"""Captured traffic: mitmproxy ``.flow`` and HAR files read into exchanges.

:func:`load_capture` is the entry point. The model (:class:`Exchange`,
:class:`Headers`, ...) is plain Python; mitmproxy is imported only when a
capture is actually parsed (:mod:`wasmkit.traffic.mitm`), so importing this
package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasmkit.traffic.load import Capture, capture_format, load_capture
from wasmkit.traffic.model import (
    CaptureStats,
    Exchange,
    Headers,
    Request,
    Response,
    Skipped,
)

if TYPE_CHECKING:
    from wasmkit.traffic.mitm import read_flows

__all__ = [
    "Capture",
    "CaptureStats",
    "Exchange",
    "Headers",
    "Request",
    "Response",
    "Skipped",
    "capture_format",
    "load_capture",
    "read_flows",
]


def __getattr__(name: str) -> Any:
    # read_flows lives beside mitmproxy; import it on first use only.
    if name == "read_flows":
        from wasmkit.traffic import mitm

        return mitm.read_flows
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
