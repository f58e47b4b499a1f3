"""The HTTP stream lifecycle with Envoy's filter-manager semantics.

An :class:`HttpStream` receives frames (headers, body chunks, trailers) for the
request and then the response, runs the filter's callbacks for them, and keeps
what the filter passed on. Envoy's rules, applied here:

* Pause (any stop status) on headers holds the headers and buffers the body
  without calling the filter, until the filter continues the stream; then the
  buffered body is delivered in one body callback.
* Pause on a body chunk buffers it; the next body callback sees the whole
  buffered body (its size grows), until a callback continues.
* ``proxy_continue_stream`` / ``proxy_close_stream`` / a local reply take
  effect after the callback returns.
* A local reply from the request path ends the request path; the reply then
  runs through the same filter's response callbacks. A local reply from a
  response callback replaces the response directly (no more callbacks).
* When the stream ends: ``on_log``, ``on_done``, ``on_delete`` (Envoy order;
  ``spec`` profile: done, log, delete).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from wasmkit.abi.constants import AbiVersion, StreamType
from wasmkit.errors import FilterTrapError
from wasmkit.host import connection_manager as hcm
from wasmkit.host.buffers import BodySlice, Chunk, as_bytes, grow
from wasmkit.host.callouts import Callout
from wasmkit.host.connection_manager import (
    ENVOY_DEFAULTS,
    ConnectionManager,
    UpstreamReset,
)
from wasmkit.host.context import HttpContext, LogRecord, Side, TraceEvent
from wasmkit.host.message import (
    Connection,
    HeaderPairs,
    HttpMessage,
    LocalReply,
    header_value,
    is_grpc,
    response,
)

if TYPE_CHECKING:
    from wasmkit.host.plugin import Plugin

_CALLBACKS = {
    StreamType.HTTP_REQUEST: (
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_request_trailers",
    ),
    StreamType.HTTP_RESPONSE: (
        "proxy_on_response_headers",
        "proxy_on_response_body",
        "proxy_on_response_trailers",
    ),
}

Frame = tuple[Literal["headers", "data", "trailers"], Any, bool]

_REQUEST = StreamType.HTTP_REQUEST
_RESPONSE = StreamType.HTTP_RESPONSE
_HELD = ("headers", "trailers")
_CLOSE = ("proxy_on_log", "proxy_on_done", "proxy_on_delete")
_CLOSE_SPEC = ("proxy_on_done", "proxy_on_log", "proxy_on_delete")


@dataclass(slots=True)
class StreamResult:
    """What one HTTP stream did in the filter."""

    request_before: HttpMessage
    """The request as the client sent it."""
    request_after: HttpMessage | None
    """The request as the filter passed it upstream (or left it, if held)."""
    request_forwarded: bool
    """Whether the request's headers went upstream."""
    response_before: HttpMessage | None
    """The upstream's response, ``None`` if upstream was never asked."""
    response_after: HttpMessage | None
    """The response the client received, ``None`` if none (reset, stalled)."""
    local_reply: LocalReply | None
    """The filter's local reply, if it sent one."""
    logs: list[LogRecord]
    """Log records emitted while this stream ran."""
    trace: list[TraceEvent]
    """Callbacks and host calls of this stream, in order."""
    error: FilterTrapError | None = None
    """The filter failure that ended the stream, if any."""
    stalled: str | None = None
    """Where the stream stayed paused (``request headers`` ...), if it did."""
    reset: bool = False
    """The filter closed (reset) the stream."""
    context_id: int = 0
    """The stream's context id."""
    notes: list[str] = field(default_factory=list)
    """Host remarks (e.g. a local reply that came too late)."""
    callouts: list[Callout] = field(default_factory=list)
    """HTTP callouts this stream made."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """The VM's metrics when the stream ended (see ``Metrics.table``)."""
    client_request: HttpMessage | None = None
    """The request as the client sent it (the capture), before the connection
    manager changed it into ``request_before``; ``None`` when the same."""
    upstream_request: HttpMessage | None = None
    """The request as the upstream received it: ``request_after`` with what
    the router adds; ``None`` when it never went upstream."""
    client_response: HttpMessage | None = None
    """The response as the client received it: ``response_after`` with what
    the connection manager adds (``server``, ``date``...); ``None`` if none."""
    host_changes: list[str] = field(default_factory=list)
    """What the connection manager and router changed, one line each."""
    details: str = ""
    """Envoy's response code details (``%RESPONSE_CODE_DETAILS%``) as the
    filter left them: ``via_upstream`` (the upstream answered), a local
    reply's details, ``wasm_close_stream`` (``proxy_close_stream`` on the
    request path, before any other), ``wasm_fail_stream`` (the filter
    failed), the router's ``upstream_reset_before_response_started{...}``;
    empty when none of these."""
    memory_bytes: int | None = None
    """The guest's linear memory when the stream ended (bytes), as a replay
    measures it; ``None``: not measured."""
    fuel: int | None = None
    """Fuel the stream's callbacks consumed, as a replay with
    ``Limits(fuel=...)`` measures it; ``None``: no fuel metering."""

    @property
    def ok(self) -> bool:
        """The filter ran without failing."""
        return self.error is None


