r"""Properties (Envoy "attributes") read with ``proxy_get_property``.

A path arrives as segments joined by NUL (``request\\0headers\\0user-agent``);
values are encoded as Envoy encodes CEL values: strings raw, integers 8-byte
little-endian, booleans one byte, maps as serialized pairs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wasmkit.abi import pairs
from wasmkit.host.message import Connection, HeaderPairs

if TYPE_CHECKING:
    from wasmkit.host.context import Context, HttpContext

PropertyValue = bytes | str | int | float | bool | Mapping[str, Any] | None


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


def _request(ctx: HttpContext) -> dict[str, Callable[[], PropertyValue]]:
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
        "time": lambda: ctx.start_ns,
        "size": lambda: len(body),
        "total_size": lambda: len(body) + sum(len(k) + len(v) for k, v in h or ()),
    }


def _response(ctx: HttpContext) -> dict[str, Callable[[], PropertyValue]]:
    side = ctx.response
    h = side.headers

    def code() -> int | None:
        raw = _first(h, b":status")
        return int(raw) if raw is not None and raw.isdigit() else None

    def grpc_status() -> int | None:
        raw = _first(side.trailers, b"grpc-status") or _first(h, b"grpc-status")
        return int(raw) if raw is not None and raw.isdigit() else None

    size = len(side.before.body) if side.before is not None else 0
    return {
        "code": code,
        "code_details": lambda: (
            ctx.local_reply.details
            if ctx.local_reply is not None
            else ("via_upstream" if h is not None else None)
        ),
        "flags": lambda: 0 if h is not None else None,
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


def resolve(
    path: tuple[bytes, ...],
    ctx: Context | None,
    plugin: Mapping[str, Any],
    overrides: Mapping[tuple[bytes, ...], PropertyValue],
) -> bytes | None:
    """The encoded value of property ``path`` in context ``ctx``, or ``None``.

    Looked up, in order: values the filter set on this stream with
    ``proxy_set_property``; the user's overrides (a value given for a prefix
    of the path is descended into when it is a mapping); the plugin's and the
    node's attributes (``plugin_name``, ``xds.*``, ``node.*``); the connection's
    (``source.*``, ``destination.*``, ``connection.*``, ``upstream.*``); and
    ``request.*`` / ``response.*`` of an HTTP stream.
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
        return resolve(tuple(path[0].split(b".")), ctx, plugin, overrides)
    value = _from_tree(plugin, path)
    if value is None and ctx is not None and ctx.kind in ("http", "tcp"):
        conn = ctx.connection if ctx.connection is not None else _DEFAULT_CONNECTION
        value = _from_tree(_connection(conn, ctx.id), path)
    if value is None and len(path) >= 2:
        from wasmkit.host.context import HttpContext

        if isinstance(ctx, HttpContext):
            group = path[0]
            table = (
                _request(ctx)
                if group == b"request"
                else _response(ctx)
                if group == b"response"
                else None
            )
            if table is not None:
                value = _from_tree(table, path[1:])
    return encode(value)


def parse_overrides(
    items: Mapping[str, PropertyValue],
) -> dict[tuple[bytes, ...], PropertyValue]:
    """User overrides keyed ``"a.b.c"`` → path tuples."""
    return {tuple(p.encode() for p in k.split(".")): v for k, v in items.items()}
