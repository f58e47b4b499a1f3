"""TCP (network filter) contexts for the driver, with Envoy's semantics.

A :class:`TcpDriver` has two levels:

* the callbacks themselves, one call each, in any order
  (``on_downstream_data``, ``on_upstream_data``,
  ``on_downstream_connection_close``, ``on_upstream_connection_close``,
  ``on_done``, ``on_log``, ``on_delete``);
* the network filter's entry points as Envoy's Wasm ``Context`` implements
  them (``source/extensions/common/wasm/context.cc``), each making the
  callbacks Envoy makes:

  - :meth:`TcpDriver.create` (``onCreate``): ``proxy_on_context_create``;
  - :meth:`TcpDriver.on_new_connection` (``onNewConnection``): creates the
    context first if needed;
  - :meth:`TcpDriver.on_data` / :meth:`TcpDriver.on_write` (``onData`` /
    ``onWrite``): client / upstream data; on a context never created they
    call nothing and continue; upstream data with ``end_of_stream`` is
    followed by ``proxy_on_upstream_connection_close(UNKNOWN)``, which Envoy
    synthesises;
  - :meth:`TcpDriver.on_event` (``onEvent``): ``remote_close`` /
    ``local_close`` of the downstream connection:
    ``proxy_on_downstream_connection_close`` then the connection's end;
  - :meth:`TcpDriver.finish` (``onCloseTCP``): ``proxy_on_done``,
    ``proxy_on_log``, ``proxy_on_delete``, once, only on a created context;
    :meth:`TcpDriver.log` is its ``proxy_on_log`` alone.

  After one of these, what the filter asked for is applied as Envoy does:
  ``proxy_close_stream`` (either direction: both name the downstream
  connection) closes the connection, whose local close event follows; a
  failed callback closes it too (fail-closed).

The connection's stream info (:attr:`TcpDriver.stream_info`) and connection
(:attr:`TcpDriver.connection`) are what the properties read: ``request.time``
(the connection's start), ``request.total_size`` / ``response.total_size``
(bytes from and to the client), ``response.flags`` (0) and, as in Envoy, no
``request.duration`` (a connection never completes a request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from wasmkit.abi.constants import PeerType, StreamType
from wasmkit.host.context import TcpContext
from wasmkit.host.message import Connection
from wasmkit.host.properties import StreamInfo
from wasmkit.testing._calls import _ContextDriver
from wasmkit.testing._info import StreamInfoAccess
from wasmkit.testing._views import CallResult, to_bytes

if TYPE_CHECKING:
    from wasmkit.testing.driver import Driver

_EVENTS = {
    "remote_close": PeerType.REMOTE,
    "remoteclose": PeerType.REMOTE,
    "local_close": PeerType.LOCAL,
    "localclose": PeerType.LOCAL,
}
_OTHER_EVENTS = {"connected", "connectedzerortt"}

CLOSE_DETAILS = {
    StreamType.DOWNSTREAM: "wasm_downstream_close",
    StreamType.UPSTREAM: "wasm_upstream_close",
}
"""The connection's close details when the filter closes a stream."""


