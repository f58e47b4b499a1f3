"""Run records: a :class:`StreamResult` as JSON-ready data and as text."""

from __future__ import annotations

import base64
from typing import Any

from wasmkit.errors import FilterError
from wasmkit.host.message import HeaderPairs, HttpMessage, is_grpc
from wasmkit.host.stream import StreamResult


def body_json(data: bytes | None) -> Any:
    """A body as a string when valid UTF-8, else ``{"base64": ...}``."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def _pairs(headers: HeaderPairs | None) -> list[list[str]] | None:
    if headers is None:
        return None
    return [
        [k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")]
        for k, v in headers
    ]


def _url(message: HttpMessage) -> str:
    scheme = (message.get(b":scheme") or b"http").decode()
    host = (message.get(b":authority") or b"").decode("utf-8", "replace")
    path = (message.get(b":path") or b"/").decode("utf-8", "replace")
    return f"{scheme}://{host}{path}"


def _side(before: HttpMessage | None, after: HttpMessage | None) -> dict[str, Any]:
    return {
        "headers": {
            "before": _pairs(before.headers if before else None),
            "after": _pairs(after.headers if after else None),
        },
        "body": {
            "before": body_json(before.body if before else None),
            "after": body_json(after.body if after else None),
        },
        "trailers": {
            "before": _pairs(before.trailers if before else None),
            "after": _pairs(after.trailers if after else None),
        },
    }


def _message(message: HttpMessage | None) -> dict[str, Any] | None:
    if message is None:
        return None
    return {
        "headers": _pairs(message.headers),
        "body": body_json(message.body),
        "trailers": _pairs(message.trailers),
    }


def error_json(error: FilterError | None, callback: str = "") -> dict[str, Any] | None:
    """``{"kind", "callback", "message"}`` for an error, or ``None``."""
    if error is None:
        return None
    return {
        "kind": error.kind,
        "callback": getattr(error, "callback", callback),
        "message": str(error),
    }


def to_record(result: StreamResult) -> dict[str, Any]:
    """The record ``wasmkit run --json`` prints for one exchange."""
    req = result.request_before
    request: dict[str, Any] = {
        "method": (req.get(b":method") or b"").decode(),
        "url": _url(req),
        "forwarded": result.request_forwarded,
        **_side(req, result.request_after),
    }
    response: dict[str, Any] | None = None
    if result.response_before is not None or result.response_after is not None:
        response = {
            "status": {
                "before": result.response_before.status
                if result.response_before
                else None,
                "after": result.response_after.status
                if result.response_after
                else None,
            },
            **_side(result.response_before, result.response_after),
        }
    reply = result.local_reply
    return {
        "request": request,
        "response": response,
        "local_reply": None
        if reply is None
        else {
            "status": reply.status,
            "headers": _pairs(reply.headers),
            "body": body_json(reply.body),
            "details": reply.details,
            "grpc_status": reply.grpc_status,
            "callback": reply.callback,
        },
        "logs": [r.to_json() for r in result.logs],
        "trace": [t.to_json() for t in result.trace],
        "stalled": result.stalled,
        "reset": result.reset,
        "notes": list(result.notes),
        "callouts": [c.to_json() for c in result.callouts],
        "metrics": {
            m["name"]: m["value"] if m["type"] != "histogram" else m["samples"]
            for m in result.metrics
        },
        "error": error_json(result.error),
        # What Envoy's connection manager and router made of it around the
        # filter: the client's request, what reached the upstream and the
        # client, and each change.
        "client_request": _message(result.client_request),
        "upstream_request": _message(result.upstream_request),
        "client_response": _message(result.client_response),
        "host_changes": list(result.host_changes),
    }


def _header_changes(
    before: HeaderPairs | None, after: HeaderPairs | None
) -> list[tuple[str, str]]:
    old = list(before or [])
    out: list[tuple[str, str]] = []
    remaining = list(old)
    for pair in after or []:
        if pair in remaining:
            remaining.remove(pair)
        else:
            prior = next((v for k, v in remaining if k == pair[0]), None)
            if prior is not None:
                remaining.remove((pair[0], prior))
                out.append(("~", f"{_s(pair[0])}: {_s(prior)} -> {_s(pair[1])}"))
            else:
                out.append(("+", f"{_s(pair[0])}: {_s(pair[1])}"))
    out.extend(("-", f"{_s(k)}: {_s(v)}") for k, v in remaining)
    return out


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _body_change(before: bytes | None, after: bytes | None) -> str | None:
    if before == after or after is None:
        return None
    text = body_json(after)
    shown = text if isinstance(text, str) else f"<{len(after)} bytes of binary>"
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return f"body changed: {len(before or b'')} -> {len(after)} bytes: {shown}"


def render_text(result: StreamResult, *, title: str = "") -> str:
    """A readable before/after summary of one exchange."""
    lines: list[str] = []
    if title:
        lines.append(title)
    req = result.request_before
    method = _s(req.get(b":method") or b"")
    lines.append(f"request   {method} {_url(req)}")
    changes = _header_changes(
        req.headers, result.request_after.headers if result.request_after else None
    )
    lines.extend(f"  {mark} {text}" for mark, text in changes)
    if not result.request_forwarded:
        lines.append("  (not passed upstream)")
    body = _body_change(
        req.body, result.request_after.body if result.request_after else None
    )
    if body:
        lines.append(f"  {body}")
    if result.local_reply is not None:
        reply = result.local_reply
        lines.append(
            f"local reply {reply.status} from {reply.callback}"
            + (f" ({reply.details})" if reply.details else "")
        )
    before, after = result.response_before, result.response_after
    if before is not None or after is not None:
        status_b = before.status if before else "-"
        status_a = after.status if after else "-"
        lines.append(f"response  {status_b} -> {status_a}")
        base = before.headers if before else (after.headers if after else [])
        if before is None and result.local_reply is not None:
            base = result.local_reply.to_message(grpc=is_grpc(req.headers)).headers
        lines.extend(
            f"  {m} {t}"
            for m, t in _header_changes(base, after.headers if after else None)
        )
        body = _body_change(
            before.body if before else None, after.body if after else None
        )
        if body and before is not None:
            lines.append(f"  {body}")
    if result.stalled:
        lines.append(
            f"stalled   the filter paused the {result.stalled} and never resumed"
        )
    if result.reset:
        lines.append("reset     the stream was reset")
    lines.extend(f"note      {n}" for n in result.notes)
    if result.logs:
        lines.append("logs")
        lines.extend(f"  {r.level.label:<8} {r.message}" for r in result.logs)
    if result.error is not None:
        lines.append(f"error     [{result.error.kind}] {result.error}")
    hostcalls = sum(1 for t in result.trace if t.kind == "hostcall")
    callbacks = sum(1 for t in result.trace if t.kind == "callback")
    lines.append(f"trace     {callbacks} callbacks, {hostcalls} host calls")
    return "\n".join(lines)