class HttpStream:
    """One HTTP stream through a plugin, driven frame by frame."""

    def __init__(self, plugin: Plugin, connection: Connection | None = None) -> None:
        self.plugin = plugin
        self.connection = connection
        self.vm = plugin.vm
        self.ctx: HttpContext | None = None
        self.ended = False
        self.error: FilterTrapError | None = None
        self.reset = False
        self.stalled: str | None = None
        self.notes: list[str] = []
        self.details = ""  # Envoy's response code details, as they stand
        self.upstream_response: HttpMessage | None = None
        self.close_connection = False
        """A local reply came before the whole request was read: Envoy closes
        the connection after the response (``connection: close``)."""
        self.buffer_limit: int | None = None
        """The connection manager's buffer limit for bodies the filter holds
        (bytes); ``None``: none."""
        self._queues: dict[StreamType, list[Frame]] = {_REQUEST: [], _RESPONSE: []}
        self._log_start = len(self.vm.logs)
        self._trace_start = len(self.vm.trace)
        self._v010 = self.vm.abi_version is AbiVersion.V0_1_0
        self._bypass = False
        self._detached = False  # a failed VM: the filter is not called at all
        self._finished = False
        self._replied: LocalReply | None = None

    # -- driving ----------------------------------------------------------------

    def _context(self) -> HttpContext:
        if self.ctx is None:
            vm = self.vm
            failure = vm.failure if vm.failed is not None else None
            logs, trace = len(vm.logs), len(vm.trace)
            # A failed VM takes no stream, unless fail_reload reloads it now.
            usable = failure is None or vm.admits(self.plugin.config)
            root = self.plugin.root
            assert root is not None
            if not vm.streams:
                # The reload's start-up logs belong to this stream (Envoy).
                logs, trace = len(vm.logs) - logs, len(vm.trace) - trace
                vm.new_window()
                self._log_start = max(0, len(vm.logs) - logs)
                self._trace_start = max(0, len(vm.trace) - trace)
            # A connection of None: the default, made on demand.
            ctx = vm.open_http_context(root, self.connection, self)
            self.ctx = ctx
            if usable:
                if failure is not None:
                    self.notes.append(
                        f"fail_reload: the VM failed at {failure.where()}; it was "
                        "reloaded for this stream"
                    )
                self._call("proxy_on_context_create", (ctx.id, root.id))
            else:
                self._failed_vm(ctx)
        return self.ctx

    def _failed_vm(self, ctx: HttpContext) -> None:
        # Envoy (plugin.cc createContext): fail_open leaves the filter out of
        # the chain; otherwise an empty context answers 503 at once.
        failure = self.vm.failure
        policy = self.plugin.config.policy
        self._detached = True
        note = (
            failure.note(policy, reloading=policy == "fail_reload")
            if failure is not None
            else f"the VM failed: {policy}"
        )
        self.notes.append(note)
        if policy == "fail_open":
            self._bypass = True
            return
        if failure is not None:
            self.error = failure.stream_error(policy, reloading=policy == "fail_reload")
        self.ended = True
        self._fail_reply(ctx)

    def send(self, stream_type: StreamType, frame: Frame) -> None:
        """Deliver one frame of the request or the response."""
        kind, payload, eos = frame
        if kind != "data":
            payload = list(payload)  # the stream keeps its own copy
        elif type(payload) is not bytes:
            payload = bytes(payload)  # held by reference from here on
        self._send(stream_type, (kind, payload, eos))

    def _send(self, stream_type: StreamType, frame: Frame) -> None:
        # Header and trailer payloads are the stream's own lists from here on.
        ctx = self.ctx
        if ctx is None:
            ctx = self._context()
        side = ctx.request if stream_type is _REQUEST else ctx.response
        if self.ended:
            # Past the end the client's message is still what it sent.
            if stream_type is _REQUEST and not self._finished:
                self._keep_before(side, frame)
            return
        queue = self._queues[stream_type]
        queue.append(frame)
        limit = self.buffer_limit
        if (
            limit is not None
            and frame[0] == "data"
            and side.stopped in _HELD
            and len(side.held) + sum(len(f[1]) for f in queue if f[0] == "data") > limit
        ):
            # Envoy buffers the body of headers the filter holds, up to the
            # buffer limit.
            self._too_large(side)
            return
        self._pump(side)

    def _keep_before(self, side: Side, frame: Frame) -> None:
        kind, payload, eos = frame
        if kind == "headers":
            if side.before is None:
                side.before = HttpMessage(payload)
        else:
            self._receive(side, kind, payload, eos)

    def request_headers(self, headers: HeaderPairs, end_of_stream: bool) -> None:
        """The client's request headers arrive."""
        self.send(StreamType.HTTP_REQUEST, ("headers", headers, end_of_stream))

    def request_body(self, chunk: bytes, end_of_stream: bool) -> None:
        """A chunk of the request body arrives."""
        self.send(StreamType.HTTP_REQUEST, ("data", chunk, end_of_stream))

    def request_trailers(self, trailers: HeaderPairs) -> None:
        """The request's trailers arrive (ending it)."""
        self.send(StreamType.HTTP_REQUEST, ("trailers", trailers, True))

    def response_headers(self, headers: HeaderPairs, end_of_stream: bool) -> None:
        """The upstream's response headers arrive."""
        self.send(StreamType.HTTP_RESPONSE, ("headers", headers, end_of_stream))

    def response_body(self, chunk: bytes, end_of_stream: bool) -> None:
        """A chunk of the response body arrives."""
        self.send(StreamType.HTTP_RESPONSE, ("data", chunk, end_of_stream))

    def response_trailers(self, trailers: HeaderPairs) -> None:
        """The response's trailers arrive."""
        self.send(StreamType.HTTP_RESPONSE, ("trailers", trailers, True))

    def send_message(
        self,
        stream_type: StreamType,
        message: HttpMessage,
        chunk_size: int | None = None,
        *,
        owned: bool = False,
        end_frame: bool = False,
    ) -> None:
        """Deliver a whole message: headers, body in chunks, trailers.

        ``owned``: nobody changes ``message`` afterwards, so its header list
        may become the stream's "before" state without a copy. ``end_frame``:
        a body without trailers ends with an empty data frame carrying
        ``end_of_stream``, as Envoy's HTTP/1 codec delivers it
        (:attr:`ConnectionManager.http1_codec_end_frame`). The body is never
        copied: chunks are :class:`~wasmkit.host.buffers.BodySlice` views of it.
        """
        body = message.body
        if type(body) is not bytes:
            body = bytes(body)
        trailers = message.trailers
        has_trailers = trailers is not None
        send = self._send
        headers = message.headers if owned else list(message.headers)
        send(stream_type, ("headers", headers, not body and not has_trailers))
        if body:
            size = len(body)
            split = end_frame and not has_trailers
            if not chunk_size or chunk_size >= size:
                send(stream_type, ("data", body, not has_trailers and not split))
            else:
                for pos in range(0, size, chunk_size):
                    last = pos + chunk_size >= size
                    send(
                        stream_type,
                        (
                            "data",
                            BodySlice(body, pos, min(pos + chunk_size, size)),
                            last and not has_trailers and not split,
                        ),
                    )
            if split:
                send(stream_type, ("data", b"", True))
        if trailers is not None:
            send(stream_type, ("trailers", list(trailers), True))

    def _grpc(self) -> bool:
        return self.ctx is not None and is_grpc(self.ctx.request.headers)

    def _side(self, stream_type: StreamType) -> Side:
        return self._context().side(stream_type)

    def request_complete(self) -> bool:
        """Whether the whole request went upstream."""
        return self.ctx is not None and self.ctx.request.complete

    def response_complete(self) -> bool:
        """Whether the whole response went to the client."""
        return self.ctx is not None and self.ctx.response.complete

    # -- the pump ---------------------------------------------------------------

    def _pump(self, side: Side) -> None:
        queue = self._queues[side.stream_type]
        while queue and not self.ended and side.stopped not in _HELD:
            kind, payload, eos = queue.pop(0)
            if kind == "headers":
                self._on_headers(side, payload, eos)
            elif kind == "data":
                self._on_data(side, payload, eos)
            else:
                self._on_trailers(side, payload)
        if (
            not queue
            and self.ended is False
            and side.end_received
            and side.stopped is None
            and side.forwarded_headers is not None
            and not (side.held.size or side.held.data)
            and (not side.trailers_received or side.forwarded_trailers is not None)
        ):
            side.complete = True  # as _check_complete

    def _receive(self, side: Side, kind: str, payload: Any, eos: bool) -> None:
        before = side.before
        if before is None:
            before = side.before = HttpMessage([])
        if kind == "data":
            before.body = grow(before.body, payload)  # type: ignore[assignment]
        elif kind == "trailers":
            before.trailers = list(payload)
            side.trailers_received = True
        if eos:
            side.end_received = True

    def _on_headers(self, side: Side, headers: HeaderPairs, eos: bool) -> None:
        # ``headers`` is the stream's own list: it becomes the "before" state.
        side.before = HttpMessage(headers)
        side.headers = list(headers)
        if eos:
            side.end_received = True
        side.headers_seen = True
        if side.stream_type is _RESPONSE and self._replied is None and not self.details:
            self.details = "via_upstream"  # the router's, on upstream headers
        if self._bypass:
            self._forward_headers(side)
            return
        cb = _CALLBACKS[side.stream_type][0]
        ctx = self.ctx
        assert ctx is not None
        args: tuple[int, ...] = (
            (ctx.id, len(headers)) if self._v010 else (ctx.id, len(headers), int(eos))
        )
        status = self._call(cb, args, side=side)
        if status is None or self.ended:
            if status is None and not self.ended:
                self._forward_headers(side)
            return
        if status == 0:
            if side.forwarded_headers is None:  # as _forward_headers
                side.forwarded_headers = list(side.headers)
        elif status == 2:  # ContinueAndEndStream
            self._forward_headers(side)
            side.end_received = True
            self._queues[side.stream_type].clear()
        elif status == 1 and self.plugin.config.allow_on_headers_stop_iteration:
            side.stopped = "headers-only"
        else:
            side.stopped = "headers"
        self._after_callback(side)

    def _on_data(self, side: Side, chunk: Chunk, eos: bool) -> None:
        before = side.before
        if before is None:
            before = side.before = HttpMessage([])
        if chunk:
            # References only: the frame is held, not copied.
            if not before.body and type(chunk) is bytes:
                before.body = chunk  # a body in one frame (grow's first case)
            else:
                before.body = grow(before.body, chunk)  # type: ignore[assignment]
            side.held.append(chunk)
            side.received.append(chunk)
        if eos:
            side.end_received = True
        if self._bypass:
            self._forward_body(side)
            return
        self._deliver_body(side, eos)

    def _deliver_body(self, side: Side, eos: bool) -> None:
        cb = _CALLBACKS[side.stream_type][1]
        ctx = self.ctx
        assert ctx is not None
        side.in_body_callback = True
        side.body_eos = eos
        try:
            status = self._call(cb, (ctx.id, len(side.held), int(eos)), side=side)
        finally:
            side.in_body_callback = False
            side.body_eos = False
        if self.ended:
            return
        if status is None or status == 0:
            if side.stopped in ("headers-only", "body"):
                side.stopped = None
            if side.stopped is None:
                self._forward_body(side)
            if status is None:
                return
        elif side.stopped != "headers-only":
            side.stopped = "body"
            limit = self.buffer_limit
            if limit is not None and len(side.held) > limit:
                self._too_large(side)
                return
        self._after_callback(side)

    def _too_large(self, side: Side) -> None:
        # Envoy's filter manager (requestDataTooLarge / responseDataTooLarge):
        # a body buffered past the buffer limit ends the stream.
        limit = self.buffer_limit
        ctx = self.ctx
        assert ctx is not None
        if side.stream_type is _REQUEST:
            self.notes.append(
                f"the filter buffered more than {limit} bytes of the request: "
                "Envoy answers 413 (request_payload_too_large)"
            )
            self.close_connection = True
            self._local_reply(
                LocalReply(
                    413, body=b"Payload Too Large", details="request_payload_too_large"
                )
            )
        elif ctx.response.forwarded_headers is not None:
            self.notes.append(
                f"the filter buffered more than {limit} bytes of the response after "
                "its headers went out: Envoy resets the stream"
            )
            self.reset = True
            self.ended = True
        else:
            self.notes.append(
                f"the filter buffered more than {limit} bytes of the response: "
                "Envoy answers 500 (response_payload_too_large)"
            )
            self._local_reply(
                LocalReply(
                    500,
                    body=b"Internal Server Error",
                    details="response_payload_too_large",
                )
            )

    def _on_trailers(self, side: Side, trailers: HeaderPairs) -> None:
        self._receive(side, "trailers", trailers, True)
        side.trailers = list(trailers)
        if self._bypass:
            self._forward_body(side)
            self._forward_trailers(side)
            return
        cb = _CALLBACKS[side.stream_type][2]
        ctx = self.ctx
        assert ctx is not None
        side.trailers_called = True
        status = self._call(cb, (ctx.id, len(trailers)), side=side)
        if self.ended:
            return
        if not status:
            if side.stopped in ("body", "headers-only"):
                side.stopped = None
            if side.forwarded_headers is None:
                self._forward_headers(side)
            self._forward_body(side)
            self._forward_trailers(side)
            if status is None:
                return
        else:
            side.stopped = "trailers"
        self._after_callback(side)

    # -- forwarding ----------------------------------------------------------------

    def _forward_headers(self, side: Side) -> None:
        if side.forwarded_headers is None and side.headers is not None:
            side.forwarded_headers = list(side.headers)

    def _forward_body(self, side: Side) -> None:
        if side.forwarded_headers is None:
            self._forward_headers(side)
        side.forwarded += side.held.take()  # handed over, not copied

    def _forward_trailers(self, side: Side) -> None:
        if side.trailers is not None:
            side.forwarded_trailers = list(side.trailers)

    def _check_complete(self, side: Side) -> None:
        if (
            side.end_received
            and side.stopped is None
            and side.forwarded_headers is not None
            and not (side.held.size or side.held.data)
            and (not side.trailers_received or side.forwarded_trailers is not None)
        ):
            side.complete = True

    # -- after a callback: deferred actions -------------------------------------------

    def _after_callback(self, side: Side | None = None) -> None:
        ctx = self.ctx
        if ctx is not None and (
            ctx.local_reply is not None or ctx.pending_close or ctx.pending_continue
        ):
            self._apply_pending()
        # The filter may have acted on other streams (set_effective_context).
        streams = self.vm.streams
        if len(streams) > 1:
            for other in list(streams.values()):
                if other is not self:
                    other._apply_pending()
        # Replies and notifications due now arrive after the VM call.
        self.vm.events.run_due()

    def _apply_pending(self) -> None:
        ctx = self.ctx
        if ctx is None or self._finished:
            return
        if (
            ctx.local_reply is not None
            and not self.ended
            and (self._replied is not ctx.local_reply)
        ):
            self._replied = ctx.local_reply
            self._local_reply(ctx.local_reply)
            return
        if ctx.pending_close:
            closed = list(ctx.pending_close)
            ctx.pending_close.clear()
            self.reset = True
            self.notes.append(f"the filter closed the stream in {ctx.callback}")
            self.ended = True
            if closed and not self.details:
                # Envoy's closeStream sets these details unless set already.
                self.details = "wasm_close_stream"
            if ctx.callback == "proxy_on_request_headers":
                # The reset follows the VM call, before the router sees the
                # headers the callback let through.
                ctx.request.forwarded_headers = None
            return
        while ctx.pending_continue:
            stream_type = ctx.pending_continue.pop(0)
            self._resume(ctx.side(stream_type))

    def _resume(self, side: Side) -> None:
        was, side.stopped = side.stopped, None
        if was in ("headers", "headers-only"):
            self._forward_headers(side)
            queue = self._queues[side.stream_type]
            data = [f for f in queue if f[0] == "data"]
            if data or side.held:
                # Envoy hands the body buffered during the stop to the filter at once.
                queue[:] = [f for f in queue if f[0] != "data"]
                for _, chunk, _eos in data:
                    self._receive(side, "data", chunk, False)
                    if chunk:
                        side.held.append(chunk)
                        side.received.append(chunk)
                eos = (
                    side.end_received
                    and not side.trailers_received
                    and not any(f[0] == "trailers" for f in queue)
                )
                if data and data[-1][2]:
                    side.end_received = True
                    eos = True
                self._deliver_body(side, eos)
        elif was == "body":
            self._forward_body(side)
        elif was == "trailers":
            self._forward_body(side)
            self._forward_trailers(side)
        self._pump(side)

    def _head(self) -> bool:
        # Envoy's is_head_request_: the method as the request arrived.
        ctx = self.ctx
        before = ctx.request.before if ctx is not None else None
        return before is not None and header_value(before.headers, b":method") == (
            b"HEAD"
        )

    def _local_reply(self, reply: LocalReply) -> None:
        ctx = self._context()
        self.details = reply.details  # sendLocalReply sets them
        response_side = ctx.response
        queue = self._queues[StreamType.HTTP_REQUEST]
        if not ctx.request.end_received and not any(f[2] for f in queue):
            # conn_manager_impl.cc: the rest of the request is never read.
            self.close_connection = True
        queue.clear()
        head = self._head()
        if not response_side.headers_seen:
            # Envoy sends the reply through the filter's response callbacks
            # (a HEAD request's without its body).
            ctx.request.stopped = None
            self.send_message(
                StreamType.HTTP_RESPONSE, reply.to_message(grpc=self._grpc(), head=head)
            )
            self.ended = True
        elif response_side.forwarded_headers is None:
            message = reply.to_message(grpc=self._grpc(), head=head)
            response_side.headers = list(message.headers)
            response_side.forwarded_headers = list(message.headers)
            response_side.held.clear()
            response_side.forwarded = [message.body] if message.body else []
            response_side.trailers = None
            response_side.forwarded_trailers = None
            response_side.stopped = None
            response_side.complete = True
            self._queues[StreamType.HTTP_RESPONSE].clear()
            self.ended = True
        else:
            self.notes.append(
                f"local reply from {reply.callback} after the response headers were "
                "sent: the stream is reset"
            )
            self.reset = True
            self.ended = True

    # -- calls ------------------------------------------------------------------

    def _call(
        self, name: str, args: tuple[int, ...], side: Side | None = None
    ) -> int | None:
        ctx = self.ctx
        assert ctx is not None
        ctx.callback = name
        if self.vm.failed is not None:
            # Another stream broke the instance: Envoy (CHECK_FAIL_HTTP, before
            # it looks for the callback) fails this one too.
            failure = self.vm.failure
            policy = self.plugin.config.policy
            self._fail(
                failure.stream_error(policy) if failure is not None else self.vm.failed
            )
            return None
        if name not in self.vm.exported:
            return None  # as in cpp-host: nothing to call, the stream goes on
        try:
            status = self.vm.invoke(name, args, ctx)
        except FilterTrapError as exc:
            self._fail(exc)
            return None
        reply = ctx.local_reply
        if reply is not None and reply is not self._replied:
            return 1  # Envoy stops iteration when the callback sent a local reply
        return status

    def _fail(self, exc: FilterTrapError) -> None:
        # Reported, not raised: without its traceback the error holds no
        # frame of this stream (no reference cycle outliving the stream).
        exc.__traceback__ = None
        self.error = exc
        ctx = self.ctx
        assert ctx is not None
        config = self.plugin.config
        if config.fail_open:
            # Envoy's deprecated fail_open: true: traffic goes on as if the
            # filter were not there, this stream included.
            self._bypass = True
            self.notes.append(
                "fail_open (deprecated fail_open: true): the stream goes on "
                "without the filter, and so do later ones"
            )
            for side in (ctx.request, ctx.response):
                side.stopped = None
                self._pump(side)
            return
        self.ended = True
        if self._fail_reply(ctx):
            later = {
                "fail_closed": "the VM stays failed: later streams get the same 503",
                "fail_open": "later streams skip the filter",
                "fail_reload": "a later stream reloads the VM once "
                f"{config.reload_backoff_ms} ms or more passed since it was "
                "last loaded",
            }[config.policy]
            self.notes.append(
                f"{config.policy}: the client gets 503 (wasm_fail_stream); {later}"
            )

    def _fail_reply(self, ctx: HttpContext) -> bool:
        # Envoy's failStream: a 503 local reply while the response headers
        # have not gone to the client, else a reset.
        response_side = ctx.response
        self.details = "wasm_fail_stream"
        if response_side.forwarded_headers is None:
            reply = LocalReply(503, details="wasm_fail_stream", grpc_status=14)
            message = reply.to_message(grpc=self._grpc())
            response_side.headers = list(message.headers)
            response_side.forwarded_headers = list(message.headers)
            response_side.forwarded = []
            response_side.held.clear()
            response_side.complete = True
            return True
        self.reset = True
        return False

    # -- the end ----------------------------------------------------------------

    def finish(self) -> StreamResult:
        """End the stream (log, done, delete) and report what happened."""
        if self._finished:
            raise RuntimeError("stream already finished")
        self._finished = True
        ctx = self._context()
        vm = self.vm
        request, response_side = ctx.request, ctx.response
        if self.stalled is None and not self.ended:
            for side, label in ((request, "request"), (response_side, "response")):
                if side.stopped is not None and side.headers is not None:
                    where = (
                        "headers" if side.stopped == "headers-only" else side.stopped
                    )
                    self.stalled = f"{label} {where}"
                    break
        if self.error is None and not self._detached and vm.failed is None:
            invoke = vm.invoke
            exported = vm.exported
            for name in _CLOSE_SPEC if vm.profile == "spec" else _CLOSE:
                if name not in exported:
                    continue  # not exported: nothing to run (as in cpp-host)
                ctx.in_log = name == "proxy_on_log"
                ctx.callback = name
                try:
                    invoke(name, (ctx.id,), ctx)
                except FilterTrapError as exc:
                    exc.__traceback__ = None
                    self.error = exc
                    break
                finally:
                    ctx.in_log = False
        vm.contexts.pop(ctx.id, None)
        vm.streams.pop(ctx.id, None)
        for side in (request, response_side):
            if side.before is not None and type(side.before.body) is not bytes:
                # A body cut off part way: the view becomes the bytes that came.
                side.before.body = as_bytes(side.before.body)
        request_before = request.before or HttpMessage([])
        response_after = None
        if response_side.forwarded_headers is not None and not self.reset:
            response_after = _final(response_side, self.upstream_response)
        dropped = vm.budget.note(vm.limits)
        if dropped:
            self.notes.append(dropped)
        logs = vm.logs[self._log_start :]
        trace = vm.trace[self._trace_start :]
        if not vm.streams:
            # The records now live in the result; keep the VM's lists short.
            del vm.logs[self._log_start :]
            del vm.trace[self._trace_start :]
            vm.new_window()
        callouts = vm.callouts
        return StreamResult(
            request_before,
            _final(request, request_before),
            request.forwarded_headers is not None,
            self.upstream_response,
            response_after,
            ctx.local_reply,
            logs,
            trace,
            self.error,
            self.stalled,
            self.reset,
            ctx.id,
            self.notes,
            [c for c in callouts if c.context_id == ctx.id] if callouts else [],
            vm.metrics.table(),
            details=self.details,
        )


