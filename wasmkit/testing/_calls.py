"""Calling one callback on one context, as Envoy's filter would (driver core)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasmkit.abi.constants import (
    FilterDataStatus,
    FilterHeadersStatus,
    StreamType,
    WasmResult,
)
from wasmkit.errors import FilterTrapError
from wasmkit.host.context import Context, HttpContext, RootContext, TcpContext
from wasmkit.host.message import HttpMessage
from wasmkit.host.plugin import FilterVm, Plugin
from wasmkit.testing._views import (
    CallResult,
    Headers,
    Logs,
    metrics_by_name,
    to_bytes,
    to_pairs,
)

if TYPE_CHECKING:
    from wasmkit.testing.driver import Driver

_HEADERS = {
    int(FilterHeadersStatus.CONTINUE): "Continue",
    int(FilterHeadersStatus.STOP_ITERATION): "StopIteration",
    int(FilterHeadersStatus.CONTINUE_AND_END_STREAM): "ContinueAndEndStream",
    int(FilterHeadersStatus.STOP_ALL_ITERATION_AND_BUFFER): "StopAllIterationAndBuffer",
    int(
        FilterHeadersStatus.STOP_ALL_ITERATION_AND_WATERMARK
    ): "StopAllIterationAndWatermark",
}
_DATA = {
    int(FilterDataStatus.CONTINUE): "Continue",
    int(FilterDataStatus.STOP_ITERATION_AND_BUFFER): "StopIterationAndBuffer",
    int(FilterDataStatus.STOP_ITERATION_AND_WATERMARK): "StopIterationAndWatermark",
    int(FilterDataStatus.STOP_ITERATION_NO_BUFFER): "StopIterationNoBuffer",
}
_FAILED = {
    "headers": "StopAllIterationAndWatermark",
    "data": "StopIterationNoBuffer",
    "trailers": "StopIteration",
    "metadata": "Continue",
    "tcp": "StopIteration",
}
"""What Envoy's ``CHECK_FAIL`` returns on a failed VM, per callback kind."""


class _Window:
    """Marks where a call's logs, trace and callouts start in the VM's lists."""

    def __init__(self, vm: FilterVm) -> None:
        self.logs = len(vm.logs)
        self.trace = len(vm.trace)
        self.callouts = len(vm.callouts)


class _ContextDriver:
    """What root, HTTP and TCP drivers share: calling into one context."""

    ctx: Context
    vm: FilterVm

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.plugin = driver.plugin
        self.vm = driver.vm
        self.notes: list[str] = []
        self.calls: list[CallResult] = []
        """Every call made through this driver, in order."""
        self.failed = False  # Envoy's stream_failed_: the stream was failed once
        self.continued: list[StreamType] = []
        """Every stream the filter resumed on this context
        (``proxy_continue_stream``, applied after the VM call), in order."""
        self.closed: list[StreamType] = []
        """Every stream the filter closed on this context, in order."""

    @property
    def id(self) -> int:
        """The context id."""
        return self.ctx.id

    def _apply_pending(self) -> None:
        # Called by the host after root callbacks (a stream resumed from a
        # callout reply): the driver records what the filter asked for.
        ctx = self.ctx
        asked: list[tuple[str, StreamType]] = []
        if isinstance(ctx, HttpContext):
            asked += [("continue", t) for t in ctx.pending_continue]
            asked += [("close", t) for t in ctx.pending_close]
            ctx.pending_continue.clear()
            ctx.pending_close.clear()
        elif isinstance(ctx, TcpContext):
            asked += ctx.pending
            ctx.pending.clear()
        for action, stream_type in asked:
            (self.closed if action == "close" else self.continued).append(stream_type)
            self.driver.actions.append((action, stream_type))

    def call(
        self,
        name: str,
        *args: int,
        kind: str | None = None,
    ) -> CallResult:
        """Call export ``name`` with ``args`` after the context id.

        ``kind`` says how Envoy converts the return (``headers``, ``data``,
        ``trailers``, ``metadata``, ``tcp``; ``None``: it does not).
        """
        vm = self.vm
        ctx = self.ctx
        if not name.startswith("proxy_"):
            name = "proxy_" + name
        window = _Window(vm)
        first_action = len(self.driver.actions)
        reply_before = getattr(ctx, "local_reply", None)
        if isinstance(ctx, HttpContext | TcpContext):
            ctx.callback = name
        error: FilterTrapError | None = None
        value: int | None = None
        notes: list[str] = []
        if vm.failed is not None:
            error = vm.failed
        else:
            try:
                value = vm.invoke(name, (ctx.id, *args), ctx)
            except FilterTrapError as exc:
                exc.__traceback__ = None
                error = exc
        self._apply_pending()
        reply = getattr(ctx, "local_reply", None)
        new_reply = reply if reply is not None and reply is not reply_before else None
        action = _convert(kind, value, new_reply is not None, self.plugin)
        if error is not None:
            action = self._check_fail(kind, notes)
            reply = getattr(ctx, "local_reply", None)
            if reply is not None and reply is not reply_before:
                new_reply = reply
        # Replies and notifications due now arrive after the VM call.
        vm.events.run_due()
        for other in list(vm.streams.values()):
            other._apply_pending()
        dropped = vm.budget.note(vm.limits)
        if dropped:
            notes.append(dropped)
        notes += self.notes
        self.notes.clear()
        asked = self.driver.actions[first_action:]
        result = CallResult(
            callback=name,
            context_id=ctx.id,
            value=value,
            action=action,
            logs=Logs(vm.logs[window.logs :]),
            trace=vm.trace[window.trace :],
            error=error,
            local_reply=new_reply,
            callouts=vm.callouts[window.callouts :],
            continued=[t for a, t in asked if a != "close"],
            closed=[t for a, t in asked if a == "close"],
            notes=notes,
            metrics=metrics_by_name(vm),
        )
        self.calls.append(result)
        self.driver.calls.append(result)
        return result

    def _skipped(
        self, callback: str, note: str, action: str | None = None
    ) -> CallResult:
        # A callback Envoy does not make here: recorded, not called.
        if not callback.startswith("proxy_"):
            callback = "proxy_" + callback
        result = CallResult(
            callback=callback,
            context_id=self.ctx.id,
            value=None,
            action=action,
            logs=Logs(),
            trace=[],
            notes=[note],
            metrics=metrics_by_name(self.vm),
        )
        self.calls.append(result)
        self.driver.calls.append(result)
        return result

    def _check_fail(self, kind: str | None, notes: list[str]) -> str | None:
        # cpp-host's CHECK_FAIL_HTTP / CHECK_FAIL: the deprecated fail_open
        # goes on; otherwise the stream fails once and iteration stops.
        if self.plugin.config.fail_open:
            return None if kind is None else "Continue"
        if not self.failed:
            self.failed = True
            self._fail_stream(notes)
        return None if kind is None else _FAILED[kind]

    def _fail_stream(self, notes: list[str]) -> None:
        pass


