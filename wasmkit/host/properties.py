r"""Properties (Envoy "attributes") read with ``proxy_get_property``.

A path arrives as segments joined by NUL (``request\\0headers\\0user-agent``);
values are encoded as Envoy encodes CEL values (``serializeValue`` in
``source/extensions/common/wasm/context.cc``): strings raw, integers 8-byte
little-endian, booleans one byte, maps as serialized pairs; a timestamp
(``request.time``) as int64 Unix nanoseconds and a duration
(``request.duration``, ``response.backend_latency``) as int64 nanoseconds.

The stream's timing, response code details and response flags come from its
:class:`StreamInfo` (Envoy's ``StreamInfo``; ``RequestLookupValues`` and
``ResponseLookupValues`` in ``source/extensions/filters/common/expr/context.cc``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wasmkit.abi import pairs
from wasmkit.host.message import Connection, HeaderPairs

if TYPE_CHECKING:
    from wasmkit.host.context import Context, HttpContext, TcpContext

PropertyValue = bytes | str | int | float | bool | Mapping[str, Any] | None

RESPONSE_FLAGS = {
    "LH": 1 << 0,  # FailedLocalHealthCheck
    "UH": 1 << 1,  # NoHealthyUpstream
    "UT": 1 << 2,  # UpstreamRequestTimeout
    "LR": 1 << 3,  # LocalReset
    "UR": 1 << 4,  # UpstreamRemoteReset
    "UF": 1 << 5,  # UpstreamConnectionFailure
    "UC": 1 << 6,  # UpstreamConnectionTermination
    "UO": 1 << 7,  # UpstreamOverflow
    "NR": 1 << 8,  # NoRouteFound
    "DI": 1 << 9,  # DelayInjected
    "FI": 1 << 10,  # FaultInjected
    "RL": 1 << 11,  # RateLimited
    "UAEX": 1 << 12,  # UnauthorizedExternalService
    "RLSE": 1 << 13,  # RateLimitServiceError
    "DC": 1 << 14,  # DownstreamConnectionTermination
    "URX": 1 << 15,  # UpstreamRetryLimitExceeded
    "SI": 1 << 16,  # StreamIdleTimeout
    "IH": 1 << 17,  # InvalidEnvoyRequestHeaders
    "DPE": 1 << 18,  # DownstreamProtocolError
    "UMSDR": 1 << 19,  # UpstreamMaxStreamDurationReached
    "RFCF": 1 << 20,  # ResponseFromCacheFilter
    "NFCF": 1 << 21,  # NoFilterConfigFound
    "DT": 1 << 22,  # DurationTimeout
    "UPE": 1 << 23,  # UpstreamProtocolError
    "NC": 1 << 24,  # NoClusterFound
    "OM": 1 << 25,  # OverloadManager
    "DF": 1 << 26,  # DnsResolutionFailed
    "DO": 1 << 27,  # DropOverLoad
    "DR": 1 << 28,  # DownstreamRemoteReset
}
"""Envoy's response flags (``%RESPONSE_FLAGS%`` short names) as the bits of
``response.flags`` (``StreamInfo::legacyResponseFlags()``)."""

_DETAILS_FLAGS = (
    ("upstream_response_timeout", "UT"),
    ("upstream_per_try_timeout", "UT"),
    ("no_healthy_upstream", "UH"),
    ("route_not_found", "NR"),
    ("cluster_not_found", "NC"),
    ("upstream_reset_before_response_started{connection_failure", "UF"),
    ("upstream_reset_before_response_started{connection_termination", "UC"),
    ("upstream_reset_before_response_started{overflow", "UO"),
    ("upstream_reset_before_response_started{remote_reset", "UR"),
    ("upstream_reset_before_response_started{local_reset", "LR"),
    ("upstream_reset_before_response_started{protocol_error", "UPE"),
)
"""Response code details the router gives together with a response flag."""


def flags_for_details(details: str | None) -> int:
    """The response flags Envoy's router sets with ``details``: 0 for others."""
    if not details:
        return 0
    for prefix, flag in _DETAILS_FLAGS:
        if details.startswith(prefix):
            return RESPONSE_FLAGS[flag]
    return 0


