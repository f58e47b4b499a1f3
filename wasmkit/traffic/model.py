"""Captured traffic as wasmkit sees it: exchanges, messages and raw headers.

Stdlib only (plus the host's message model): the capture readers in
:mod:`wasmkit.traffic.mitm` produce these objects, the replay engine consumes
them through :meth:`Exchange.to_request_message`,
:meth:`Exchange.to_response_message` and :meth:`Exchange.connection`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasmkit.host.message import Connection, HeaderPairs, HttpMessage

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise TypeError(f"expected str or bytes, not {type(value).__name__}")


def _str(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


_LOWER: dict[bytes, bytes] = {}
_LOWERCASE: set[bytes] = set()
_LOWER_MAX = 4096


def _lower(name: bytes) -> bytes:
    # Header names repeat from flow to flow: one shared lower-case object each.
    low = _LOWER.get(name)
    if low is None:
        if len(_LOWER) >= _LOWER_MAX:
            _LOWER.clear()
            _LOWERCASE.clear()
        low = name.lower()
        low = _LOWER.setdefault(low, low)
        _LOWER[name] = low
        if low == name:
            _LOWERCASE.add(name)
    return low


def _lower_pairs(fields: Sequence[tuple[bytes, bytes]]) -> HeaderPairs:
    # A field whose name is lower-case already is its own pair (no new tuple);
    # most often all are, found in one pass in C.
    lowercase = _LOWERCASE
    if lowercase.issuperset(map(_first, fields)):
        return list(fields)
    return [f if f[0] in lowercase else (_lower(f[0]), f[1]) for f in fields]


_first = operator.itemgetter(0)


class Headers(MutableMapping[str, str]):
    """Header fields as on the wire: raw ``(name, value)`` bytes, order and repeats.

    Names are looked up case-insensitively. ``headers["Accept"]`` folds repeated
    fields into one value joined by ``", "`` (RFC 9110 5.3); use :meth:`get_all`
    for fields that must not be folded (``Set-Cookie``). ``str`` views decode
    UTF-8 with ``surrogateescape``, so any byte survives a round trip. Setting a
    name replaces every field of that name at the position of the first one.

    Modelled on ``mitmproxy.http.Headers``.
    """

    __slots__ = ("_fields",)

    _fields: tuple[tuple[bytes, bytes], ...]

    def __init__(
        self, fields: Iterable[tuple[bytes, bytes]] = (), /, **headers: str
    ) -> None:
        """Headers from raw byte pairs, plus keyword fields.

        Args:
            fields: ``(name, value)`` bytes in wire order.
            **headers: more fields to set; ``_`` in a keyword becomes ``-``.

        Raises:
            TypeError: a name or value is not ``bytes``.
        """
        pairs = tuple((k, v) for k, v in fields)
        if not all(isinstance(x, bytes) for pair in pairs for x in pair):
            raise TypeError("header fields must be (bytes, bytes) pairs")
        self._fields = pairs
        for name, value in headers.items():
            self[name.replace("_", "-")] = value

    @classmethod
    def _trusted(cls, fields: tuple[tuple[bytes, bytes], ...]) -> Headers:
        # For readers that already hold validated byte pairs (caches, mitmproxy).
        made = cls.__new__(cls)
        made._fields = fields
        return made

    @property
    def fields(self) -> tuple[tuple[bytes, bytes], ...]:
        """The raw fields, in wire order, repeats kept."""
        return self._fields

    def get_all(self, name: str | bytes) -> list[str]:
        """Every value of ``name``, unfolded, in order (empty when absent)."""
        return [_str(v) for v in self.get_all_raw(name)]

    def get_all_raw(self, name: str | bytes) -> list[bytes]:
        """Every value of ``name`` as bytes, in order."""
        key = _bytes(name).lower()
        return [v for k, v in self._fields if k.lower() == key]

    def set_all(self, name: str | bytes, values: Iterable[str | bytes]) -> None:
        """Replace every field called ``name`` with one field per value.

        The new fields take the place of the first existing one, or go at the end.
        """
        raw_name = _bytes(name)
        key = raw_name.lower()
        new = [(raw_name, _bytes(v)) for v in values]
        out: list[tuple[bytes, bytes]] = []
        placed = False
        for k, v in self._fields:
            if k.lower() == key:
                if not placed:
                    out.extend(new)
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.extend(new)
        self._fields = tuple(out)

    def add(self, name: str | bytes, value: str | bytes) -> None:
        """Append one field, keeping any with the same name."""
        self._fields = (*self._fields, (_bytes(name), _bytes(value)))

    def insert(self, index: int, name: str | bytes, value: str | bytes) -> None:
        """Insert one field at position ``index`` of :attr:`fields`."""
        out = list(self._fields)
        out.insert(index, (_bytes(name), _bytes(value)))
        self._fields = tuple(out)

    def to_pairs(self) -> HeaderPairs:
        """Pairs with lower-case names, as Envoy's header map holds them."""
        return _lower_pairs(self._fields)

    def copy(self) -> Headers:
        """A copy that can be changed independently."""
        return Headers._trusted(self._fields)

    def __getitem__(self, name: str | bytes) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __setitem__(self, name: str | bytes, value: str | bytes) -> None:
        self.set_all(name, [value])

    def __delitem__(self, name: str | bytes) -> None:
        key = _bytes(name).lower()
        kept = tuple((k, v) for k, v in self._fields if k.lower() != key)
        if len(kept) == len(self._fields):
            raise KeyError(name)
        self._fields = kept

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str | bytes):
            return False
        key = _bytes(name).lower()
        return any(k.lower() == key for k, _ in self._fields)

    def __iter__(self) -> Iterator[str]:
        seen: set[bytes] = set()
        for k, _ in self._fields:
            low = k.lower()
            if low not in seen:
                seen.add(low)
                yield _str(k)

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._fields})

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._fields == other._fields
        return NotImplemented

    def __bytes__(self) -> bytes:
        return b"".join(k + b": " + v + b"\r\n" for k, v in self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"

    def __getstate__(self) -> tuple[tuple[bytes, bytes], ...]:
        return self._fields

    def __setstate__(self, state: tuple[tuple[bytes, bytes], ...]) -> None:
        self._fields = state


_STATUS = {code: str(code).encode() for code in range(100, 600)}
_METHODS: dict[str, bytes] = {}
_SCHEMES: dict[str, bytes] = {}


def _method(method: str) -> bytes:
    raw = _METHODS.get(method)
    if raw is None:
        raw = _bytes(method)
        if len(_METHODS) < 256:
            _METHODS[method] = raw
    return raw


def _scheme(scheme: str) -> bytes:
    raw = _SCHEMES.get(scheme)
    if raw is None:
        raw = _bytes(scheme)
        if len(_SCHEMES) < 256:
            _SCHEMES[scheme] = raw
    return raw


_BASE = Connection()
_CONNECTIONS: dict[tuple[Any, ...], Connection] = {}
_CONNECTIONS_MAX = 4096

Fields = tuple[tuple[bytes, bytes], ...]


def request_message(
    method: str,
    scheme: str,
    host: str,
    port: int,
    path: str,
    fields: Fields,
    body: bytes,
    trailers: Fields | None,
    authority: str = "",
) -> HttpMessage:
    """:meth:`Request.to_message` from a request's parts (raw fields)."""
    pairs = _lower_pairs(fields)
    found: bytes | None = None
    if b"host" in map(_first, pairs):
        found = next(v for k, v in pairs if k == b"host")
        pairs = [p for p in pairs if p[0] != b"host"]
    if authority:
        shown = _bytes(authority)
    elif found is not None:
        shown = found
    else:
        default = _DEFAULT_PORTS.get(scheme.lower())
        plain = port == default or not port
        shown = _bytes(host if plain else f"{host}:{port}")
    head: HeaderPairs = [
        (b":authority", shown),
        (b":path", _bytes(path or "/")),
        (b":method", _method(method)),
        (b":scheme", _scheme(scheme or "http")),
    ]
    head += pairs
    return HttpMessage(head, body, None if trailers is None else _lower_pairs(trailers))


def response_message(
    status: int, fields: Fields, body: bytes, trailers: Fields | None
) -> HttpMessage:
    """:meth:`Response.to_message` from a response's parts (raw fields)."""
    code = _STATUS.get(status)
    if code is None:
        code = str(status).encode()
    head: HeaderPairs = [(b":status", code)]
    head += _lower_pairs(fields)
    return HttpMessage(head, body, None if trailers is None else _lower_pairs(trailers))


def connection_of(
    client_address: str | None,
    client_port: int | None,
    listen_address: str | None,
    listen_port: int | None,
    server_address: str | None,
    server_port: int | None,
    tls: bool,
    tls_version: str | None,
    sni: str | None,
    mtls: bool,
) -> Connection:
    """:meth:`Exchange.connection` from an exchange's connection fields."""
    key = (
        client_address or _BASE.source_address,
        client_port or _BASE.source_port,
        listen_address or _BASE.destination_address,
        listen_port or _BASE.destination_port,
        server_address or _BASE.upstream_address,
        server_port or _BASE.upstream_port,
        (tls_version or "TLS") if tls else None,
        sni if tls else None,
        mtls,
    )
    # Connections are frozen: flows on the same connection share one.
    made = _CONNECTIONS.get(key)
    if made is None:
        if len(_CONNECTIONS) >= _CONNECTIONS_MAX:
            _CONNECTIONS.clear()
        made = _CONNECTIONS[key] = Connection(*key)
    return made


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request as captured."""

    method: str
    """``GET``, ``POST``, ... as sent."""
    scheme: str
    """``http`` or ``https``."""
    host: str
    """The target host: the server the proxy connected to, or the URL's host."""
    port: int
    """The target port."""
    path: str
    """Path and query as sent (``surrogateescape`` for non-UTF-8 bytes)."""
    http_version: str = "HTTP/1.1"
    """``HTTP/1.1``, ``HTTP/2``, ..."""
    headers: Headers = field(default_factory=Headers)
    """Header fields in wire order (HTTP/2 pseudo-headers are not among them)."""
    body: bytes = b""
    """The body (bytes): as on the wire, or decoded when the exchange is ``decoded``."""
    trailers: Headers | None = None
    """Trailer fields, ``None`` when the request had none."""
    authority: str = ""
    """HTTP/2+ ``:authority``, or the authority of an absolute-form HTTP/1 target;
    empty otherwise."""
    timestamp_start: float | None = None
    """When the first byte arrived (seconds since the epoch)."""
    timestamp_end: float | None = None
    """When the last byte arrived (seconds since the epoch)."""

    @property
    def pretty_authority(self) -> str:
        """``:authority`` as Envoy sees it: the authority, else Host, else host:port."""
        if self.authority:
            return self.authority
        host = self.headers.get_all_raw(b"host")
        if host:
            return _str(host[0])
        default = _DEFAULT_PORTS.get(self.scheme.lower())
        if self.port == default or not self.port:
            return self.host
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL: scheme, authority and path."""
        if self.method.upper() == "CONNECT":
            return self.pretty_authority
        return f"{self.scheme}://{self.pretty_authority}{self.path}"

    def to_message(self) -> HttpMessage:
        """The request as Envoy's header map holds it.

        Pseudo-headers come first (``:authority``, ``:path``, ``:method``,
        ``:scheme``), then the fields with lower-case names; ``Host`` becomes
        ``:authority`` as Envoy's HTTP/1 codec does.
        """
        trailers = self.trailers
        return request_message(
            self.method,
            self.scheme,
            self.host,
            self.port,
            self.path,
            self.headers._fields,
            self.body,
            None if trailers is None else trailers._fields,
            self.authority,
        )


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response as captured."""

    status: int
    """Status code."""
    reason: str = ""
    """Reason phrase (HTTP/1), empty for HTTP/2+."""
    http_version: str = "HTTP/1.1"
    """``HTTP/1.1``, ``HTTP/2``, ..."""
    headers: Headers = field(default_factory=Headers)
    """Header fields in wire order."""
    body: bytes = b""
    """The body (bytes): as on the wire, or decoded when the exchange is ``decoded``."""
    trailers: Headers | None = None
    """Trailer fields, ``None`` when the response had none."""
    timestamp_start: float | None = None
    """When the first byte arrived (seconds since the epoch)."""
    timestamp_end: float | None = None
    """When the last byte arrived (seconds since the epoch)."""

    def to_message(self) -> HttpMessage:
        """The response as Envoy's header map holds it: ``:status`` first."""
        trailers = self.trailers
        return response_message(
            self.status,
            self.headers._fields,
            self.body,
            None if trailers is None else trailers._fields,
        )


@dataclass(frozen=True, slots=True)
class Exchange:
    """One captured HTTP request and its response, with the connection it came on.

    A flow with an error or without a response is *request-only*
    (:attr:`request_only`): replay runs its request path and marks it.
    """

    index: int
    """Position of the flow in its capture (0-based), counting skipped flows."""
    request: Request
    """The request."""
    response: Response | None = None
    """The response, ``None`` when the capture has none."""
    error: str | None = None
    """Why the flow failed (mitmproxy's flow error), ``None`` when it did not."""
    id: str = ""
    """The flow's id in the capture."""
    client_address: str | None = None
    """Client IP (the downstream peer)."""
    client_port: int | None = None
    """Client port."""
    listen_address: str | None = None
    """The proxy's own address on the client connection."""
    listen_port: int | None = None
    """The proxy's own port on the client connection."""
    server_address: str | None = None
    """Upstream IP (its resolved peer address when known, else the host asked for)."""
    server_port: int | None = None
    """Upstream port."""
    tls: bool = False
    """Whether the client connection used TLS."""
    tls_version: str | None = None
    """``TLSv1.3`` etc. on TLS connections."""
    sni: str | None = None
    """The server name the client sent in its TLS hello."""
    alpn: str | None = None
    """The negotiated application protocol (``h2``, ``http/1.1``)."""
    mtls: bool = False
    """Whether the client presented a certificate."""
    timestamp_start: float | None = None
    """When the request started (seconds since the epoch)."""
    timestamp_end: float | None = None
    """When the exchange ended: the response's last byte or the error."""
    decoded: bool = False
    """Bodies were decoded (``Content-Encoding`` undone) when read."""
    websocket_messages: int = 0
    """WebSocket messages that followed this handshake (counted, not replayed)."""

    @property
    def request_only(self) -> bool:
        """The flow has an error or no response: replay runs the request path only."""
        return self.response is None or self.error is not None

    @property
    def timestamp(self) -> float | None:
        """When the request started (seconds since the epoch)."""
        if self.timestamp_start is not None:
            return self.timestamp_start
        return self.request.timestamp_start

    def to_request_message(self) -> HttpMessage:
        """The request as the client sent it, with Envoy's pseudo-headers."""
        return self.request.to_message()

    def to_response_message(self) -> HttpMessage | None:
        """The recorded response, ``None`` for a request-only flow."""
        if self.response is None or self.error is not None:
            return None
        return self.response.to_message()

    def connection(self) -> Connection:
        """The downstream connection, as the host's ``source``/``destination``."""
        return connection_of(
            self.client_address,
            self.client_port,
            self.listen_address,
            self.listen_port,
            self.server_address,
            self.server_port,
            self.tls,
            self.tls_version,
            self.sni,
            self.mtls,
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """A flow the reader did not turn into an exchange (TCP, UDP, DNS, ...)."""

    index: int
    """Position of the flow in its capture (0-based)."""
    kind: str
    """``tcp``, ``udp``, ``dns`` or the flow's type name."""
    id: str = ""
    """The flow's id in the capture."""
    reason: str = ""
    """Why it was skipped."""


@dataclass(slots=True)
class CaptureStats:
    """What reading a capture found; filled in while the flows stream."""

    path: str | None = None
    """The capture file (the last one, when several are read)."""
    format: str | None = None
    """``flow`` (mitmproxy) or ``har``."""
    format_version: str | None = None
    """mitmproxy's flow format version, or the HAR version, when known."""
    flows: int = 0
    """Flows read, of every kind."""
    exchanges: int = 0
    """HTTP exchanges yielded."""
    request_only: int = 0
    """Exchanges with an error or no response (replayed on the request path)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Skipped flows by kind (``tcp``, ``udp``, ``dns``, ...)."""
    websocket_messages: int = 0
    """WebSocket messages after handshakes (not replayed)."""
    filtered_out: int = 0
    """HTTP flows the filter expression did not match."""
    from_cache: bool = False
    """The exchanges came from the warm-load cache."""

    def count_skip(self, kind: str) -> None:
        """Count one skipped flow of ``kind``."""
        self.skipped[kind] = self.skipped.get(kind, 0) + 1

    def report(self) -> str:
        """One line for people: what was read and what was left out."""
        text = f"{self.flows} flows: {self.exchanges} HTTP exchanges"
        if self.request_only:
            text += f" ({self.request_only} request-only: error or no response)"
        if self.skipped:
            parts = ", ".join(f"{n} {k}" for k, n in sorted(self.skipped.items()))
            text += f"; skipped {parts}"
        if self.websocket_messages:
            text += f"; {self.websocket_messages} WebSocket messages not replayed"
        if self.filtered_out:
            text += f"; {self.filtered_out} filtered out"
        return text

    def as_dict(self) -> dict[str, Any]:
        """The counts as a plain dict (JSON-ready)."""
        return {
            "path": self.path,
            "format": self.format,
            "format_version": self.format_version,
            "flows": self.flows,
            "exchanges": self.exchanges,
            "request_only": self.request_only,
            "skipped": dict(self.skipped),
            "websocket_messages": self.websocket_messages,
            "filtered_out": self.filtered_out,
            "from_cache": self.from_cache,
        }
