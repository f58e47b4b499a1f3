"""TCP connections through a network filter, with Envoy's semantics.

A :class:`TcpStream` is one downstream connection through the filter. Envoy's
rules (``source/extensions/common/wasm/context.cc`` on proxy-wasm-cpp-host),
applied here:

* On a new connection: ``proxy_on_context_create(id, root)`` then
  ``proxy_on_new_connection(id)``. Its Pause only delays the filters after
  this one, so data is still delivered to this filter.
* Client data: ``proxy_on_downstream_data(id, size, end_of_stream)`` with the
  data in buffer 2; upstream data: ``proxy_on_upstream_data`` with buffer 3.
  Continue (0) passes the buffered bytes on; any other value pauses
  (StopIteration): the bytes stay buffered and the next data callback of that
  side sees the grown buffer. The buffer stays readable while paused.
* ``proxy_continue_stream(DOWNSTREAM)`` resumes the client data (passes the
  buffer on); ``UPSTREAM`` is UNIMPLEMENTED in Envoy. ``proxy_close_stream``
  with either closes the downstream connection, which the filter then hears as
  a LOCAL downstream close. Both take effect after the callback returns; the
  data of a callback that closed the connection is not passed on.
* Upstream data with ``end_of_stream`` is followed by an upstream close with
  peer UNKNOWN: Envoy synthesises it, as it does not watch the upstream
  connection itself.
* When the downstream connection closes the context ends: ``proxy_on_done``,
  ``proxy_on_log``, ``proxy_on_delete`` (done first, unlike HTTP). Envoy does
  this on the downstream close whether or not the upstream close was seen,
  and calls the filter no more for that connection.
* A trap closes the connection (the filter is not called again) or, with
  the deprecated ``fail_open``, lets data through without the filter. Later
  connections follow the plugin's failure policy (:mod:`wasmkit.host.failure`):
  closed without the filter (``fail_closed``), passed without it
  (``fail_open``), or on a reloaded VM after the backoff (``fail_reload``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from wasmkit.abi.constants import PeerType, StreamType
from wasmkit.errors import FilterTrapError
from wasmkit.host.callouts import Callout
from wasmkit.host.context import LogRecord, TcpContext, TcpSide, TraceEvent
from wasmkit.host.message import Connection

if TYPE_CHECKING:
    from wasmkit.host.plugin import Plugin

_DATA_CALLBACKS = {
    StreamType.DOWNSTREAM: "proxy_on_downstream_data",
    StreamType.UPSTREAM: "proxy_on_upstream_data",
}
_CLOSED_BY = {
    PeerType.REMOTE: "client",
    PeerType.LOCAL: "proxy",
    PeerType.UNKNOWN: "unknown",
}

Chunks = bytes | str | Iterable[bytes | str]
"""Data of one direction: one chunk, or chunks delivered one by one."""


@dataclass(slots=True)
class TcpResult:
    """What one TCP connection did in the filter."""

    downstream_before: bytes
    """What the client sent."""
    downstream_after: bytes
    """What the filter passed on to the upstream."""
    upstream_before: bytes
    """What the upstream sent."""
    upstream_after: bytes
    """What the filter passed on to the client."""
    closed_by: str | None
    """Who closed the connection: ``client`` (downstream close, peer REMOTE),
    ``proxy`` (the host closed it, peer LOCAL), ``unknown``, ``filter``
    (``proxy_close_stream``) or ``error`` (the filter failed, fail-closed)."""
    logs: list[LogRecord]
    """Log records emitted while this connection ran."""
    trace: list[TraceEvent]
    """Callbacks and host calls of this connection, in order."""
    error: FilterTrapError | None = None
    """The filter failure that ended the connection, if any."""
    stalled: str | None = None
    """Where data stayed paused at the end (``downstream data``, ``upstream
    data`` or both), if it did."""
    downstream_held: bytes = b""
    """Client bytes still held at the filter at the end (never passed on)."""
    upstream_held: bytes = b""
    """Upstream bytes still held at the filter at the end."""
    filter_closed: StreamType | None = None
    """The stream type the filter passed to ``proxy_close_stream``, if it did."""
    downstream_close: PeerType | None = None
    """Peer type of the downstream close, ``None`` if it never closed."""
    upstream_close: PeerType | None = None
    """Peer type of the upstream close the filter was told of (UNKNOWN when
    synthesised from ``end_of_stream``), ``None`` if none."""
    context_id: int = 0
    """The connection's context id."""
    notes: list[str] = field(default_factory=list)
    """Host remarks (data after the close, fail-open...)."""
    callouts: list[Callout] = field(default_factory=list)
    """HTTP callouts this connection made."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """The VM's metrics when the connection ended (see ``Metrics.table``)."""

    @property
    def ok(self) -> bool:
        """The filter ran without failing."""
        return self.error is None