def parse_flags(value: int | str | None) -> int | None:
    """Response flags from bits or short names (``"UF"``, ``"UT,UF"``).

    Raises:
        ValueError: an unknown short name.
    """
    if value is None or isinstance(value, int):
        return value
    bits = 0
    for name in (n.strip() for n in value.replace(",", " ").split()):
        if name == "-":
            continue
        if name not in RESPONSE_FLAGS:
            known = ", ".join(RESPONSE_FLAGS)
            raise ValueError(f"unknown response flag {name!r} (known: {known})")
        bits |= RESPONSE_FLAGS[name]
    return bits


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What Envoy's ``StreamInfo`` tells the filter's properties of one stream.

    Each field left ``None`` is taken from the stream as wasmkit runs it.
    """

    start_ns: int | None = None
    """``request.time``: when the request started (Unix ns); ``None``: the
    context's start on the virtual clock."""
    duration_ns: int | None = None
    """``request.duration`` once the request is complete (ns); ``None``: the
    virtual time from the start to ``proxy_on_log``."""
    complete: bool | None = None
    """Whether the request is complete (Envoy's ``requestComplete()`` has a
    value): ``request.duration`` exists only then, and Envoy calls
    ``proxy_on_log`` only then. ``None``: complete once ``proxy_on_log``
    runs."""
    end_ns: int | None = None
    """When the request completed (virtual ns), set as ``proxy_on_log`` starts."""
    code_details: str | None = None
    """``response.code_details``; ``None``: the stream's (``via_upstream``, a
    local reply's details ...)."""
    response_flags: int | None = None
    """``response.flags`` (bits of :data:`RESPONSE_FLAGS`); ``None``: those
    Envoy's router sets with the stream's details, else 0."""
    backend_latency_ns: int | None = None
    """``response.backend_latency`` (ns): first byte to the upstream to the
    last byte from it; ``None``: absent."""

    @classmethod
    def from_exchange(cls, exchange: Any, *, start: bool = True) -> StreamInfo:
        """The timing of a captured exchange (``timestamp_start`` / ``_end``).

        Takes anything with an exchange's timestamps (seconds since the
        epoch; ``None`` when unknown): the request's start, the exchange's
        end, the response's first and last byte. ``start=False`` leaves
        ``request.time`` to the virtual clock (as a replay does).
        """
        request = getattr(exchange, "request", None)
        response = getattr(exchange, "response", None)
        began = getattr(exchange, "timestamp_start", None)
        if began is None and request is not None:
            began = request.timestamp_start
        end = getattr(exchange, "timestamp_end", None)
        if end is None and response is not None:
            end = response.timestamp_end
        sent = getattr(request, "timestamp_end", None)
        got = getattr(response, "timestamp_end", None)
        return cls(
            start_ns=_ns(began) if start else None,
            duration_ns=_span_ns(began, end),
            backend_latency_ns=_span_ns(sent, got),
        )


def _ns(seconds: float | None) -> int | None:
    # A timestamp as int64 ns; None when missing or not one (a damaged
    # capture's NaN, infinity, or a value past int64).
    if seconds is None or not math.isfinite(seconds):
        return None
    ns = round(seconds * 1e9)
    return ns if -(2**63) <= ns < 2**63 else None


def _span_ns(start: float | None, end: float | None) -> int | None:
    # From the difference in seconds: nearer the truth than a difference of
    # two large rounded values.
    if _ns(start) is None or _ns(end) is None:
        return None
    assert start is not None and end is not None
    return _ns(max(0.0, end - start))


def split_path(raw: bytes) -> tuple[bytes, ...]:
    """Split a NUL-joined property path; a trailing empty segment is dropped.

    The AssemblyScript SDK passes dotted single strings (``plugin_root_id``);
    those are one segment already.
    """
    parts = raw.split(b"\0")
    if len(parts) > 1 and parts[-1] == b"":
        parts.pop()
    return tuple(parts)


