"""What happens to a VM between streams: ticks, callout replies, queue arrivals.

Everything runs on the host's virtual clock through a :class:`Scheduler`;
deliveries never re-enter the guest: they fire after the current VM call, or
when time is advanced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from wasmkit.abi import pairs
from wasmkit.abi.constants import LogLevel, WasmResult
from wasmkit.errors import FilterTrapError
from wasmkit.host import callouts, quotas
from wasmkit.host.callouts import Callout, CalloutReply, Responder, TableResponder
from wasmkit.host.context import Context, RootContext
from wasmkit.host.grpc import GrpcCall, GrpcResponder, grpc_table_responder
from wasmkit.host.grpc_events import GrpcCallouts
from wasmkit.host.message import HeaderPairs, HttpMessage, LocalReply, header_value
from wasmkit.host.scheduler import Scheduler

if TYPE_CHECKING:
    from wasmkit.host.plugin import FilterVm

_REQUIRED = (b":method", b":path", b":authority")


class VmEvents:
    """Timers, callouts and queue notifications of one :class:`FilterVm`.

    Args:
        vm: the VM.
        responder: answers HTTP callouts (see :mod:`wasmkit.host.callouts`).
        clusters: cluster names callouts may use, besides the keys of a table
            responder. Envoy answers a call to any other name with
            BadArgument, whatever would answer it: a function responder
            answers only the clusters named here.
    """

    def __init__(
        self,
        vm: FilterVm,
        responder: Responder | None = None,
        clusters: Iterable[str] | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.vm = vm
        # A Proxy shares one scheduler (and clock) between its VMs.
        self.scheduler = scheduler if scheduler is not None else Scheduler(vm.clock)
        self.responder = responder
        self.clusters: set[str] = set(clusters or ())
        """The clusters Envoy would have: the ones named and a table's keys."""
        if isinstance(responder, TableResponder):
            self.clusters |= responder.clusters
        self.callouts: list[Callout] = []
        self.reply: HttpMessage | None = None
        self.errors: list[FilterTrapError] = []
        self.in_flight = 0
        """HTTP callouts sent and not yet answered (``Limits.callouts``)."""
        self._next_token = 0
        self._generation = 0
        self.grpc = GrpcCallouts(self)

    # -- calls into root contexts ------------------------------------------------

    def call_root(self, name: str, args: tuple[int, ...], root: Context) -> None:
        """Invoke a root callback; a failure is kept in ``errors``, not raised."""
        vm = self.vm
        if vm.failed is not None or vm.vm is None:
            return
        try:
            vm.invoke(name, args, root)
        except FilterTrapError as exc:
            self.errors.append(exc)
        for stream in list(vm.streams.values()):
            stream._apply_pending()

    def run_due(self) -> None:
        """Fire what is due now (after a VM call returned)."""
        if self.scheduler.next_due() is not None:
            self.scheduler.run_due()

    def advance(self, ms: float, until: Callable[[], bool] | None = None) -> bool:
        """Let ``ms`` of virtual time pass, firing what falls due.

        Returns:
            Whether ``until()`` became true on the way.
        """
        if ms < 0:
            raise ValueError("time cannot go backwards")
        target = self.vm.clock.now_ns() + int(ms * 1_000_000)
        return self.scheduler.advance_to(target, until)

    def wait(self, limit_ms: float, until: Callable[[], bool]) -> bool:
        """Let time pass event by event, up to ``limit_ms``, until ``until()``.

        Time moves only to events that exist; with none left it stops.
        """
        target = self.vm.clock.now_ns() + int(limit_ms * 1_000_000)
        while not until():
            due = self.scheduler.next_due()
            if due is None or due > target:
                return False
            self.scheduler.advance_to(due)
        return True

    def reset(self) -> None:
        """Forget pending events (the VM was restarted).

        Events already scheduled see the new generation and do nothing; the
        scheduler may be shared with other VMs, so it is not cleared.
        """
        self._generation += 1
        self.in_flight = 0

    # -- ticks ----------------------------------------------------------------------

    def set_tick_period(self, root: RootContext, period_ms: int) -> None:
        """(Re)arm the root's ticker; 0 stops it."""
        root.tick_period_ms = period_ms
        root.tick_generation += 1
        if period_ms > 0:
            self._arm_tick(root, root.tick_generation)

    def _arm_tick(self, root: RootContext, generation: int) -> None:
        vm_generation = self._generation

        def fire() -> None:
            if generation != root.tick_generation or vm_generation != self._generation:
                return
            self.call_root("proxy_on_tick", (root.id,), root)
            if generation == root.tick_generation and root.tick_period_ms > 0:
                self._arm_tick(root, generation)

        self.scheduler.after(root.tick_period_ms, fire)

    # -- HTTP callouts ------------------------------------------------------------

    def http_call(
        self,
        ctx: Context,
        cluster: str,
        headers: HeaderPairs,
        body: bytes,
        trailers: HeaderPairs,
        timeout_ms: int,
    ) -> tuple[WasmResult, int]:
        """Send a callout; the reply comes later through the root context."""
        if any(header_value(headers, name) is None for name in _REQUIRED):
            return WasmResult.BAD_ARGUMENT, 0
        if not 0 <= timeout_ms < 1 << 31:
            return WasmResult.BAD_ARGUMENT, 0  # Envoy: a negative timeout
        if cluster not in self.clusters:
            self.unknown_cluster(ctx, "proxy_http_call", cluster)
            return WasmResult.BAD_ARGUMENT, 0
        root = ctx.root
        if root is None:
            return WasmResult.BAD_ARGUMENT, 0
        limit = self.vm.limits.callouts
        if self.in_flight >= limit:
            raise quotas.exceeded(
                "HTTP callouts in flight", self.in_flight + 1, "callouts", limit
            )
        self.in_flight += 1
        self._next_token += 4
        headers = callouts.request_as_sent(headers, body)
        call = Callout(
            token=self._next_token,
            context_id=ctx.id,
            root_id=root.id,
            cluster=cluster,
            headers=headers,
            body=body,
            trailers=trailers,
            timeout_ms=timeout_ms,
            sent_ns=self.vm.clock.now_ns(),
        )
        self.callouts.append(call)
        answer = self.responder(call) if self.responder is not None else None
        if isinstance(answer, callouts.DispatchFailure | callouts.InlineReply):
            # Envoy's async client sent nothing (or answered inline, an answer
            # Envoy then drops): InternalFailure, the token is used up.
            self.in_flight -= 1
            call.delivered_ns = call.sent_ns
            if isinstance(answer, callouts.InlineReply):
                call.outcome, call.response = "inline_reply", answer.message
            else:
                call.outcome = "dispatch_failure"
            return WasmResult.INTERNAL_FAILURE, 0
        if isinstance(answer, HttpMessage):
            answer = CalloutReply(answer)
        generation = self._generation
        if answer is not None and (timeout_ms == 0 or answer.latency_ms < timeout_ms):
            reply = answer

            def deliver() -> None:
                if generation == self._generation:
                    self._deliver(call, root, reply.message, "response")

            self.scheduler.after(answer.latency_ms, deliver)
        elif timeout_ms > 0:
            timeout = LocalReply(504, body=b"upstream request timeout").to_message()

            def expire() -> None:
                if generation == self._generation:
                    self._deliver(call, root, timeout, "timeout")

            self.scheduler.after(timeout_ms, expire)
        return WasmResult.OK, call.token

    def unknown_cluster(self, ctx: Context, call: str, cluster: str) -> None:
        """Say, once per stream, that a callout named a cluster Envoy lacks."""
        known = ", ".join(sorted(self.clusters)) or "none"
        note = (
            f"{call} to cluster {cluster!r}: Envoy has no such cluster and "
            f"answers BadArgument (clusters: {known}); declare it with "
            f"clusters=[{cluster!r}] (--cluster {cluster}) or a responder table "
            "keyed by it"
        )
        stream = self.vm.streams.get(ctx.id)
        if stream is None:
            self.vm.log_host(LogLevel.WARN, note)
        elif note not in stream.notes:
            stream.notes.append(note)

    def _deliver(
        self,
        call: Callout,
        root: RootContext,
        message: HttpMessage | None,
        outcome: str,
    ) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        call.delivered_ns = self.vm.clock.now_ns()
        if message is None:
            call.outcome = "failure"
            root.last_status = (int(WasmResult.BROKEN_CONNECTION), b"reset")
            args = (root.id, call.token, 0, 0, 0)
        else:
            call.outcome = outcome
            call.response = message
            if outcome == "response":
                latency = (call.delivered_ns - call.sent_ns) / 1e6
                message = callouts.response_as_delivered(message, latency)
            root.last_status = (0, b"")
            trailers = message.trailers or []
            args = (
                root.id,
                call.token,
                len(message.headers),
                len(message.body),
                len(trailers),
            )
        self.reply = message
        try:
            self.call_root("proxy_on_http_call_response", args, root)
        finally:
            self.reply = None

    def reply_map(self, map_type: int) -> HeaderPairs | None:
        """Maps 6 and 7 while a callout reply is delivered (4 and 5: gRPC)."""
        if map_type in (4, 5):
            return self.grpc.metadata(map_type)
        reply = self.reply
        if reply is None:
            return None
        if map_type == 6:
            return reply.headers
        if map_type == 7:
            return reply.trailers or []
        return None

    # -- gRPC callouts (see wasmkit.host.grpc) -------------------------------------

    @property
    def generation(self) -> int:
        """Counts VM restarts; events scheduled before one do nothing."""
        return self._generation

    @property
    def grpc_calls(self) -> list[GrpcCall]:
        """Every gRPC call and stream the filter opened, in order."""
        return self.grpc.calls

    @property
    def grpc_responder(self) -> GrpcResponder | None:
        """What answers gRPC callouts (see :meth:`set_grpc_responder`)."""
        return self.grpc.responder

    def set_grpc_responder(
        self, responder: GrpcResponder | Mapping[str, Any] | None
    ) -> None:
        """Answer gRPC callouts with a function or a table.

        A table is keyed by ``cluster`` or ``cluster service/method`` (see
        :func:`wasmkit.host.grpc.grpc_table_responder`); its clusters exist for
        gRPC callouts besides those of HTTP callouts. A function accepts any
        cluster.
        """
        if responder is not None and not callable(responder):
            responder = grpc_table_responder(responder)
        self.grpc.responder = responder

    @property
    def grpc_message(self) -> bytes | None:
        """Buffer 5 (one gRPC message) while ``proxy_on_grpc_receive`` runs."""
        return self.grpc.message

    # -- queues ---------------------------------------------------------------------

    def queue_notifier(self, root: RootContext) -> Callable[[int], None]:
        """What a queue registered by ``root`` calls when an item arrives."""
        generation = self._generation

        def notify(qid: int) -> None:
            def fire() -> None:
                if generation == self._generation:
                    self.call_root("proxy_on_queue_ready", (root.id, qid), root)

            self.scheduler.after(0, fire)

        return notify


def decode_pairs(raw: bytes) -> HeaderPairs | None:
    """Pairs from guest bytes, names lower-cased; ``None`` if malformed."""
    try:
        return [(k.lower(), v) for k, v in pairs.decode(raw)]
    except pairs.PairsError:
        return None