def _reset_details(reason: str) -> str:
    # router.cc: the reset reason, then the transport failure (a refused
    # connection's, measured), whitespace as "_".
    if reason == hcm.REFUSED_REASON:
        reason += "|delayed connect error: Connection refused"
    return "upstream_reset_before_response_started{" + reason.replace(" ", "_") + "}"


def _final(side: Side, before: HttpMessage | None) -> HttpMessage | None:
    # Side.after() for a finished stream: its lists are no longer changed, so
    # they are handed over without copies, and an unchanged body is the
    # "before" message's own object.
    headers = side.headers
    if headers is None:
        return None
    forwarded = side.forwarded_headers
    if forwarded is not None:
        headers = forwarded
    trailers = side.forwarded_trailers
    if trailers is None:
        trailers = side.trailers
    body = side.body_after()
    if before is not None and body is not before.body and body == before.body:
        body = before.body
    return HttpMessage(headers, body, trailers)


def run_exchange(
    plugin: Plugin,
    request: HttpMessage,
    upstream: HttpMessage
    | Callable[[HttpMessage], HttpMessage | UpstreamReset]
    | UpstreamReset
    | None,
    *,
    chunk_size: int | None = None,
    wait_ms: float = 15_000,
    connection: Connection | None = None,
    owned: bool = False,
    connection_manager: ConnectionManager | None = ENVOY_DEFAULTS,
    request_id: Callable[[], bytes] | None = None,
) -> StreamResult:
    """Run a whole exchange through ``plugin`` (see :meth:`Plugin.run_http`).

    ``owned``: the request and the upstream's answers are fresh messages
    nobody else changes, so the result may keep them without defensive copies
    (the replay engine). ``connection_manager``: what Envoy's connection
    manager and router do around the filter (:mod:`wasmkit.host.connection_manager`);
    ``None`` hands the filter the request as given and the client the
    filter's response as it is. ``request_id`` makes the ``x-request-id``
    the connection manager adds (default: the next draw of the VM's seeded
    generator).
    """
    cm = connection_manager
    vm = plugin.vm
    changes: list[str] = []
    client_request = request
    if cm is not None:
        new_id = request_id or (lambda: hcm.request_id(vm.request_ids))
        request = hcm.request_to_filter(cm, request, connection, new_id, changes)
        owned_request = True
    else:
        owned_request = owned
    request_changes = len(changes)
    stream = HttpStream(plugin, connection)
    if cm is not None:
        stream.buffer_limit = cm.per_connection_buffer_limit_bytes
    events = vm.events
    # Envoy's HTTP/1 codec ends the client's and the upstream's bodies with an
    # empty end_of_stream frame; the replies Envoy makes itself have none.
    end_frame = cm is not None and cm.http1_codec_end_frame
    stream.send_message(
        _REQUEST, request, chunk_size, owned=owned_request, end_frame=end_frame
    )

    # A paused request may be waiting on a callout or a tick: let time pass.
    def request_done() -> bool:
        return stream.ended or stream.request_complete()

    if not request_done():
        events.wait(wait_ms, request_done)
    asked = False  # the request reached the upstream
    upstream_changes: list[str] = []
    router_changes: list[str] = []
    if not stream.ended and stream.request_complete():
        asked = True
        answer: HttpMessage | UpstreamReset
        if upstream is None:
            answer = response(200)
        elif callable(upstream):
            side = stream._side(_REQUEST)
            # An upstream that ignores the request (the replay's recorded
            # responses) is spared the copy.
            forwarded = (
                side.after() if getattr(upstream, "reads_request", True) else None
            )
            sent = forwarded or side.before or HttpMessage([])
            if cm is not None and forwarded is not None:
                sent = hcm.request_to_upstream(cm, sent, [])
            answer = upstream(sent)
        else:
            answer = upstream
        codec = end_frame
        if isinstance(answer, UpstreamReset):
            codec = False
            # A refused connection carried nothing to the upstream.
            asked = answer.reason != hcm.REFUSED_REASON
            # The router's own 503 goes through the filter's response path.
            stream.details = _reset_details(answer.reason)
            message = hcm.router_reply(
                answer.reason, grpc=stream._grpc(), head=stream._head()
            )
            router_changes.append(
                f"response: the router answered 503 (upstream reset: {answer.reason})"
            )
        else:
            message = answer if owned else answer.copy()
            if cm is not None:
                message = hcm.response_to_filter(cm, message, router_changes)
        stream.upstream_response = message
        fresh = owned or cm is not None
        stream.send_message(
            _RESPONSE, message, chunk_size, owned=fresh, end_frame=codec
        )

        def response_done() -> bool:
            return stream.ended or stream.response_complete()

        if not response_done():
            events.wait(wait_ms, response_done)
    result = stream.finish()
    if cm is None:
        return result
    result.client_request = client_request
    if asked and result.request_after is not None:
        result.upstream_request = hcm.request_to_upstream(
            cm, result.request_after, upstream_changes
        )
    client_changes: list[str] = []
    if result.response_after is not None:
        result.client_response = hcm.response_to_client(
            cm,
            result.response_after,
            result.request_before,
            client_changes,
            date=hcm.http_date(vm.clock.now_ns()),
            close=stream.close_connection or hcm.client_closes(client_request),
        )
    result.host_changes = changes + upstream_changes + router_changes + client_changes
    if vm.tracing:
        _trace_changes(
            result,
            changes[:request_changes],
            upstream_changes + router_changes,
            client_changes,
        )
    return result


def _trace_changes(
    result: StreamResult,
    request: list[str],
    upstream: list[str],
    client: list[str],
) -> None:
    # The connection manager's changes in the trace, marked as the host's:
    # the request's before the first callback, the router's before the
    # response callbacks, the client's before the stream's end.
    def events(name: str, lines: list[str]) -> list[TraceEvent]:
        return [
            TraceEvent("host", name, result.context_id, {"change": line}, None, 0)
            for line in lines
        ]

    trace = result.trace
    names = [t.name for t in trace]
    end = next(
        (i for i, n in enumerate(names) if n in _CLOSE),
        len(trace),
    )
    response_at = next(
        (i for i, n in enumerate(names) if n.startswith("proxy_on_response_")),
        end,
    )
    trace[end:end] = events("connection_manager", client)
    trace[response_at:response_at] = events("router", upstream)
    trace[0:0] = events("connection_manager", request)