def encode(value: Any) -> bytes | None:
    """Encode a Python value as Envoy would hand it to the filter.

    Strings and bytes raw; ints as 8-byte little-endian; booleans one byte;
    floats IEEE-754 doubles; mappings as serialized pairs of encoded values;
    lists as pairs with empty values.
    """
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return pairs.encode((encode(v) or b"", b"") for v in value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return struct.pack("<q" if value < 0 else "<Q", value)
    if isinstance(value, float):
        return struct.pack("<d", value)
    return pairs.encode((k.encode("utf-8"), encode(v) or b"") for k, v in value.items())


def _header_map(headers: HeaderPairs | None) -> dict[str, bytes] | None:
    if headers is None:
        return None
    out: dict[str, bytes] = {}
    for key, value in headers:
        if key.startswith(b":"):
            continue
        name = key.decode("latin-1")
        out[name] = out[name] + b"," + value if name in out else value
    return out


def _first(headers: HeaderPairs | None, name: bytes) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def _complete(ctx: HttpContext, info: StreamInfo) -> bool:
    if info.complete is not None:
        return info.complete
    return ctx.in_log or info.end_ns is not None


def _duration(ctx: HttpContext, info: StreamInfo, now_ns: int) -> int | None:
    if not _complete(ctx, info):
        return None
    if info.duration_ns is not None:
        return info.duration_ns
    end = info.end_ns if info.end_ns is not None else now_ns
    return max(0, end - ctx.start_ns)


def _request(
    ctx: HttpContext, info: StreamInfo, now_ns: int
) -> dict[str, Callable[[], PropertyValue]]:
    side = ctx.request
    h = side.headers

    def path() -> bytes | None:
        return _first(h, b":path")

    def url_path() -> bytes | None:
        p = path()
        return None if p is None else p.split(b"?", 1)[0]

    def query() -> bytes | None:
        p = path()
        return None if p is None else ([*p.split(b"?", 1), b""])[1]

    body = side.before.body if side.before is not None else b""
    return {
        "path": path,
        "url_path": url_path,
        "query": query,
        "host": lambda: _first(h, b":authority"),
        "scheme": lambda: _first(h, b":scheme"),
        "method": lambda: _first(h, b":method"),
        "headers": lambda: _header_map(h),
        "referer": lambda: _first(h, b"referer"),
        "useragent": lambda: _first(h, b"user-agent"),
        "id": lambda: _first(h, b"x-request-id"),
        "protocol": lambda: "HTTP/1.1",
        "time": lambda: info.start_ns if info.start_ns is not None else ctx.start_ns,
        "duration": lambda: _duration(ctx, info, now_ns),
        "size": lambda: len(body),
        "total_size": lambda: len(body) + sum(len(k) + len(v) for k, v in h or ()),
    }


def _details(ctx: HttpContext, info: StreamInfo, stream_details: str) -> str | None:
    if info.code_details is not None:
        return info.code_details
    if stream_details:
        return stream_details
    if ctx.local_reply is not None:
        return ctx.local_reply.details
    return "via_upstream" if ctx.response.headers is not None else None


def _response(
    ctx: HttpContext, info: StreamInfo, stream_details: str
) -> dict[str, Callable[[], PropertyValue]]:
    side = ctx.response
    h = side.headers

    def flags() -> int:
        if info.response_flags is not None:
            return info.response_flags
        return flags_for_details(_details(ctx, info, stream_details))

    def code() -> int | None:
        raw = _first(h, b":status")
        return int(raw) if raw is not None and raw.isdigit() else None

    def grpc_status() -> int | None:
        raw = _first(side.trailers, b"grpc-status") or _first(h, b"grpc-status")
        return int(raw) if raw is not None and raw.isdigit() else None

    size = len(side.before.body) if side.before is not None else 0
    return {
        "code": code,
        "code_details": lambda: _details(ctx, info, stream_details),
        # Envoy: always there (legacyResponseFlags()), 0 until a flag is set.
        "flags": flags,
        "backend_latency": lambda: info.backend_latency_ns,
        "grpc_status": grpc_status,
        "headers": lambda: _header_map(h),
        "trailers": lambda: _header_map(side.trailers),
        "size": lambda: size if h is not None else None,
        "total_size": lambda: (
            size + sum(len(k) + len(v) for k, v in h) if h is not None else None
        ),
    }


_DEFAULT_CONNECTION = Connection()


def _connection(conn: Connection, context_id: int) -> dict[str, PropertyValue]:
    tls = conn.tls_version is not None
    conn_id = conn.id if conn.id is not None else context_id
    return {
        "source": {
            "address": f"{conn.source_address}:{conn.source_port}",
            "port": conn.source_port,
        },
        "destination": {
            "address": f"{conn.destination_address}:{conn.destination_port}",
            "port": conn.destination_port,
        },
        "connection": {
            "id": conn_id,
            "mtls": conn.mtls,
            "requested_server_name": conn.sni if tls else None,
            "tls_version": conn.tls_version,
            "termination_details": None,
        },
        "upstream": {
            "address": f"{conn.upstream_address}:{conn.upstream_port}",
            "port": conn.upstream_port,
            "request_attempt_count": 1,
        },
        "connection_id": conn_id,
    }


def _descend(value: Any, rest: tuple[bytes, ...]) -> Any:
    for segment in rest:
        if not isinstance(value, Mapping):
            return None
        value = value.get(segment.decode("utf-8", "replace"))
    return value


def _from_tree(tree: Mapping[str, Any], path: tuple[bytes, ...]) -> Any:
    head = path[0].decode("utf-8", "replace")
    if head not in tree:
        return None
    value = tree[head]
    if callable(value):
        value = value()
    return _descend(value, path[1:])


_NO_INFO = StreamInfo()


def resolve(
    path: tuple[bytes, ...],
    ctx: Context | None,
    plugin: Mapping[str, Any],
    overrides: Mapping[tuple[bytes, ...], PropertyValue],
    info: StreamInfo | None = None,
    *,
    now_ns: int = 0,
    stream_details: str = "",
) -> bytes | None:
    """The encoded value of property ``path`` in context ``ctx``, or ``None``.

    Looked up, in order: values the filter set on this stream with
    ``proxy_set_property``; the user's overrides (a value given for a prefix
    of the path is descended into when it is a mapping); the plugin's and the
    node's attributes (``plugin_name``, ``xds.*``, ``node.*``); the connection's
    (``source.*``, ``destination.*``, ``connection.*``, ``upstream.*``); and
    ``request.*`` / ``response.*`` of an HTTP stream, with its stream
    ``info`` (timing, details, flags; ``now_ns``: the virtual clock,
    ``stream_details``: the details the stream has so far).
    """
    if not path:
        return None
    if ctx is not None and path in ctx.properties:
        return ctx.properties[path]
    for cut in range(len(path), 0, -1):
        if path[:cut] in overrides:
            return encode(_descend(overrides[path[:cut]], path[cut:]))
    if (
        len(path) == 1
        and b"." in path[0]
        and path[0].decode("utf-8", "replace") not in plugin
    ):
        # Dotted single-string form some SDKs use: request.path and the like.
        return resolve(
            tuple(path[0].split(b".")),
            ctx,
            plugin,
            overrides,
            info,
            now_ns=now_ns,
            stream_details=stream_details,
        )
    value = _from_tree(plugin, path)
    if value is None and ctx is not None and ctx.kind in ("http", "tcp"):
        conn = ctx.connection if ctx.connection is not None else _DEFAULT_CONNECTION
        value = _from_tree(_connection(conn, ctx.id), path)
    if value is None and len(path) >= 2:
        from wasmkit.host.context import HttpContext, TcpContext

        group = path[0]
        got = info or _NO_INFO
        table: Mapping[str, Any] | None = None
        if isinstance(ctx, HttpContext):
            table = (
                _request(ctx, got, now_ns)
                if group == b"request"
                else _response(ctx, got, stream_details)
                if group == b"response"
                else None
            )
        elif isinstance(ctx, TcpContext) and group in (b"request", b"response"):
            table = _tcp(ctx, got, now_ns)[group.decode()]
        if table is not None:
            value = _from_tree(table, path[1:])
    return encode(value)


def _tcp(ctx: TcpContext, info: StreamInfo, now_ns: int) -> dict[str, dict[str, Any]]:
    # Envoy's connection stream info as the attributes read it on a network
    # filter (checked on Envoy 1.40): the connection's start, its byte counts
    # (received from / sent to the client), flags 0; no duration (the
    # connection never completes a request), no code, no details.
    duration = None
    if info.complete:
        end = info.end_ns if info.end_ns is not None else now_ns
        duration = (
            info.duration_ns
            if info.duration_ns is not None
            else max(0, end - ctx.start_ns)
        )
    return {
        "request": {
            "time": info.start_ns if info.start_ns is not None else ctx.start_ns,
            "duration": duration,
            "total_size": len(ctx.downstream.received),
        },
        "response": {
            "code_details": info.code_details,
            "flags": info.response_flags or 0,
            "backend_latency": info.backend_latency_ns,
            "total_size": len(ctx.upstream.forwarded),
        },
    }


def parse_overrides(
    items: Mapping[str, PropertyValue],
) -> dict[tuple[bytes, ...], PropertyValue]:
    """User overrides keyed ``"a.b.c"`` → path tuples."""
    return {tuple(p.encode() for p in k.split(".")): v for k, v in items.items()}
