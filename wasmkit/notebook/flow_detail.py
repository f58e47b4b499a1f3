"""The selected flow's detail as plain JSON for the explorer's front end.

Python decides what each pane shows; the front end only draws it. Header,
log and trace panes are the HTML tables of :mod:`wasmkit.notebook.flow_pages`;
the body views, the failure and the curl commands are data the front end
lays out (its text set as text, never parsed as HTML).
"""

from __future__ import annotations

import json
from typing import Any

from wasmkit.diff.compare import body_change
from wasmkit.host.message import HttpMessage
from wasmkit.notebook import curl, flow_pages, tables
from wasmkit.replay.results import FlowResult

TEXT_LIMIT = 64 * 1024
"""Characters of a body's text (or pretty JSON) view at most."""
HEX_LIMIT = 4096
"""Bytes of a body's hex view at most."""


def hexdump(data: bytes, limit: int = HEX_LIMIT) -> str:
    """``data`` as ``offset  hex bytes  |ascii|`` lines, 16 bytes a line."""
    lines = []
    for offset in range(0, min(len(data), limit), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  |{text}|")
    if len(data) > limit:
        lines.append(f"… first {limit:,} of {len(data):,} bytes")
    return "\n".join(lines)


def _text(data: bytes) -> str:
    text = data[:TEXT_LIMIT].decode("utf-8", "replace")
    if len(data) > TEXT_LIMIT:
        text += f"\n… first {TEXT_LIMIT:,} of {len(data):,} bytes"
    return text


def pretty_json(data: bytes) -> str | None:
    """The body pretty-printed when it is JSON, else ``None``."""
    if not data:
        return None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "\n…"
    return text


def _view(message: HttpMessage | None) -> dict[str, Any] | None:
    if message is None:
        return None
    body = message.body or b""
    return {
        "bytes": len(body),
        "text": _text(body),
        "json": pretty_json(body),
        "hex": hexdump(body),
    }


def bodies(flow: FlowResult) -> list[dict[str, Any]]:
    """Per side: how the body changed, its diff, and text / JSON / hex views."""
    r = flow.result
    out = []
    for side, before, after in (
        ("request", r.request_before, r.request_after),
        ("response", r.response_before, r.response_after),
    ):
        if before is None and after is None:
            continue
        change = body_change(
            before.body if before is not None else None,
            after.body if after is not None else None,
        )
        out.append(
            {
                "side": side,
                "kind": change.kind,
                "changed": change.changed,
                "diff": change.diff,
                "before": _view(before),
                "after": _view(after),
            }
        )
    return out


def failure(flow: FlowResult) -> dict[str, Any] | None:
    """The filter's failure: kind, callback, message lines, backtrace frames."""
    error = flow.result.error
    if error is None:
        return None
    return {
        "kind": error.kind,
        "callback": error.callback,
        "trap_code": error.trap_code,
        "message": str(error).strip().splitlines(),
        "frames": list(error.wasm_backtrace),
    }


def curls(flow: FlowResult) -> dict[str, str | None]:
    """The request as curl commands, before and after the filter.

    ``before``: as the client sent it (the capture); ``after``: as the filter
    forwarded it upstream (``None``: the filter held it).
    """
    r = flow.result
    return {
        "before": curl.command(r.client_request or r.request_before),
        "after": curl.command(r.request_after) if r.request_after else None,
    }


def detail(flow: FlowResult, title: str, *, unchanged: bool = False) -> dict[str, Any]:
    """Everything the flow panes of the explorer show for ``flow``."""
    request, response = flow_pages.headers(flow, unchanged=unchanged)
    return {
        "index": flow.index,
        "title": title,
        "notes": flow_pages.notes(flow),
        "failed": flow.failed,
        "panes": {
            "Request headers": tables.quiet(request),
            "Response headers": tables.quiet(response),
            "Logs": flow_pages.logs(flow),
            "Trace": flow_pages.trace(flow),
        },
        "bodies": bodies(flow),
        "error": failure(flow),
        "curl": curls(flow),
    }
