"""HTTP callouts: what the filter asked for and how the host answers.

A *responder* stands in for the upstream clusters: a Python callable taking a
:class:`Callout` and returning the response (an :class:`HttpMessage`, a
:class:`CalloutReply` with a latency or a failure, or ``None`` for no answer,
which times out), or a table built with :func:`table_responder`.

Two answers make the dispatch itself fail, as Envoy's async client can
(``Context::httpCall`` in ``source/extensions/common/wasm/context.cc``: when
``send()`` returns no request, ``proxy_http_call`` returns InternalFailure and
the filter gets no token and no ``proxy_on_http_call_response``):

* :class:`DispatchFailure`: ``send()`` fails at once (Envoy's test
  ``AsyncCallBadCall``);
* :class:`InlineReply`: the async client answers during ``send()``, e.g. the
  router's 503 ``no healthy upstream`` for a cluster without healthy hosts
  (``AsyncCallBadCluster``); Envoy defers that answer past the VM call, finds
  the request gone and drops it, so the filter sees the same InternalFailure.

Either one can answer some clusters only (a function responder, or a table
entry ``{"dispatch": "fail"}`` / ``{"dispatch": "inline", "status": 503}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmkit.host.message import HeaderPairs, HttpMessage, header_value, response


@dataclass(slots=True)
class Callout:
    """One ``proxy_http_call`` the filter made."""

    token: int
    """The token the filter got back."""
    context_id: int
    """The context that made the call."""
    root_id: int
    """The root context the response is delivered to."""
    cluster: str
    """The upstream (Envoy cluster) name."""
    headers: HeaderPairs
    """Request headers, ``:method``, ``:path``, ``:authority`` included."""
    body: bytes
    """Request body."""
    trailers: HeaderPairs
    """Request trailers."""
    timeout_ms: int
    """Timeout the filter gave (0: none)."""
    sent_ns: int
    """Virtual time of the call (ns)."""
    response: HttpMessage | None = None
    """The response delivered, if any."""
    outcome: str = "pending"
    """``pending``, ``response``, ``failure`` or ``timeout``; for a dispatch
    that failed (``proxy_http_call`` returned InternalFailure, the token 0):
    ``dispatch_failure`` or ``inline_reply`` (``response`` is the answer
    Envoy dropped)."""
    delivered_ns: int | None = None
    """Virtual time of the delivery (ns)."""

    @property
    def method(self) -> str:
        """The request method."""
        return (header_value(self.headers, b":method") or b"").decode()

    @property
    def path(self) -> str:
        """The request path."""
        return (header_value(self.headers, b":path") or b"").decode("utf-8", "replace")

    @property
    def authority(self) -> str:
        """The request authority."""
        return (header_value(self.headers, b":authority") or b"").decode(
            "utf-8", "replace"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        resp = self.response
        return {
            "token": self.token,
            "context_id": self.context_id,
            "cluster": self.cluster,
            "method": self.method,
            "authority": self.authority,
            "path": self.path,
            "timeout_ms": self.timeout_ms,
            "outcome": self.outcome,
            "status": resp.status if resp is not None else None,
            "latency_ms": None
            if self.delivered_ns is None
            else (self.delivered_ns - self.sent_ns) / 1e6,
        }


@dataclass(frozen=True, slots=True)
class CalloutReply:
    """A responder's answer with its timing."""

    message: HttpMessage | None
    """The response; ``None`` is a failure (connection reset)."""
    latency_ms: float = 0.0
    """Virtual time until the response arrives (ms)."""


def no_healthy_upstream() -> HttpMessage:
    """The router's 503 for a cluster without healthy hosts."""
    return response(
        503,
        [("content-length", "19"), ("content-type", "text/plain")],
        "no healthy upstream",
    )


@dataclass(frozen=True, slots=True)
class DispatchFailure:
    """A callout Envoy's async client cannot send (``send()`` returns null).

    ``proxy_http_call`` returns InternalFailure; nothing is delivered later.
    """

    reason: str = "the async client did not send the request"
    """Why, for the callout record and the trace."""


@dataclass(frozen=True, slots=True)
class InlineReply:
    """The async client answers during ``send()`` (default: no healthy upstream).

    Envoy drops the answer (the request is gone by the time the deferred
    callback runs): ``proxy_http_call`` returns InternalFailure and the filter
    never sees ``message``.
    """

    message: HttpMessage = field(default_factory=no_healthy_upstream)
    """The answer the async client gave inline."""


DispatchAnswer = DispatchFailure | InlineReply
"""A responder answer that makes ``proxy_http_call`` fail."""

Responder = Callable[
    [Callout], "HttpMessage | CalloutReply | DispatchFailure | InlineReply | None"
]


