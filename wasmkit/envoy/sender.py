"""The client side: captured requests sent to Envoy's listener, one at a time.

Each exchange gets its own connection, so a close-delimited or ``Connection:
close`` exchange cannot disturb the next. The request goes out as captured:
the request line with the captured method and target, the fields in wire
order and case (an HTTP/2 capture's ``:authority`` becomes ``Host``), the
body with its framing (``content-length`` added when the capture framed the
body some other way, corrected when a decoded body no longer matches).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Any

from wasmkit.envoy import _http1
from wasmkit.envoy._http1 import WireError, WireMessage


@dataclass(slots=True)
class ClientOutcome:
    """What the client got for one exchange."""

    response: WireMessage | None = None
    """The response, ``None`` when the connection ended without one."""
    error: str | None = None
    """Why there is no response (reset, connection closed)."""
    timed_out: bool = False
    """No answer within the wall-clock limit."""


def request_bytes(request: Any) -> bytes:
    """A captured :class:`wasmkit.traffic.Request` as HTTP/1.1 bytes."""
    fields = list(request.headers.fields)
    if _http1.field_value(fields, b"host") is None:
        fields.insert(0, (b"Host", request.pretty_authority.encode()))
    body: bytes = request.body
    length = _http1.field_value(fields, b"content-length")
    chunked = _http1.has_framing(fields) and length is None
    if length is not None and length.strip() != str(len(body)).encode():
        fields = [
            (k, str(len(body)).encode()) if k.lower() == b"content-length" else (k, v)
            for k, v in fields
        ]
    elif body and not chunked and length is None:
        fields.append((b"content-length", str(len(body)).encode()))
    target = (request.path or "/").encode("utf-8", "surrogateescape")
    start = request.method.encode() + b" " + target + b" HTTP/1.1"
    trailers = list(request.trailers.fields) if request.trailers else None
    return _http1.encode(start, fields, body, trailers)


def _exchange(
    port: int, data: bytes, method: bytes, outcome: ClientOutcome, limit: float
) -> None:
    try:
        # The socket's own timeout is a backstop: the caller's join() is the limit.
        with socket.create_connection(("127.0.0.1", port), timeout=limit + 5) as sock:
            sock.sendall(data)
            with sock.makefile("rb") as rfile:
                outcome.response = _http1.read_response(rfile, method)
    except TimeoutError:
        outcome.timed_out = True
    except (WireError, OSError, ValueError) as exc:
        outcome.error = str(exc) or type(exc).__name__


def send(port: int, request: Any, limit: float) -> ClientOutcome:
    """Send one captured request to ``127.0.0.1:port``; wait at most ``limit`` s.

    The wall-clock limit covers the whole exchange (connect, request,
    response). When it passes, the outcome says ``timed_out`` and the
    exchange is abandoned in its thread (the caller stops Envoy, which ends
    it).
    """
    outcome = ClientOutcome()
    method = request.method.upper().encode()
    thread = threading.Thread(
        target=_exchange,
        args=(port, request_bytes(request), method, outcome, limit),
        name="wasmkit-envoy-client",
        daemon=True,
    )
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        outcome.timed_out = True
    return outcome


def mark(port: int, value: str, limit: float = 10.0) -> bool:
    """Send a marker request to the marker listener; whether it was answered."""
    data = (
        b"GET / HTTP/1.1\r\nHost: wasmkit-marker\r\nx-wasmkit-mark: "
        + value.encode()
        + b"\r\nconnection: close\r\n\r\n"
    )
    with (
        contextlib.suppress(OSError, WireError, ValueError),
        socket.create_connection(("127.0.0.1", port), timeout=limit) as sock,
    ):
        sock.sendall(data)
        with sock.makefile("rb") as rfile:
            _http1.read_response(rfile, b"GET")
            return True
    return False