class TcpStream:
    """One downstream connection through a plugin, driven chunk by chunk.

    The client connects on the first call (or :meth:`connect`); data and
    close events then go to the filter as Envoy delivers them; :meth:`finish`
    reports the outcome.
    """

    def __init__(self, plugin: Plugin, connection: Connection | None = None) -> None:
        self.plugin = plugin
        self.connection = connection
        self.vm = plugin.vm
        self.ctx: TcpContext | None = None
        self.ended = False  # the connection closed: no more data reaches the filter
        self.error: FilterTrapError | None = None
        self.closed_by: str | None = None
        self.filter_closed: StreamType | None = None
        self.notes: list[str] = []
        self._log_start = len(self.vm.logs)
        self._trace_start = len(self.vm.trace)
        self._bypass = False
        self._context_ended = False
        self._finished = False

    # -- driving ----------------------------------------------------------------

    def connect(self) -> None:
        """The client connects: ``on_context_create``, ``on_new_connection``."""
        self._context()

    def _context(self) -> TcpContext:
        if self.ctx is None:
            vm = self.vm
            failure = vm.failure if vm.failed is not None else None
            # A failed VM takes no connection, unless fail_reload reloads it.
            usable = failure is None or vm.admits(self.plugin.config)
            root = self.plugin.root
            if root is None:
                raise RuntimeError("plugin is not started")
            ctx = TcpContext(vm.new_context_id(), root)
            ctx.start_ns = vm.clock.now_ns()
            conn = self.connection or Connection()
            ctx.connection = conn if conn.id is not None else replace(conn, id=ctx.id)
            vm.contexts[ctx.id] = ctx
            vm.streams[ctx.id] = self
            self.ctx = ctx
            if not usable:
                self._failed_vm()
                return ctx
            self._call("proxy_on_context_create", (ctx.id, root.id))
            if not self.ended and not self._bypass:
                self._call("proxy_on_new_connection", (ctx.id,))
            self._after_callback()
        return self.ctx

    def downstream_data(self, chunk: bytes | str, end_of_stream: bool = False) -> None:
        """Client bytes arrive (``end_of_stream``: the client half-closed).

        Raises:
            ValueError: the client already ended its data.
        """
        self._data(StreamType.DOWNSTREAM, chunk, end_of_stream)

    def upstream_data(self, chunk: bytes | str, end_of_stream: bool = False) -> None:
        """Upstream bytes arrive (``end_of_stream``: the upstream finished).

        After upstream data with ``end_of_stream`` the filter hears an upstream
        close with peer UNKNOWN, as Envoy synthesises it: after the context's
        end when the filter closed the connection on that data, as Envoy does.

        Raises:
            ValueError: the upstream already ended its data.
        """
        was_open = not self.ended
        self._data(StreamType.UPSTREAM, chunk, end_of_stream)
        if not end_of_stream:
            return
        if was_open and self.ended and self.filter_closed is not None:
            self._late_upstream_close()
            return
        self.upstream_close(PeerType.UNKNOWN)

    def _late_upstream_close(self) -> None:
        # The filter closed the connection on the upstream's last data: the
        # context ended at once (done, log, delete), and Envoy 1.40 still
        # reports the upstream close it synthesises from that end, after
        # proxy_on_delete (tests/envoy/test_tcp_env.py).
        ctx = self.ctx
        assert ctx is not None
        side = ctx.upstream
        if side.closed or self._bypass or self.error is not None:
            return
        side.closed = True
        side.close_peer = PeerType.UNKNOWN
        if self.vm.failed is not None:
            return
        ctx.callback = "proxy_on_upstream_connection_close"
        try:
            self.vm.invoke(ctx.callback, (ctx.id, int(PeerType.UNKNOWN)), ctx)
        except FilterTrapError as exc:
            self.error = exc

    def downstream_close(self, peer_type: PeerType = PeerType.REMOTE) -> None:
        """The downstream connection closes: the filter is told, its context ends.

        ``peer_type``: REMOTE when the client closes, LOCAL when the proxy does.
        Then ``on_done``, ``on_log`` and ``on_delete`` run.
        """
        self._context()
        self._close_downstream(PeerType(peer_type), _CLOSED_BY[PeerType(peer_type)])

    def upstream_close(self, peer_type: PeerType = PeerType.REMOTE) -> None:
        """The upstream connection closes; the filter is told (once).

        Envoy itself only reports the close it synthesises from upstream
        ``end_of_stream`` (see :meth:`upstream_data`). After the connection
        ended nothing is delivered.
        """
        ctx = self._context()
        side = ctx.upstream
        if side.closed or self.ended:
            return
        side.closed = True
        side.close_peer = PeerType(peer_type)
        if self._bypass:
            return
        self._call("proxy_on_upstream_connection_close", (ctx.id, int(peer_type)))
        if not self.ended:
            self._after_callback()

    def _data(self, stream_type: StreamType, chunk: bytes | str, eos: bool) -> None:
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        ctx = self._context()
        side = ctx.side(stream_type)
        label = stream_type.name.lower()
        if self.ended:
            if data:
                self.notes.append(
                    f"{len(data)} {label} bytes after the connection closed: dropped"
                )
            return
        if side.end_received:
            raise ValueError(f"{label} data after its end_of_stream")
        side.received += data
        side.buffer += data
        side.end_received = eos
        if self._bypass:
            self._forward(side)
            return
        side.attached = True
        status = self._call(
            _DATA_CALLBACKS[stream_type], (ctx.id, len(side.buffer), int(eos))
        )
        if not self._filtering():
            return  # the filter failed
        # cpp-host: 0 is Continue, anything else StopIteration.
        paused = bool(status)
        side.stopped = paused
        self._after_callback()
        if paused or not self._filtering():
            return
        side.attached = False
        self._forward(side)

    def _filtering(self) -> bool:
        # The connection is open and its data still goes through the filter.
        return not self.ended and not self._bypass

    # -- forwarding and deferred actions ---------------------------------------------

    def _forward(self, side: TcpSide) -> None:
        side.forwarded += side.buffer
        side.buffer.clear()

    def _after_callback(self) -> None:
        self._apply_pending()
        # The filter may have acted on other streams (set_effective_context).
        for other in list(self.vm.streams.values()):
            if other is not self:
                other._apply_pending()
        # Replies and notifications due now arrive after the VM call.
        self.vm.events.run_due()

    def _apply_pending(self) -> None:
        ctx = self.ctx
        if ctx is None or self._finished:
            return
        while ctx.pending and not self.ended:
            action, stream_type = ctx.pending.pop(0)
            if action == "close":
                self.filter_closed = stream_type
                self.notes.append(
                    f"the filter closed the connection ({stream_type.name}) in "
                    f"{ctx.callback}"
                )
                self._close_downstream(PeerType.LOCAL, "filter")
            else:
                # continueReading(): the held client data goes upstream.
                side = ctx.downstream
                side.stopped = False
                self._forward(side)
        ctx.pending.clear()

    def _close_downstream(self, peer_type: PeerType, by: str) -> None:
        ctx = self.ctx
        assert ctx is not None
        side = ctx.downstream
        if side.closed:
            return
        side.closed = True
        side.close_peer = peer_type
        self.ended = True
        if self.closed_by is None:
            self.closed_by = by
        if not self._bypass and self.error is None:
            self._call("proxy_on_downstream_connection_close", (ctx.id, int(peer_type)))
            self._after_callback()
        self._end_context()

    def _end_context(self) -> None:
        if self._context_ended:
            return
        self._context_ended = True
        ctx = self.ctx
        assert ctx is not None
        if self.error is None and not self._bypass and self.vm.failed is None:
            for name in ("proxy_on_done", "proxy_on_log", "proxy_on_delete"):
                ctx.callback = name
                try:
                    self.vm.invoke(name, (ctx.id,), ctx)
                except FilterTrapError as exc:
                    self.error = exc
                    break
        self.vm.contexts.pop(ctx.id, None)
        self.vm.streams.pop(ctx.id, None)

    def _failed_vm(self) -> None:
        # Envoy: fail_open leaves the filter out of the chain, the other
        # policies close the connection without calling it.
        failure = self.vm.failure
        policy = self.plugin.config.policy
        self.notes.append(
            failure.note(policy).replace(
                "answers 503 (wasm_fail_stream)", "closes the connection"
            )
            if failure is not None
            else f"the VM failed: {policy}"
        )
        if policy == "fail_open":
            self._bypass = True
            return
        if failure is not None:
            self.error = failure.stream_error(policy)
        self._close_downstream(PeerType.LOCAL, "error")

    # -- calls ------------------------------------------------------------------

    def _call(self, name: str, args: tuple[int, ...]) -> int | None:
        ctx = self.ctx
        assert ctx is not None
        ctx.callback = name
        failed = self.vm.failed
        if failed is not None:
            # Another stream broke the instance: Envoy fails this one too.
            self._fail(failed)
            return None
        try:
            return self.vm.invoke(name, args, ctx)
        except FilterTrapError as exc:
            self._fail(exc)
            return None

    def _fail(self, exc: FilterTrapError) -> None:
        if self.error is None:
            self.error = exc
        ctx = self.ctx
        assert ctx is not None
        if self.plugin.config.fail_open:
            if not self._bypass:
                self.notes.append("fail-open: data passes without the filter")
            self._bypass = True
            for side in (ctx.downstream, ctx.upstream):
                side.stopped = False
                side.attached = False
                if not self.ended:
                    self._forward(side)
            return
        if not self.ended:
            self.notes.append("fail-closed: the connection is closed")
            self._close_downstream(PeerType.LOCAL, "error")

    # -- the end ----------------------------------------------------------------

    def finish(self, peer_type: PeerType = PeerType.REMOTE) -> TcpResult:
        """End the connection and report what happened.

        A connection still open is closed first (``peer_type``: who closes it,
        the client by default), which ends the context (done, log, delete).

        Raises:
            RuntimeError: the connection was finished already.
        """
        if self._finished:
            raise RuntimeError("connection already finished")
        ctx = self._context()
        if not self.ended:
            self.downstream_close(peer_type)
        self._end_context()
        self._finished = True
        stalled = [
            f"{side.stream_type.name.lower()} data"
            for side in (ctx.downstream, ctx.upstream)
            if side.stopped and side.buffer and not self._bypass
        ]
        vm = self.vm
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
        return TcpResult(
            downstream_before=bytes(ctx.downstream.received),
            downstream_after=bytes(ctx.downstream.forwarded),
            upstream_before=bytes(ctx.upstream.received),
            upstream_after=bytes(ctx.upstream.forwarded),
            closed_by=self.closed_by,
            logs=logs,
            trace=trace,
            error=self.error,
            stalled=", ".join(stalled) or None,
            downstream_held=bytes(ctx.downstream.buffer),
            upstream_held=bytes(ctx.upstream.buffer),
            filter_closed=self.filter_closed,
            downstream_close=ctx.downstream.close_peer,
            upstream_close=ctx.upstream.close_peer,
            context_id=ctx.id,
            notes=self.notes,
            callouts=[c for c in vm.callouts if c.context_id == ctx.id],
            metrics=vm.metrics.table(),
        )


