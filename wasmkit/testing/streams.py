"""HTTP stream contexts for the driver: maps and buffers, callbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasmkit.abi.constants import AbiVersion
from wasmkit.host.context import HttpContext, Side
from wasmkit.host.message import Connection, HttpMessage, LocalReply
from wasmkit.host.properties import StreamInfo
from wasmkit.testing._calls import _ContextDriver
from wasmkit.testing._info import StreamInfoAccess
from wasmkit.testing._views import (
    CallResult,
    HeaderMap,
    Headers,
    to_bytes,
    to_pairs,
)

if TYPE_CHECKING:
    from wasmkit.testing.driver import Driver


class HttpDriver(StreamInfoAccess, _ContextDriver):
    """An HTTP stream context; its maps and bodies are set and read here.

    ``request_headers``, ``request_body``, ``request_trailers`` and the
    response's are what the filter sees in its callbacks. Assign them
    (a mapping, pairs, bytes; ``None``: the map is absent) before a call and
    read them after. The stream callbacks take them as arguments too.

    :attr:`stream_info` (or :meth:`set_stream_info`) gives the stream's
    timing, response code details and flags as the filter's properties read
    them (``request.time``, ``request.duration``, ``response.code_details``,
    ``response.flags``); :attr:`connection` (or :meth:`set_connection`) its
    connection (``source.*``, ``connection.*`` ...). With ``create=False``
    the context exists but ``proxy_on_context_create`` has not run:
    :meth:`log` runs it first, as Envoy does for a stream the filter never
    saw.
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
        self.reset = False
        """Envoy reset the stream: the filter closed it
        (``proxy_close_stream``)."""
        vm = self.vm
        driver.admit()
        root = self.plugin.root
        if root is None:
            raise RuntimeError("the plugin is not started")
        if not vm.streams:
            vm.new_window()
        ctx = vm.open_http_context(root, connection, self)
        self.ctx: HttpContext = ctx
        if stream_info is not None:
            vm.stream_info[ctx.id] = stream_info
        self.created: CallResult | None = (
            self.call("on_context_create", root.id) if create else None
        )
        """The ``proxy_on_context_create`` call that made the context
        (``None``: not made yet)."""

    def _apply_pending(self) -> None:
        # Envoy's closeStream(Request | Response): the response code details
        # become wasm_close_stream (unless the stream has some already) and
        # the stream is reset after the VM call.
        seen = len(self.closed)
        super()._apply_pending()
        if len(self.closed) == seen or self.reset:
            return
        self.reset = True
        reply = self.ctx.local_reply
        details = self.stream_info.code_details or (reply.details if reply else None)
        if details is None:
            details = self.set_stream_info(
                code_details="wasm_close_stream"
            ).code_details
        self.notes.append(
            f"Envoy resets the stream (proxy_close_stream); response code details: "
            f"{details}"
        )

    # -- maps and buffers ---------------------------------------------------------

    def _map(self, side: Side, trailers: bool) -> HeaderMap | None:
        items = side.trailers if trailers else side.headers
        return None if items is None else HeaderMap(items)

    def _set_map(self, side: Side, trailers: bool, value: Headers | None) -> None:
        items = None if value is None else to_pairs(value)
        if trailers:
            side.trailers = items
        else:
            side.headers = items
            if items is not None and side.before is None:
                side.before = HttpMessage(list(items))

    @property
    def request_headers(self) -> HeaderMap | None:
        """Map 0, live (``None``: absent)."""
        return self._map(self.ctx.request, False)

    @request_headers.setter
    def request_headers(self, value: Headers | None) -> None:
        self._set_map(self.ctx.request, False, value)

    @property
    def request_trailers(self) -> HeaderMap | None:
        """Map 1, live (``None``: absent)."""
        return self._map(self.ctx.request, True)

    @request_trailers.setter
    def request_trailers(self, value: Headers | None) -> None:
        self._set_map(self.ctx.request, True, value)

    @property
    def response_headers(self) -> HeaderMap | None:
        """Map 2, live (``None``: absent)."""
        return self._map(self.ctx.response, False)

    @response_headers.setter
    def response_headers(self, value: Headers | None) -> None:
        self._set_map(self.ctx.response, False, value)

    @property
    def response_trailers(self) -> HeaderMap | None:
        """Map 3, live (``None``: absent)."""
        return self._map(self.ctx.response, True)

    @response_trailers.setter
    def response_trailers(self, value: Headers | None) -> None:
        self._set_map(self.ctx.response, True, value)

    @property
    def request_body(self) -> bytes:
        """Buffer 0: the request body the body callback sees."""
        return bytes(self.ctx.request.buffer)

    @request_body.setter
    def request_body(self, value: bytes | str) -> None:
        self.ctx.request.buffer[:] = to_bytes(value)

    @property
    def response_body(self) -> bytes:
        """Buffer 1: the response body the body callback sees."""
        return bytes(self.ctx.response.buffer)

    @response_body.setter
    def response_body(self, value: bytes | str) -> None:
        self.ctx.response.buffer[:] = to_bytes(value)

    @property
    def local_reply(self) -> LocalReply | None:
        """The last local reply the filter sent on this stream."""
        return self.ctx.local_reply

    # -- callbacks ----------------------------------------------------------------

    def _headers(
        self, side: Side, name: str, headers: Headers | None, eos: bool
    ) -> CallResult:
        if headers is not None:
            self._set_map(side, False, headers)
        if side.headers is None:
            side.headers = []
        side.headers_seen = True
        if eos:
            side.end_received = True
        count = len(side.headers)
        if self.vm.abi_version is AbiVersion.V0_1_0:
            return self.call(name, count, kind="headers")
        return self.call(name, count, int(eos), kind="headers")

    def _body(
        self, side: Side, name: str, data: bytes | str | None, eos: bool
    ) -> CallResult:
        if data is not None:
            side.buffer[:] = to_bytes(data)
        side.in_body_callback = True
        side.body_eos = eos
        if eos:
            side.end_received = True
        try:
            return self.call(name, len(side.buffer), int(eos), kind="data")
        finally:
            side.in_body_callback = False
            side.body_eos = False

    def _trailers(self, side: Side, name: str, trailers: Headers | None) -> CallResult:
        if trailers is not None:
            self._set_map(side, True, trailers)
        if side.trailers is None:
            side.trailers = []
        side.end_received = side.trailers_received = side.trailers_called = True
        return self.call(name, len(side.trailers), kind="trailers")

    def on_request_headers(
        self, headers: Headers | None = None, end_of_stream: bool = True
    ) -> CallResult:
        """``proxy_on_request_headers`` (``headers``: set map 0 first)."""
        return self._headers(
            self.ctx.request, "on_request_headers", headers, end_of_stream
        )

    def on_request_body(
        self, data: bytes | str | None = None, end_of_stream: bool = True
    ) -> CallResult:
        """``proxy_on_request_body`` (``data``: set buffer 0 first)."""
        return self._body(self.ctx.request, "on_request_body", data, end_of_stream)

    def on_request_trailers(self, trailers: Headers | None = None) -> CallResult:
        """``proxy_on_request_trailers`` (``trailers``: set map 1 first)."""
        return self._trailers(self.ctx.request, "on_request_trailers", trailers)

    def on_response_headers(
        self, headers: Headers | None = None, end_of_stream: bool = True
    ) -> CallResult:
        """``proxy_on_response_headers`` (``headers``: set map 2 first)."""
        return self._headers(
            self.ctx.response, "on_response_headers", headers, end_of_stream
        )

    def on_response_body(
        self, data: bytes | str | None = None, end_of_stream: bool = True
    ) -> CallResult:
        """``proxy_on_response_body`` (``data``: set buffer 1 first)."""
        return self._body(self.ctx.response, "on_response_body", data, end_of_stream)

    def on_response_trailers(self, trailers: Headers | None = None) -> CallResult:
        """``proxy_on_response_trailers`` (``trailers``: set map 3 first)."""
        return self._trailers(self.ctx.response, "on_response_trailers", trailers)

    def on_request_metadata(self, count: int = 0) -> CallResult:
        """``proxy_on_request_metadata`` (always Continue in Envoy)."""
        return self.call("on_request_metadata", count, kind="metadata")

    def on_response_metadata(self, count: int = 0) -> CallResult:
        """``proxy_on_response_metadata`` (always Continue in Envoy)."""
        return self.call("on_response_metadata", count, kind="metadata")

    def on_log(self) -> CallResult:
        """``proxy_on_log``, with the maps read-only.

        Absent maps read as missing (the access log of a stream the filter
        never saw).
        """
        ctx = self.ctx
        ctx.in_log = True
        try:
            return self.call("on_log")
        finally:
            ctx.in_log = False

    def log(
        self,
        request_headers: Headers | None = None,
        response_headers: Headers | None = None,
        response_trailers: Headers | None = None,
        *,
        complete: bool | None = None,
        duration_ms: float | None = None,
    ) -> CallResult:
        """Envoy's access log call on this stream (``Context::log``).

        The headers are the access log's maps, which the filter reads in
        ``proxy_on_log`` (``None``: this stream's own); request trailers are
        absent in the access log, as in Envoy. The stream's maps are back as
        they were afterwards. As Envoy does:

        * a request that is not complete (``complete=False``, or
          :attr:`stream_info` says so: a mid-request access log) gets no
          ``proxy_on_log`` at all (the result is not ``called``);
        * on a context made with ``create=False`` (a stream the filter never
          saw, e.g. a request rejected before the filter ran),
          ``proxy_on_context_create`` runs first.

        ``duration_ms``: ``request.duration`` (default: the virtual time since
        the context started).
        """
        if complete is not None or duration_ms is not None:
            self.set_stream_info(complete=complete, duration_ms=duration_ms)
        if self.stream_info.complete is False:
            return self._skipped(
                "proxy_on_log",
                "Envoy calls no proxy_on_log: the request is not complete "
                "(an intermediate access log)",
            )
        if self.created is None:
            root = self.plugin.root
            assert root is not None
            self.created = self.call("on_context_create", root.id)
        ctx = self.ctx
        saved = (
            ctx.request.headers,
            ctx.request.trailers,
            ctx.response.headers,
            ctx.response.trailers,
        )
        if request_headers is not None:
            ctx.request.headers = to_pairs(request_headers)
        ctx.request.trailers = None
        if response_headers is not None:
            ctx.response.headers = to_pairs(response_headers)
        if response_trailers is not None:
            ctx.response.trailers = to_pairs(response_trailers)
        try:
            return self.on_log()
        finally:
            ctx.request.headers, ctx.request.trailers = saved[0], saved[1]
            ctx.response.headers, ctx.response.trailers = saved[2], saved[3]

    def on_done(self) -> CallResult:
        """``proxy_on_done``."""
        return self.call("on_done")

    def on_delete(self) -> CallResult:
        """``proxy_on_delete``; the context is forgotten afterwards."""
        result = self.call("on_delete")
        self._forget()
        return result

    def finish(self) -> list[CallResult]:
        """End the stream as Envoy does: ``on_log``, ``on_done``, ``on_delete``.

        The ``spec`` profile: done, log, delete.
        """
        order = (
            (self.on_done, self.on_log)
            if self.vm.profile == "spec"
            else (self.on_log, self.on_done)
        )
        return [order[0](), order[1](), self.on_delete()]

    def _forget(self) -> None:
        self.vm.contexts.pop(self.ctx.id, None)
        self.vm.streams.pop(self.ctx.id, None)
        if not self.vm.streams:
            self.vm.new_window()

    def _fail_stream(self, notes: list[str]) -> None:
        # Envoy's failStream: a 503 local reply while the response headers
        # have not gone out.
        reply = LocalReply(
            503, details="wasm_fail_stream", grpc_status=14, callback=self.ctx.callback
        )
        self.ctx.local_reply = reply
        notes.append(
            f"{self.plugin.config.policy}: the stream fails: 503 (wasm_fail_stream)"
        )
