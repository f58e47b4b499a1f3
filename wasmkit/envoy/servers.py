"""The local servers behind Envoy: the upstream and the callout targets.

Each is an HTTP/1.1 server on loopback in its own threads, started and
stopped explicitly, and records what arrived.

The upstream answers *by order*: exchanges are sent one at a time, so every
request reaching it belongs to the exchange in flight, whose captured response
the runner set with :meth:`UpstreamServer.expect`. No marker header travels
with the request, so the filter sees exactly the captured request (what
Envoy's connection manager adds aside) and may rewrite the path freely.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmkit.envoy import _http1
from wasmkit.envoy._http1 import WireError, WireMessage
from wasmkit.host.callouts import (
    Callout,
    CalloutReply,
    DispatchFailure,
    InlineReply,
    Responder,
)
from wasmkit.host.message import HttpMessage

HOLD_S = 30.0
"""How long a callout without an answer keeps its connection open (s)."""


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class _LoopbackServer:
    # Threads and sockets; the subclass answers one request at a time.

    def __init__(self, name: str) -> None:
        self.name = name
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()

    @property
    def port(self) -> int:
        """The port it listens on (loopback)."""
        if self._server is None:
            raise RuntimeError(f"{self.name} server is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Listen on a free loopback port and serve in a thread."""
        if self._server is not None:
            return
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._connection(self.request)

        self._server = _TCPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"wasmkit-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(5)

    def _connection(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
        rfile = conn.makefile("rb")
        try:
            while True:
                try:
                    wire = _http1.read_request(rfile)
                except (WireError, ValueError, OSError):
                    return
                if wire is None or not self._answer(conn, wire):
                    return
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                rfile.close()

    def _answer(self, conn: socket.socket, wire: WireMessage) -> bool:
        # Answer ``wire``; False closes the connection.
        raise NotImplementedError

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _send(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendall(data)
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Arrival:
    """A request that reached a local server."""

    flow: int
    """The exchange in flight when it came (its capture index; -1: none)."""
    wire: WireMessage
    """The request as it crossed the wire."""
    time_ns: int
    """When it arrived (ns since the epoch)."""


class UpstreamServer(_LoopbackServer):
    """The upstream cluster: answers with the captured response of the flow in flight.

    A flow without a captured response (the capture's upstream was
    unreachable) is answered by closing the connection, so Envoy's router
    answers as it does for a failed upstream.
    """

    def __init__(self) -> None:
        super().__init__("upstream")
        self.arrivals: list[Arrival] = []
        """Every request that arrived, in order."""
        self._flow = -1
        self._answer_with: Any = None

    def expect(self, flow: int, response: Any) -> None:
        """Answer the next requests for exchange ``flow`` with ``response``.

        ``response`` is a captured :class:`wasmkit.traffic.Response` (fields
        as on the wire) or ``None`` (close the connection instead).
        """
        with self._lock:
            self._flow = flow
            self._answer_with = response

    def received(self, flow: int, since: int = 0) -> list[WireMessage]:
        """The requests that arrived for exchange ``flow``.

        ``since``: only among the arrivals from that position on (a runner
        that replays several captures sees the same flow index again).
        """
        with self._lock:
            return [a.wire for a in self.arrivals[since:] if a.flow == flow]

    def _answer(self, conn: socket.socket, wire: WireMessage) -> bool:
        with self._lock:
            flow, captured = self._flow, self._answer_with
            self.arrivals.append(Arrival(flow, wire, time.time_ns()))
        if captured is None:
            return False
        data, keep = captured_response(captured, head=wire.start[0] == b"HEAD")
        return _send(conn, data) and keep


def captured_response(captured: Any, *, head: bool) -> tuple[bytes, bool]:
    """A captured response as bytes to send, and whether the connection stays open.

    The fields go out as captured (order, case, repeats). A ``content-length``
    that no longer matches the stored body (a decoded capture) is corrected; a
    body without framing runs to the end of the connection, as it would have.
    """
    fields = list(captured.headers.fields)
    body: bytes = captured.body
    length = _http1.field_value(fields, b"content-length")
    chunked = _http1.has_framing(fields) and length is None
    if length is not None and not head and length.strip() != str(len(body)).encode():
        fields = [
            (k, str(len(body)).encode()) if k.lower() == b"content-length" else (k, v)
            for k, v in fields
        ]
    version = b"HTTP/1.1"
    reason = (captured.reason or "").encode("latin-1", "replace")
    start = version + b" " + str(captured.status).encode() + b" " + reason
    no_body = head or captured.status in (204, 304) or captured.status < 200
    trailers = list(captured.trailers.fields) if captured.trailers else None
    data = _http1.encode(start, fields, body, trailers, send_body=not no_body)
    framed = no_body or chunked or length is not None
    return data, framed


class CalloutServer(_LoopbackServer):
    """One callout cluster: answers ``proxy_http_call`` from a responder.

    The responder is the one wasmkit's host takes (a function of a
    :class:`~wasmkit.host.callouts.Callout`, or a table from
    :func:`~wasmkit.host.callouts.table_responder`). Its answer is sent as
    given (framed by the end of the connection when it has no
    ``content-length``); ``None`` keeps the connection open without an answer
    (the filter's timeout fires); a failure (``CalloutReply(None)``) closes
    it. A reply's ``latency_ms`` is waited in real time.

    Args:
        cluster: the Envoy cluster name this server stands for.
        responder: answers each call.
        record: called with each :class:`Callout` once answered.
    """

    def __init__(
        self,
        cluster: str,
        responder: Responder,
        record: Callable[[Callout], None] | None = None,
    ) -> None:
        super().__init__(f"callout-{cluster}")
        self.cluster = cluster
        self.responder = responder
        self.record = record
        self.calls: list[Callout] = []
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop serving (calls held without an answer are let go)."""
        self._stopping.set()
        super().stop()

    def _answer(self, conn: socket.socket, wire: WireMessage) -> bool:
        message = _http1.request_message(wire, b"http")
        timeout = message.get(b"x-envoy-expected-rq-timeout-ms")
        call = Callout(
            token=0,
            context_id=0,
            root_id=0,
            cluster=self.cluster,
            headers=message.headers,
            body=message.body,
            trailers=message.trailers or [],
            timeout_ms=int(timeout) if timeout and timeout.isdigit() else 0,
            sent_ns=time.time_ns(),
        )
        with self._lock:
            self.calls.append(call)
        got = self.responder(call)
        if isinstance(got, DispatchFailure | InlineReply):
            # A failed dispatch never reaches a server in Envoy (a cluster
            # without endpoints does that); here the call reached one: the
            # closest answer is none (dispatch failure) or the inline one.
            got = None if isinstance(got, DispatchFailure) else got.message
        reply = (
            got if isinstance(got, CalloutReply) or got is None else CalloutReply(got)
        )
        if reply is None:
            self._stopping.wait(HOLD_S)
            call.outcome = "timeout"
            self._recorded(call)
            return False
        if reply.latency_ms:
            self._stopping.wait(reply.latency_ms / 1000)
        if reply.message is None:
            call.outcome = "failure"
            call.delivered_ns = time.time_ns()
            self._recorded(call)
            return False
        data, keep = _message_bytes(reply.message, head=wire.start[0] == b"HEAD")
        call.response = reply.message
        call.outcome = "response"
        call.delivered_ns = time.time_ns()
        self._recorded(call)
        return _send(conn, data) and keep

    def _recorded(self, call: Callout) -> None:
        if self.record is not None:
            self.record(call)


def _message_bytes(message: HttpMessage, *, head: bool) -> tuple[bytes, bool]:
    status = message.status or 200
    fields = [(k, v) for k, v in message.headers if not k.startswith(b":")]
    start = b"HTTP/1.1 " + str(status).encode() + b" "
    no_body = head or status in (204, 304) or status < 200
    framed = _http1.has_framing(fields)
    if message.trailers and not framed and not no_body:
        fields.append((b"transfer-encoding", b"chunked"))
        framed = True
    data = _http1.encode(
        start, fields, message.body, message.trailers, send_body=not no_body
    )
    return data, no_body or framed
