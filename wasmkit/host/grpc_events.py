"""The gRPC calls and streams of one VM: tokens, deliveries, cancellation.

The data types and responders are in :mod:`wasmkit.host.grpc`, which also
describes the order in which answers reach the filter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasmkit.abi.constants import WasmResult
from wasmkit.host.context import Context, RootContext
from wasmkit.host.grpc import (
    TIMEOUT_MESSAGE,
    GrpcCall,
    GrpcReply,
    GrpcRequest,
    GrpcResponder,
    GrpcStatus,
    GrpcTableResponder,
    Kind,
    as_reply,
    parse_grpc_service,
)
from wasmkit.host.message import HeaderPairs

if TYPE_CHECKING:
    from wasmkit.host.events import VmEvents

_RESPONSE_HEADERS: HeaderPairs = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
]

_Live = tuple[GrpcCall, RootContext, int]


class GrpcCallouts:
    """The gRPC calls and streams of one VM, answered by its gRPC responder.

    Args:
        events: the VM's events (clock, scheduler, clusters, root callbacks).
    """

    def __init__(self, events: VmEvents) -> None:
        self.events = events
        self.responder: GrpcResponder | None = None
        self.calls: list[GrpcCall] = []
        self.message: bytes | None = None
        """Buffer 5 while ``proxy_on_grpc_receive`` runs."""
        self._maps: dict[int, HeaderPairs] = {}
        self._next = {"call": 1, "stream": 2}
        self._live: dict[int, _Live] = {}
        self._due: dict[int, int] = {}

    def metadata(self, map_type: int) -> HeaderPairs | None:
        """Map 4 or 5 while its callback runs."""
        return self._maps.get(map_type)

    def known(self, cluster: str) -> bool:
        """Whether the cluster exists.

        One named (``clusters=``), a callout table's or the gRPC table's; a
        function responder adds none.
        """
        if cluster in self.events.clusters:
            return True
        responder = self.responder
        return isinstance(responder, GrpcTableResponder) and (
            cluster in responder.clusters
        )

    def resolve(self, upstream: bytes) -> str | WasmResult:
        """The upstream's name, or the status Envoy answers for it."""
        target = parse_grpc_service(upstream)
        if target is None:
            name = upstream.decode("utf-8", "replace")
            return name if self.known(name) else WasmResult.PARSE_FAILURE
        kind, name = target
        if kind == "google":
            return name  # Google gRPC dials the target itself
        if kind == "envoy":
            # Envoy skips the cluster check, then fails to start the request.
            return name if self.known(name) else WasmResult.INTERNAL_FAILURE
        return WasmResult.BAD_ARGUMENT  # Envoy cannot build a client for it

    # -- the filter's side ----------------------------------------------------------

    def call(
        self,
        ctx: Context,
        upstream: bytes,
        service: str,
        method: str,
        metadata: HeaderPairs,
        message: bytes,
        timeout_ms: int,
    ) -> tuple[WasmResult, int]:
        """Start a unary call; the answer comes later through the root context."""
        opened = self._open(ctx, "call", upstream, service, method, metadata)
        if isinstance(opened, WasmResult):
            return opened, 0
        call, root = opened
        call.timeout_ms = timeout_ms
        call.sent.append(message)
        self._ask(call, root, message, end_stream=True)
        if timeout_ms > 0:
            generation = self.events.generation

            def expire() -> None:
                if self._alive(call, generation):
                    status = GrpcStatus.DEADLINE_EXCEEDED
                    self._close(call, root, status, TIMEOUT_MESSAGE, "timeout")

            self.events.scheduler.after(timeout_ms, expire)
        return WasmResult.OK, call.token

    def stream(
        self,
        ctx: Context,
        upstream: bytes,
        service: str,
        method: str,
        metadata: HeaderPairs,
    ) -> tuple[WasmResult, int]:
        """Open a stream; messages go with :meth:`send`."""
        opened = self._open(ctx, "stream", upstream, service, method, metadata)
        if isinstance(opened, WasmResult):
            return opened, 0
        return WasmResult.OK, opened[0].token

    def send(
        self, ctx: Context, token: int, message: bytes, end_stream: bool
    ) -> WasmResult:
        """Send a message on a stream (``BAD_ARGUMENT`` for other tokens)."""
        if token & 3 != 2:
            return WasmResult.BAD_ARGUMENT
        live = self._find(ctx, token)
        if live is None:
            return WasmResult.NOT_FOUND
        call, root, _ = live
        if call.local_closed or call.remote_closed:
            return WasmResult.OK  # Envoy answers OK; the message goes nowhere
        call.sent.append(message)
        call.local_closed = end_stream
        self._ask(call, root, message, end_stream)
        return WasmResult.OK

    def close(self, ctx: Context, token: int) -> WasmResult:
        """Cancel a call, or half-close a stream (answers still arrive)."""
        live = self._lookup(ctx, token)
        if isinstance(live, WasmResult):
            return live
        call, root, _ = live
        if call.kind == "call":
            self._cancel(call)
        elif call.remote_closed:
            self._forget(call)
        elif not call.local_closed:
            call.local_closed = True
            self._ask(call, root, None, end_stream=True)
        return WasmResult.OK

    def cancel(self, ctx: Context, token: int) -> WasmResult:
        """Reset a call or stream: no callbacks for it afterwards."""
        live = self._lookup(ctx, token)
        if isinstance(live, WasmResult):
            return live
        self._cancel(live[0])
        return WasmResult.OK

    # -- plumbing -------------------------------------------------------------------

    def _open(
        self,
        ctx: Context,
        kind: Kind,
        upstream: bytes,
        service: str,
        method: str,
        metadata: HeaderPairs,
    ) -> tuple[GrpcCall, RootContext] | WasmResult:
        cluster = self.resolve(upstream)
        if isinstance(cluster, WasmResult):
            if cluster == WasmResult.PARSE_FAILURE:
                # Not a GrpcService, and no cluster has that name (Envoy's
                # test "bogus grpc_service").
                name = upstream.decode("utf-8", "replace")
                self.events.unknown_cluster(ctx, f"proxy_grpc_{kind}", name)
            return cluster
        root = ctx.root
        if root is None:
            return WasmResult.BAD_ARGUMENT
        self._next[kind] += 4
        call = GrpcCall(
            token=self._next[kind],
            kind=kind,
            context_id=ctx.id,
            root_id=root.id,
            cluster=cluster,
            service=service,
            method=method,
            metadata=metadata,
            timeout_ms=0,
            sent_ns=self.events.vm.clock.now_ns(),
        )
        self.calls.append(call)
        self._live[call.token] = (call, root, self.events.generation)
        return call, root

    def _find(self, ctx: Context, token: int) -> _Live | None:
        live = self._live.get(token)
        if live is None or live[2] != self.events.generation or live[1] is not ctx.root:
            return None  # tokens belong to the root context that made the call
        return live

    def _lookup(self, ctx: Context, token: int) -> _Live | WasmResult:
        if token & 3 not in (1, 2):
            return WasmResult.BAD_ARGUMENT
        live = self._find(ctx, token)
        return WasmResult.NOT_FOUND if live is None else live

    def _alive(self, call: GrpcCall, generation: int | None = None) -> bool:
        live = self._live.get(call.token)
        return (
            live is not None
            and live[0] is call
            and not call.remote_closed
            and (generation is None or generation == self.events.generation)
        )

    def _forget(self, call: GrpcCall) -> None:
        live = self._live.get(call.token)
        if live is not None and live[0] is call:
            del self._live[call.token]
            self._due.pop(call.token, None)

    def _cancel(self, call: GrpcCall) -> None:
        if call.outcome == "pending":
            call.outcome = "cancelled"
            call.closed_ns = self.events.vm.clock.now_ns()
        self._forget(call)

    def _ask(
        self, call: GrpcCall, root: RootContext, message: bytes | None, end_stream: bool
    ) -> None:
        responder = self.responder
        if responder is None:
            return
        index = len(call.sent) - 1 if message is not None else len(call.sent)
        request = GrpcRequest(
            call.token,
            call.kind,
            call.cluster,
            call.service,
            call.method,
            call.metadata,
            message,
            end_stream,
            index,
        )
        reply = as_reply(responder(request))
        if reply is None:
            return
        if call.timeout_ms and reply.latency_ms >= call.timeout_ms:
            return  # the timeout comes first
        generation = self.events.generation

        def deliver() -> None:
            if self._alive(call, generation):
                self._deliver(call, root, reply)

        scheduler = self.events.scheduler
        due = scheduler.clock.now_ns() + int(reply.latency_ms * 1_000_000)
        # One HTTP/2 stream: a server's answers arrive in the order it gave them.
        due = max(due, self._due.get(call.token, 0))
        self._due[call.token] = due
        scheduler.at(due, deliver)

    def _deliver(self, call: GrpcCall, root: RootContext, reply: GrpcReply) -> None:
        status = reply.status
        if call.kind == "call":
            status = GrpcStatus.OK if status is None else status
            if self.events.vm.profile == "envoy":
                self._deliver_unary(call, root, reply, status)
                return
        if not call.initial_delivered and (
            reply.messages or (status is None and reply.initial_metadata)
        ):
            call.initial_delivered = True
            headers = _RESPONSE_HEADERS + list(reply.initial_metadata)
            self._callback(call, root, "initial_metadata", headers)
        for message in reply.messages:
            if not self._alive(call):
                return
            self._receive(call, root, message)
        if status is None or not self._alive(call):
            return
        trailers = _status_trailers(status, reply.status_message)
        trailers += reply.trailing_metadata
        if not call.initial_delivered:
            # A trailers-only response: Envoy hands over empty initial metadata
            # and puts the headers into the trailing metadata.
            call.initial_delivered = True
            self._callback(call, root, "initial_metadata", [])
            trailers = _RESPONSE_HEADERS + list(reply.initial_metadata) + trailers
            if not self._alive(call):
                return
        self._callback(call, root, "trailing_metadata", trailers)
        if self._alive(call):
            self._close(call, root, status, reply.status_message)

    def _deliver_unary(
        self, call: GrpcCall, root: RootContext, reply: GrpcReply, status: int
    ) -> None:
        if status != GrpcStatus.OK:
            self._close(call, root, status, reply.status_message)
        elif not reply.messages:
            # Envoy's unary client: an OK without a response is an error.
            self._close(call, root, GrpcStatus.INTERNAL, "")
        else:
            self._end(call, GrpcStatus.OK, "", "ok")
            try:
                self._receive(call, root, reply.messages[-1])
            finally:
                self._forget(call)

    def _end(self, call: GrpcCall, status: int, message: str, outcome: str) -> None:
        call.remote_closed = True
        call.status = int(status)
        call.status_message = message
        call.outcome = outcome
        call.closed_ns = self.events.vm.clock.now_ns()

    def _receive(self, call: GrpcCall, root: RootContext, message: bytes) -> None:
        call.received.append(message)
        self.message = message
        try:
            self.events.call_root(
                "proxy_on_grpc_receive", (root.id, call.token, len(message)), root
            )
        finally:
            self.message = None

    def _callback(
        self, call: GrpcCall, root: RootContext, which: str, metadata: HeaderPairs
    ) -> None:
        map_type = 4 if which == "initial_metadata" else 5
        self._maps[map_type] = metadata
        try:
            self.events.call_root(
                f"proxy_on_grpc_receive_{which}",
                (root.id, call.token, len(metadata)),
                root,
            )
        finally:
            del self._maps[map_type]

    def _close(
        self,
        call: GrpcCall,
        root: RootContext,
        status: int,
        message: str,
        outcome: str | None = None,
    ) -> None:
        status = int(status)
        self._end(call, status, message, outcome or ("ok" if status == 0 else "error"))
        root.last_status = (status, message.encode())
        try:
            self.events.call_root(
                "proxy_on_grpc_close", (root.id, call.token, status), root
            )
        finally:
            # Envoy clears the message after the callback; the code stays.
            root.last_status = (status, b"")
            if call.kind == "call" or call.local_closed:
                self._forget(call)


def _status_trailers(status: int, message: str) -> HeaderPairs:
    trailers = [(b"grpc-status", str(status).encode())]
    if message:
        trailers.append((b"grpc-message", message.encode()))
    return trailers