def _convert(
    kind: str | None, value: int | None, replied: bool, plugin: Plugin
) -> str | None:
    # cpp-host's convertVmCallResultTo*Status.
    if kind is None:
        return None
    if value is None:
        return "Continue"  # not exported: Envoy goes on
    if kind == "headers":
        if replied or value > 4:
            return "StopAllIterationAndWatermark"
        if value == 1 and not plugin.config.allow_on_headers_stop_iteration:
            return "StopAllIterationAndWatermark"
        return _HEADERS[value]
    if kind == "data":
        if replied or value > 3:
            return "StopIterationNoBuffer"
        return _DATA[value]
    if kind == "trailers":
        return "StopIteration" if replied or value >= 1 else "Continue"
    if kind == "metadata":
        return "Continue"
    return "StopIteration" if replied or value != 0 else "Continue"  # tcp


class RootDriver(_ContextDriver):
    """The plugin's root context: timers, queues, callout replies, FFI."""

    def __init__(self, driver: Driver) -> None:
        super().__init__(driver)
        root = self.plugin.root
        if root is None:
            raise RuntimeError("the plugin is not started")
        self.ctx: RootContext = root

    def on_tick(self) -> CallResult:
        """``proxy_on_tick`` now (whatever the tick period)."""
        return self.call("on_tick")

    def on_queue_ready(self, queue_id: int) -> CallResult:
        """``proxy_on_queue_ready`` for queue ``queue_id``.

        ``queue_id`` is what the filter's ``proxy_register_shared_queue``
        returned.
        """
        return self.call("on_queue_ready", queue_id)

    def queue_token(self, name: str, vm_id: str | None = None) -> int:
        """The token of shared queue ``name``, to hand to :meth:`on_queue_ready`.

        The token is what ``proxy_resolve_shared_queue`` gives; ``vm_id``:
        the VM that registered it (default: this VM). Envoy's tests get it
        the same way (``resolveQueueForTest``).

        Raises:
            KeyError: no such queue was registered.
        """
        vm = self.vm
        owner = vm.vm_id if vm_id is None else vm_id
        token = vm.shared.resolve_queue(owner, name.encode())
        if token is None:
            raise KeyError(f"no shared queue {name!r} registered by VM {owner!r}")
        return token

    def on_foreign_function(
        self, function_id: int, data: bytes | str = b""
    ) -> CallResult:
        """``proxy_on_foreign_function`` with ``data`` as buffer 8."""
        raw = to_bytes(data)
        self.vm.call_data = raw
        try:
            return self.call("on_foreign_function", function_id, len(raw))
        finally:
            self.vm.call_data = None

    def on_http_call_response(
        self,
        token: int,
        headers: Headers | None = None,
        body: bytes | str = b"",
        trailers: Headers | None = None,
    ) -> CallResult:
        """``proxy_on_http_call_response`` for ``token``.

        ``headers`` ``None`` is a failed call as Envoy delivers it (no
        headers, ``proxy_get_status`` gives 11 ``reset``); otherwise maps 6
        and 7 and buffer 4 hold the response during the call. A callout of
        that token the filter made is marked answered; a reply or timeout
        the host scheduled for it (a responder, a timeout) still fires when
        time is advanced, so drive such a callout one way or the other.
        """
        events = self.vm.events
        root = self.ctx
        call = next((c for c in self.vm.callouts if c.token == token), None)
        if call is not None and call.outcome == "pending":
            events.in_flight = max(0, events.in_flight - 1)
            call.delivered_ns = self.vm.clock.now_ns()
        if headers is None:
            if call is not None and call.outcome == "pending":
                call.outcome = "failure"
            root.last_status = (int(WasmResult.BROKEN_CONNECTION), b"reset")
            return self.call("on_http_call_response", token, 0, 0, 0)
        message = HttpMessage(
            to_pairs(headers),
            to_bytes(body),
            None if trailers is None else to_pairs(trailers),
        )
        if call is not None and call.outcome == "pending":
            call.outcome, call.response = "response", message
        root.last_status = (0, b"")
        events.reply = message
        try:
            return self.call(
                "on_http_call_response",
                token,
                len(message.headers),
                len(message.body),
                len(message.trailers or []),
            )
        finally:
            events.reply = None

    def _grpc_map(
        self, name: str, map_type: int, token: int, metadata: Headers
    ) -> CallResult:
        items = to_pairs(metadata)
        maps = self.vm.events.grpc._maps  # maps 4/5 live while the callback runs
        maps[map_type] = items
        try:
            return self.call(name, token, len(items))
        finally:
            maps.pop(map_type, None)

    def on_grpc_receive_initial_metadata(
        self, token: int, metadata: Headers = ()
    ) -> CallResult:
        """``proxy_on_grpc_receive_initial_metadata`` with map 4."""
        return self._grpc_map("on_grpc_receive_initial_metadata", 4, token, metadata)

    def on_grpc_receive(self, token: int, message: bytes | str) -> CallResult:
        """``proxy_on_grpc_receive`` with ``message`` as buffer 5."""
        grpc = self.vm.events.grpc
        raw = to_bytes(message)
        grpc.message = raw
        try:
            return self.call("on_grpc_receive", token, len(raw))
        finally:
            grpc.message = None

    def on_grpc_receive_trailing_metadata(
        self, token: int, metadata: Headers = ()
    ) -> CallResult:
        """``proxy_on_grpc_receive_trailing_metadata`` with map 5."""
        return self._grpc_map("on_grpc_receive_trailing_metadata", 5, token, metadata)

    def on_grpc_close(
        self, token: int, status: int = 0, message: str = ""
    ) -> CallResult:
        """``proxy_on_grpc_close`` with ``status`` (and ``message``).

        ``proxy_get_status`` gives both during the call.
        """
        root = self.ctx
        root.last_status = (int(status), message.encode())
        try:
            return self.call("on_grpc_close", token, int(status))
        finally:
            root.last_status = (int(status), b"")

    def on_configure(self, configuration: bytes | str | None = None) -> CallResult:
        """``proxy_on_configure`` again; ``value`` 0: the filter refused it.

        Buffer 7 holds ``configuration`` (default: the plugin's).
        """
        data = (
            self.plugin.configuration
            if configuration is None
            else to_bytes(configuration)
        )
        root = self.ctx
        root.configuring = True
        saved = self.plugin.config
        if configuration is not None:
            from dataclasses import replace

            self.plugin.config = replace(saved, configuration=data)
        try:
            return self.call("on_configure", len(data))
        finally:
            root.configuring = False
            self.plugin.config = saved

    def on_vm_start(self) -> CallResult:
        """``proxy_on_vm_start`` again, with the VM configuration."""
        return self.call("on_vm_start", len(self.vm.vm_configuration))

    def on_done(self) -> CallResult:
        """``proxy_on_done``; value 0: the filter finishes with ``proxy_done``."""
        result = self.call("on_done")
        if result.value == 0:
            self.ctx.done_pending = True
        return result

    def on_delete(self) -> CallResult:
        """``proxy_on_delete``."""
        return self.call("on_delete")
