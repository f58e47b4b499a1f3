"""HTTP/1.1 on the wire, as small as the local servers and the sender need.

Messages are read and written byte for byte: header fields keep their order,
case and repeats, nothing is added. Bodies are framed by ``content-length``,
``transfer-encoding: chunked`` or the end of the connection, as RFC 9112
section 6 says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from wasmkit.host.message import HttpMessage

Fields = list[tuple[bytes, bytes]]

MAX_LINE = 65536
"""Longest request, status or header line accepted (bytes)."""
MAX_FIELDS = 1024
"""Most header fields accepted in one message."""


class WireError(Exception):
    """The peer sent something that is not HTTP/1.1, or closed too early."""


@dataclass(slots=True)
class WireMessage:
    """One HTTP/1.1 message as it crossed the wire."""

    start: tuple[bytes, bytes, bytes]
    """Request ``(method, target, version)`` or status ``(version, code, reason)``."""
    fields: Fields
    """Header fields in wire order, names as sent."""
    body: bytes
    """The body with the transfer coding undone."""
    trailers: Fields | None = None
    """Chunked trailers, ``None`` when there were none."""
    chunked: bool = False
    """The body came chunked."""

    def get(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (any case)."""
        return field_value(self.fields, name)


def field_value(fields: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of ``name`` among ``fields``, compared without case."""
    low = name.lower()
    for key, value in fields:
        if key.lower() == low:
            return value
    return None


def _line(rfile: BinaryIO) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise WireError("line too long")
    return line


def _fields(rfile: BinaryIO) -> Fields:
    out: Fields = []
    while True:
        line = _line(rfile)
        if not line:
            raise WireError("connection closed inside the header")
        line = line.rstrip(b"\r\n")
        if not line:
            return out
        name, sep, value = line.partition(b":")
        if not sep:
            raise WireError(f"bad header line {line[:80]!r}")
        out.append((name.strip(), value.strip()))
        if len(out) > MAX_FIELDS:
            raise WireError("too many header fields")


def _exact(rfile: BinaryIO, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) != size:
        raise WireError(f"body ended after {len(data)} of {size} bytes")
    return data


def _chunked(rfile: BinaryIO) -> tuple[bytes, Fields | None]:
    parts: list[bytes] = []
    while True:
        line = _line(rfile).strip()
        if not line:
            raise WireError("connection closed inside a chunked body")
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            trailers = _fields(rfile)
            return b"".join(parts), trailers or None
        parts.append(_exact(rfile, size))
        _line(rfile)  # the CRLF after the chunk


def read_body(
    rfile: BinaryIO, fields: Fields, *, until_close: bool
) -> tuple[bytes, Fields | None, bool]:
    """The body after ``fields``: ``(body, trailers, chunked)``.

    ``until_close``: without framing headers the body runs to the end of the
    connection (responses) rather than being empty (requests).
    """
    coding = field_value(fields, b"transfer-encoding")
    if coding is not None and coding.lower().endswith(b"chunked"):
        body, trailers = _chunked(rfile)
        return body, trailers, True
    length = field_value(fields, b"content-length")
    if length is not None:
        return _exact(rfile, int(length)), None, False
    if until_close:
        return rfile.read(), None, False
    return b"", None, False


def read_request(rfile: BinaryIO) -> WireMessage | None:
    """The next request on a connection, ``None`` when the peer closed it."""
    line = _line(rfile)
    while line in (b"\r\n", b"\n"):  # stray empty lines between requests
        line = _line(rfile)
    if not line:
        return None
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3:
        raise WireError(f"bad request line {line[:80]!r}")
    fields = _fields(rfile)
    body, trailers, chunked = read_body(rfile, fields, until_close=False)
    method, target, version = parts
    return WireMessage((method, target, version), fields, body, trailers, chunked)


def read_response(rfile: BinaryIO, method: bytes) -> WireMessage:
    """The response to a ``method`` request (1xx interim responses skipped)."""
    while True:
        line = _line(rfile)
        if not line:
            raise WireError("connection closed before a response")
        version, _, rest = line.rstrip(b"\r\n").partition(b" ")
        code, _, reason = rest.partition(b" ")
        fields = _fields(rfile)
        if not code.isdigit():
            raise WireError(f"bad status line {line[:80]!r}")
        status = int(code)
        if 100 <= status < 200 and status != 101:
            continue
        if method == b"HEAD" or status in (204, 304) or status < 200:
            body, trailers, chunked = b"", None, False
        else:
            body, trailers, chunked = read_body(rfile, fields, until_close=True)
        return WireMessage((version, code, reason), fields, body, trailers, chunked)


def encode(
    start: bytes,
    fields: Sequence[tuple[bytes, bytes]],
    body: bytes,
    trailers: Sequence[tuple[bytes, bytes]] | None = None,
    *,
    send_body: bool = True,
) -> bytes:
    """A whole message: the start line, the fields as given, the body.

    The body is chunked when the fields say ``transfer-encoding: chunked``
    (trailers go in the last chunk), else sent as it is.
    """
    head = start + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in fields)
    head += b"\r\n"
    if not send_body:
        return head
    coding = field_value(fields, b"transfer-encoding")
    if coding is None or not coding.lower().endswith(b"chunked"):
        return head + body
    out = [head]
    if body:
        out.append(b"%x\r\n%s\r\n" % (len(body), body))
    out.append(b"0\r\n")
    out.extend(k + b": " + v + b"\r\n" for k, v in trailers or ())
    out.append(b"\r\n")
    return b"".join(out)


def has_framing(fields: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether ``fields`` frame a body (``content-length`` or chunked)."""
    if field_value(fields, b"content-length") is not None:
        return True
    coding = field_value(fields, b"transfer-encoding")
    return coding is not None and coding.lower().endswith(b"chunked")


def request_message(wire: WireMessage, scheme: bytes) -> HttpMessage:
    """A received request in the host's shape: pseudo-headers first, lower case.

    ``Host`` becomes ``:authority`` as Envoy's HTTP/1 codec does.
    """
    method, target, _ = wire.start
    lowered = [(k.lower(), v) for k, v in wire.fields]
    authority = field_value(lowered, b"host") or b""
    head = [
        (b":authority", authority),
        (b":path", target),
        (b":method", method),
        (b":scheme", scheme),
    ]
    rest = [(k, v) for k, v in lowered if k != b"host"]
    trailers = (
        None if wire.trailers is None else [(k.lower(), v) for k, v in wire.trailers]
    )
    return HttpMessage(head + rest, wire.body, trailers)


def response_message(wire: WireMessage) -> HttpMessage:
    """A received response in the host's shape: ``:status`` first, lower case."""
    head = [(b":status", wire.start[1])]
    head += [(k.lower(), v) for k, v in wire.fields]
    trailers = (
        None if wire.trailers is None else [(k.lower(), v) for k, v in wire.trailers]
    )
    return HttpMessage(head, wire.body, trailers)
