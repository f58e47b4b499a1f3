"""HTTP messages as the host sees them: header pairs with pseudo-headers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HeaderPairs = list[tuple[bytes, bytes]]
"""Header fields as ``(name, value)`` bytes, in order, repeats kept."""

HeaderInput = Iterable[tuple[bytes | str, bytes | str]]


def _b(value: bytes | str) -> bytes:
    return (
        value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    )


def normalize_headers(headers: HeaderInput) -> HeaderPairs:
    """Byte pairs with names lower-cased, as Envoy stores them."""
    return [(_b(k).lower(), _b(v)) for k, v in headers]


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of ``name`` (lower-case), or ``None``."""
    for key, value in headers:
        if key == name:
            return value
    return None


def set_header(headers: HeaderPairs, name: bytes, value: bytes) -> None:
    """Envoy's ``setX()``: the first ``name`` field takes ``value`` in place.

    Later fields of that name go; without one, a new field is appended.
    """
    for i, (key, _) in enumerate(headers):
        if key == name:
            headers[i] = (name, value)
            headers[i + 1 :] = [p for p in headers[i + 1 :] if p[0] != name]
            return
    headers.append((name, value))


def remove_header(headers: HeaderPairs, name: bytes) -> bool:
    """Remove every ``name`` field; whether there was one."""
    kept = [p for p in headers if p[0] != name]
    if len(kept) == len(headers):
        return False
    headers[:] = kept
    return True


@dataclass(slots=True)
class HttpMessage:
    """One side of an exchange: headers (pseudo-headers first), body, trailers."""

    headers: HeaderPairs
    """Header pairs; requests carry ``:method``, ``:scheme``, ``:authority``,
    ``:path``; responses carry ``:status``."""
    body: bytes = b""
    """The whole body (bytes)."""
    trailers: HeaderPairs | None = None
    """Trailer pairs, or ``None`` when the message has none."""

    def copy(self) -> HttpMessage:
        """A copy whose lists may be changed freely."""
        return HttpMessage(
            list(self.headers),
            self.body,
            None if self.trailers is None else list(self.trailers),
        )

    def get(self, name: bytes) -> bytes | None:
        """First value of header ``name`` (lower-case bytes)."""
        return header_value(self.headers, name)

    @property
    def status(self) -> int | None:
        """The ``:status`` of a response, as an int."""
        raw = self.get(b":status")
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None


def request(
    method: str = "GET",
    url: str = "http://example.com/",
    headers: HeaderInput = (),
    body: bytes | str = b"",
    trailers: HeaderInput | None = None,
) -> HttpMessage:
    """Build a request message from a URL, adding Envoy's pseudo-headers.

    A ``Host`` header becomes ``:authority`` (HTTP/1 to Envoy's form) unless the
    URL names a host; the URL's path and query become ``:path``.

    Raises:
        ValueError: the URL has no scheme or no host and no Host header is given.
    """
    parts = urlsplit(url)
    pairs = normalize_headers(headers)
    host_header = header_value(pairs, b"host")
    authority = parts.netloc.encode() if parts.netloc else host_header
    if not parts.scheme or authority is None:
        raise ValueError(f"URL {url!r} needs a scheme and a host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    head = [
        (b":authority", authority),
        (b":path", path.encode("utf-8", "surrogateescape")),
        (b":method", method.upper().encode()),
        (b":scheme", parts.scheme.encode()),
    ]
    rest = [(k, v) for k, v in pairs if k != b"host"]
    return HttpMessage(
        head + rest,
        _b(body),
        None if trailers is None else normalize_headers(trailers),
    )


def response(
    status: int = 200,
    headers: HeaderInput = (),
    body: bytes | str = b"",
    trailers: HeaderInput | None = None,
) -> HttpMessage:
    """Build a response message with ``:status`` first."""
    return HttpMessage(
        [(b":status", str(status).encode()), *normalize_headers(headers)],
        _b(body),
        None if trailers is None else normalize_headers(trailers),
    )