class TcpDriver(StreamInfoAccess, _ContextDriver):
    """A TCP (network filter) context; its data buffers are set and read here.

    ``create=False``: the context exists but ``proxy_on_context_create`` has
    not run (Envoy's filter before ``onNewConnection``); ``stream_info``:
    the connection's start, flags and details.
    """

    def __init__(
        self,
        driver: Driver,
        connection: Connection | None = None,
        *,
        create: bool = True,
        stream_info: StreamInfo | None = None,
    ) -> None:
        super().__init__(driver)
        vm = self.vm
        driver.admit()
        root = self.plugin.root
        if root is None:
            raise RuntimeError("the plugin is not started")
        if not vm.streams:
            vm.new_window()
        ctx = TcpContext(vm.new_context_id(), root)
        ctx.start_ns = vm.clock.now_ns()
        ctx.connection = connection or Connection(id=ctx.id)
        self.ctx: TcpContext = ctx
        self.connection_closed = False
        """The downstream connection is closed (by a close event, the filter,
        or Envoy after the filter failed)."""
        self.close_details: str | None = None
        """Why Envoy closed the connection for the filter
        (``wasm_downstream_close``, ``wasm_upstream_close``), if it did."""
        self.ended = False
        """The connection's end ran (``onCloseTCP``: done, log, delete)."""
        self._downstream_closed = False  # Envoy's downstream_closed_
        self._applying = False
        vm.contexts[ctx.id] = ctx
        cast(dict[int, Any], vm.streams)[ctx.id] = self
        if stream_info is not None:
            vm.stream_info[ctx.id] = stream_info
        self.created: CallResult | None = None
        """The ``proxy_on_context_create`` call that made the context
        (``None``: not made yet)."""
        if create:
            self.create()

    # -- buffers ------------------------------------------------------------------

    @property
    def downstream_data(self) -> bytes:
        """Buffer 2: client bytes held at the filter."""
        return bytes(self.ctx.downstream.buffer)

    @downstream_data.setter
    def downstream_data(self, value: bytes | str) -> None:
        self.ctx.downstream.buffer[:] = to_bytes(value)

    @property
    def upstream_data(self) -> bytes:
        """Buffer 3: upstream bytes held at the filter."""
        return bytes(self.ctx.upstream.buffer)

    @upstream_data.setter
    def upstream_data(self, value: bytes | str) -> None:
        self.ctx.upstream.buffer[:] = to_bytes(value)

    @property
    def callbacks(self) -> list[str]:
        """The callbacks called on this context so far, in order.

        Without ``proxy_``; those Envoy skipped are left out.
        """
        return [c.callback.removeprefix("proxy_") for c in self.calls if c.called]

    # -- the callbacks ------------------------------------------------------------

    def _data(
        self, stream_type: StreamType, data: bytes | str | None, eos: bool
    ) -> CallResult:
        side = self.ctx.side(stream_type)
        if data is not None:
            raw = to_bytes(data)
            side.buffer[:] = raw
            side.received += raw
        side.attached = True
        if eos:
            side.end_received = True
        name = (
            "on_downstream_data"
            if stream_type is StreamType.DOWNSTREAM
            else "on_upstream_data"
        )
        result = self.call(name, len(side.buffer), int(eos), kind="tcp")
        if result.action == "Continue" and not result.closed:
            # Passed on: to the upstream, or to the client (response.total_size);
            # not when the filter closed the connection in the call (Envoy
            # closes it before the data goes on).
            side.forwarded += side.buffer
        return result

    def on_downstream_data(
        self, data: bytes | str | None = None, end_of_stream: bool = False
    ) -> CallResult:
        """``proxy_on_downstream_data`` (``data``: set buffer 2 first)."""
        return self._data(StreamType.DOWNSTREAM, data, end_of_stream)

    def on_upstream_data(
        self, data: bytes | str | None = None, end_of_stream: bool = False
    ) -> CallResult:
        """``proxy_on_upstream_data`` (``data``: set buffer 3 first)."""
        return self._data(StreamType.UPSTREAM, data, end_of_stream)

    def on_downstream_connection_close(
        self, peer_type: PeerType = PeerType.REMOTE
    ) -> CallResult:
        """``proxy_on_downstream_connection_close``."""
        return self.call("on_downstream_connection_close", int(peer_type))

    def on_upstream_connection_close(
        self, peer_type: PeerType = PeerType.UNKNOWN
    ) -> CallResult:
        """``proxy_on_upstream_connection_close``."""
        return self.call("on_upstream_connection_close", int(peer_type))

    def on_done(self) -> CallResult:
        """``proxy_on_done``."""
        return self.call("on_done")

    def on_log(self) -> CallResult:
        """``proxy_on_log``."""
        return self.call("on_log")

    def on_delete(self) -> CallResult:
        """``proxy_on_delete``; the context is forgotten afterwards."""
        result = self.call("on_delete")
        self.vm.contexts.pop(self.ctx.id, None)
        self.vm.streams.pop(self.ctx.id, None)
        if not self.vm.streams:
            self.vm.new_window()
        return result

    # -- Envoy's network filter ---------------------------------------------------

    def create(self) -> CallResult:
        """Envoy's ``onCreate``: ``proxy_on_context_create``, once."""
        if self.created is None:
            root = self.plugin.root
            assert root is not None
            self.created = self.call("on_context_create", root.id)
        return self.created

    def on_new_connection(self) -> CallResult:
        """Envoy's ``onNewConnection``: ``proxy_on_new_connection``.

        The context is created first if it was not.
        """
        self.create()
        return self._envoy(self.call("on_new_connection", kind="tcp"))

    def on_data(
        self, data: bytes | str | None = None, end_stream: bool = False
    ) -> CallResult:
        """Envoy's ``onData`` (the read filter): client bytes.

        On a context never created (no :meth:`create` or
        :meth:`on_new_connection`) nothing is called and the data goes on
        (``Continue``), as in Envoy; nor once the connection is closed (no
        more data reaches the filter).
        """
        if self.created is None:
            return self._no_context("on_downstream_data", "Continue")
        if self.connection_closed:
            return self._closed("on_downstream_data")
        return self._envoy(self._data(StreamType.DOWNSTREAM, data, end_stream))

    def on_write(
        self, data: bytes | str | None = None, end_stream: bool = False
    ) -> CallResult:
        """Envoy's ``onWrite`` (the write filter): upstream bytes.

        With ``end_stream`` Envoy then reports the upstream connection's
        close itself (peer ``UNKNOWN``: it does not watch that connection);
        if the downstream connection has closed already, the connection ends
        (done, log, delete). Nothing is called on a context never created,
        nor once the connection is closed.
        The upstream close comes even after the connection ended (the filter
        closed it on this data), as in Envoy.
        """
        if self.created is None:
            return self._no_context("on_upstream_data", "Continue")
        if self.connection_closed:
            return self._closed("on_upstream_data")
        result = self._envoy(self._data(StreamType.UPSTREAM, data, end_stream))
        if end_stream:
            self._upstream_close(PeerType.UNKNOWN)
        return result

    def on_event(self, event: str) -> list[CallResult]:
        """Envoy's ``onEvent`` for the downstream connection.

        ``remote_close`` (the client closed) or ``local_close`` (Envoy
        closed it): ``proxy_on_downstream_connection_close`` with peer
        ``REMOTE`` / ``LOCAL``, then the connection's end (:meth:`finish`).
        ``connected`` and the like call nothing. Returns every call made;
        none on a context never created, after the connection ended, or on
        a failed VM.

        Raises:
            ValueError: not a connection event.
        """
        key = event.lower().replace("-", "_")
        if key not in _EVENTS:
            if key.replace("_", "") in _OTHER_EVENTS:
                return []
            raise ValueError(
                f"on_event: {event!r} is no connection event (remote_close, "
                "local_close, connected)"
            )
        first = len(self.calls)
        self._downstream_close(_EVENTS[key])
        return self.calls[first:]

    def _downstream_close(self, peer_type: PeerType) -> None:
        # Context::onDownstreamConnectionClose, then onCloseTCP.
        if self.created is None or self.ended or self._downstream_closed:
            return
        self.connection_closed = self._downstream_closed = True
        if self.vm.failed is None:
            self._envoy(self.on_downstream_connection_close(peer_type))
        self.finish()

    def _upstream_close(self, peer_type: PeerType) -> None:
        # Context::onUpstreamConnectionClose: onCloseTCP too once the
        # downstream connection closed. Envoy makes the call even after the
        # end (a filter that closed the connection on the last upstream data
        # hears the upstream close after proxy_on_delete; seen on Envoy 1.40).
        if self.created is None or self.vm.failed is not None:
            return
        self._envoy(self.on_upstream_connection_close(peer_type))
        if self._downstream_closed:
            self.finish()

    def log(self) -> CallResult:
        """The ``proxy_on_log`` Envoy makes as the connection ends.

        Not called on a context never created. The properties read the
        connection's :attr:`stream_info`.
        """
        if self.created is None:
            return self._no_context("on_log")
        return self.on_log()

    def finish(self) -> list[CallResult]:
        """End the connection as Envoy does (``onCloseTCP``): done, log, delete.

        Once: nothing when it ran already, on a context never created, or on
        a failed VM (Envoy calls into a failed VM no more).
        """
        if self.ended or self.created is None:
            return []
        self.ended = True
        if self.vm.failed is not None:
            return []
        return [self.on_done(), self.log(), self.on_delete()]

    def _no_context(self, callback: str, action: str | None = None) -> CallResult:
        return self._skipped(
            callback,
            "Envoy calls nothing: the context was never created "
            "(no onCreate / onNewConnection)",
            action,
        )

    def _closed(self, callback: str) -> CallResult:
        return self._skipped(
            callback, "Envoy calls nothing: the connection is closed", "Continue"
        )

    def _envoy(self, result: CallResult) -> CallResult:
        # After an Envoy entry point: the filter's close requests (deferred
        # to after the VM call) close the downstream connection, whose local
        # close event follows.
        if self._applying or not result.closed or self.connection_closed:
            return result
        self.close_details = CLOSE_DETAILS.get(result.closed[0])
        result.notes.append(
            f"Envoy closes the connection ({self.close_details}): the local "
            "close event follows"
        )
        self._applying = True
        try:
            self._downstream_close(PeerType.LOCAL)
        finally:
            self._applying = False
        return result

    def _fail_stream(self, notes: list[str]) -> None:
        # failStream(Downstream) and (Upstream): the connection closes; the
        # failed VM is called no more.
        self.connection_closed = True
        notes.append(f"{self.plugin.config.policy}: Envoy closes the connection")