def _chunks(data: Chunks) -> list[bytes]:
    if isinstance(data, (bytes, bytearray, str)):
        data = [data]
    return [c.encode() if isinstance(c, str) else bytes(c) for c in data]


def run_connection(
    plugin: Plugin,
    downstream: Chunks = (),
    upstream: Chunks | Callable[[bytes], Chunks] = (),
    *,
    downstream_end: bool = False,
    upstream_end: bool = True,
    close: PeerType = PeerType.REMOTE,
    wait_ms: float = 15_000,
    connection: Connection | None = None,
) -> TcpResult:
    """Run a whole connection through ``plugin`` (see :meth:`Plugin.run_tcp`)."""
    stream = TcpStream(plugin, connection)
    stream.connect()
    events = plugin.vm.events
    down = _chunks(downstream)
    for i, chunk in enumerate(down):
        stream.downstream_data(chunk, downstream_end and i == len(down) - 1)
    if downstream_end and not down:
        stream.downstream_data(b"", True)

    def downstream_flowing() -> bool:
        ctx = stream.ctx
        return stream.ended or ctx is None or not ctx.downstream.stopped

    # Paused client data may be waiting on a callout or a tick: let time pass.
    events.wait(wait_ms, downstream_flowing)
    ctx = stream.ctx
    assert ctx is not None
    if not stream.ended and ctx.downstream.stopped:
        stream.notes.append(
            "the client data stayed paused: the upstream never answered"
        )
    elif not stream.ended:
        answer = (
            upstream(bytes(ctx.downstream.forwarded))
            if callable(upstream)
            else upstream
        )
        up = _chunks(answer)
        for i, chunk in enumerate(up):
            stream.upstream_data(chunk, upstream_end and i == len(up) - 1)
        if upstream_end and not up:
            stream.upstream_data(b"", True)
    return stream.finish(close)