def _set(headers: HeaderPairs, name: bytes, value: bytes) -> HeaderPairs:
    # Envoy's HeaderMap set*(): the first such header takes the value in its
    # place (the others go), else it is added at the end.
    out: HeaderPairs = []
    done = False
    for key, old in headers:
        if key.lower() != name:
            out.append((key, old))
        elif not done:
            out.append((name, value))
            done = True
    if not done:
        out.append((name, value))
    return out


def request_as_sent(headers: HeaderPairs, body: bytes) -> HeaderPairs:
    """The callout's headers as Envoy's async client sends them.

    ``source/extensions/common/wasm/context.cc`` (``httpCall``): a request
    with a body gets ``content-length`` (Envoy's test ``AsyncCall`` expects
    ``content-length: 11``).
    """
    if not body:
        return headers
    return _set(headers, b"content-length", str(len(body)).encode())


def response_as_delivered(message: HttpMessage, latency_ms: float) -> HttpMessage:
    """A callout's response as the filter reads it in Envoy.

    The async client's router adds ``x-envoy-upstream-service-time`` (the
    upstream's time, ms) to what the responder sent (measured with Envoy
    1.40: the filter sees one header more than the server sent).
    """
    headers = _set(
        message.headers,
        b"x-envoy-upstream-service-time",
        str(max(0, int(latency_ms))).encode(),
    )
    return HttpMessage(headers, message.body, message.trailers)


@dataclass(slots=True)
class TableResponder:
    """Answers from a table.

    Keys are ``cluster``, ``cluster path`` or ``cluster authority path``; the
    most specific match wins.
    """

    entries: dict[str, CalloutReply | DispatchFailure | InlineReply] = field(
        default_factory=dict
    )

    @property
    def clusters(self) -> set[str]:
        """The cluster names the table knows."""
        return {key.split(" ", 1)[0] for key in self.entries}

    def __call__(self, call: Callout) -> CalloutReply | DispatchAnswer | None:
        """The table's answer to ``call``, or ``None`` (no answer)."""
        for key in (
            f"{call.cluster} {call.authority} {call.path}",
            f"{call.cluster} {call.path}",
            call.cluster,
        ):
            if key in self.entries:
                return self.entries[key]
        return None


TableValue = Mapping[str, Any] | HttpMessage | CalloutReply | DispatchAnswer | None


def _reply(spec: TableValue) -> CalloutReply | DispatchAnswer:
    if isinstance(spec, CalloutReply | DispatchFailure | InlineReply):
        return spec
    if spec is None:
        return CalloutReply(None)
    if isinstance(spec, HttpMessage):
        return CalloutReply(spec)
    dispatch = spec.get("dispatch")
    if dispatch == "fail":
        reason = spec.get("reason")
        return DispatchFailure() if reason is None else DispatchFailure(str(reason))
    if spec.get("fail"):
        return CalloutReply(None, float(spec.get("latency_ms", 0)))
    headers = spec.get("headers", {})
    pairs: Iterable[tuple[str, str]] = (
        headers.items() if isinstance(headers, Mapping) else [tuple(h) for h in headers]
    )
    body = spec.get("body", "")
    if not isinstance(body, str):
        body = json.dumps(body)
    trailers = spec.get("trailers")
    if dispatch == "inline":
        if "status" not in spec:
            return InlineReply()
        status = int(spec["status"])
    elif dispatch is not None:
        raise ValueError(f"dispatch must be 'fail' or 'inline', not {dispatch!r}")
    else:
        status = int(spec.get("status", 200))
    message = response(
        status,
        pairs,
        body,
        None if trailers is None else list(dict(trailers).items()),
    )
    if dispatch == "inline":
        return InlineReply(message)
    return CalloutReply(message, float(spec.get("latency_ms", 0)))


def table_responder(table: Mapping[str, TableValue]) -> TableResponder:
    """A responder from a table.

    Values are messages, replies, or dicts ``{"status", "headers", "body",
    "trailers", "latency_ms"}`` (``{"fail": true}`` for a failure delivered
    later; ``{"dispatch": "fail"}`` for a dispatch that fails at once,
    ``{"dispatch": "inline"}`` (with ``status`` ... optionally) for one the
    async client answers inline: see :class:`DispatchFailure`,
    :class:`InlineReply`).

    Raises:
        ValueError: an unknown ``dispatch`` value.
    """
    return TableResponder({key: _reply(value) for key, value in table.items()})


def load_responder(path: str | Path) -> Responder:
    """A responder from a JSON table or a Python file defining ``responder``.

    Raises:
        ValueError: the file has no usable table or ``responder``.
    """
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".py":
        scope: dict[str, Any] = {"__file__": str(path)}
        exec(compile(text, str(path), "exec"), scope)
        fn = scope.get("responder")
        if not callable(fn):
            raise ValueError(f"{path} defines no callable named responder")
        result: Responder = fn
        return result
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by cluster")
    return table_responder(data)