@dataclass(frozen=True, slots=True)
class Connection:
    """The downstream connection an exchange came on, and its upstream.

    Read by the filter as ``source.*``, ``destination.*``, ``connection.*`` and
    ``upstream.*`` properties.
    """

    source_address: str = "127.0.0.1"
    """Client IP."""
    source_port: int = 50000
    """Client port."""
    destination_address: str = "127.0.0.1"
    """The proxy's listener IP."""
    destination_port: int = 10000
    """The proxy's listener port."""
    upstream_address: str = "127.0.0.1"
    """The upstream host the request went to."""
    upstream_port: int = 8080
    """The upstream port."""
    tls_version: str | None = None
    """``TLSv1.3`` etc. for TLS connections, ``None`` for plain text."""
    sni: str | None = None
    """The server name the client asked for (TLS)."""
    mtls: bool = False
    """Whether the client presented a certificate."""
    id: int | None = None
    """Connection id; defaults to the stream's context id."""


# Envoy's mapping of HTTP statuses to gRPC statuses (Grpc::Utility).
_GRPC_FROM_HTTP = {
    400: 13,
    401: 16,
    403: 7,
    404: 12,
    429: 14,
    502: 14,
    503: 14,
    504: 14,
}


def is_grpc(headers: Sequence[tuple[bytes, bytes]] | None) -> bool:
    """Whether request headers announce a gRPC call."""
    value = header_value(headers or [], b"content-type")
    return value is not None and value.startswith(b"application/grpc")


@dataclass(slots=True)
class LocalReply:
    """A response the filter generated with ``proxy_send_local_response``."""

    status: int
    """HTTP status code."""
    headers: HeaderPairs = field(default_factory=list)
    """Extra headers the filter asked for."""
    body: bytes = b""
    """Reply body."""
    details: str = ""
    """Response code details (Envoy replaces whitespace with ``_``)."""
    grpc_status: int | None = None
    """gRPC status for gRPC requests, ``None`` when not given."""
    callback: str = ""
    """The callback that sent it."""

    def to_message(self, *, grpc: bool = False, head: bool = False) -> HttpMessage:
        """The response Envoy generates for this reply.

        Follows ``source/common/http/utility.cc`` ``prepareLocalReply``
        (measured with Envoy 1.40): ``:status``, then the filter's headers in
        their order, then ``content-length`` and, unless the filter gave one,
        ``content-type: text/plain``. With an empty body neither is sent (a
        ``content-length`` or ``content-type`` the filter gave is dropped).

        Args:
            grpc: the request was a gRPC call (``content-type:
                application/grpc...``). Envoy then answers trailers-only:
                ``:status 200``, the filter's headers, ``content-type:
                application/grpc``, the gRPC status (the filter's, given, or
                mapped from the HTTP status) and the body as a percent-encoded
                ``grpc-message``.
            head: the request was ``HEAD``: the headers announce the body's
                length, the body is not sent.
        """
        headers: HeaderPairs = [(b":status", str(self.status).encode())]
        headers.extend(self.headers)
        if grpc:
            set_header(headers, b":status", b"200")
            set_header(headers, b"content-type", b"application/grpc")
            if header_value(headers, b"grpc-status") is None:
                code = self.grpc_status
                if code is None:
                    code = _GRPC_FROM_HTTP.get(self.status, 2)  # UNKNOWN
                headers.append((b"grpc-status", str(code).encode()))
            if self.body and not head:
                set_header(headers, b"grpc-message", _percent_encode(self.body))
            remove_header(headers, b"content-length")
            return HttpMessage(headers, b"")
        if self.body:
            set_header(headers, b"content-length", str(len(self.body)).encode())
            if header_value(headers, b"content-type") is None:
                headers.append((b"content-type", b"text/plain"))
        else:
            remove_header(headers, b"content-length")
            remove_header(headers, b"content-type")
        return HttpMessage(headers, b"" if head else self.body)


def _percent_encode(value: bytes) -> bytes:
    # Envoy's PercentEncoding::encode for grpc-message: '%', '~' and above,
    # and control bytes.
    return b"".join(
        b"%%%02X" % c if c < 0x20 or c >= 0x7E or c == 0x25 else bytes((c,))
        for c in value
    )
