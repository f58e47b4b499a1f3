"""Replay exchanges through a filter: one VM, streams as in Envoy, virtual time.

Each exchange's request goes through the filter; unless the filter answered
it, the recorded response (or an upstream function's) comes back through the
response path. Virtual time follows the capture's timestamps, so ticks fire
between flows as they would have live. A flow whose filter call fails is
marked and replay goes on.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from wasmkit.host import connection_manager as hcm
from wasmkit.host.connection_manager import (
    ENVOY_DEFAULTS,
    ConnectionManager,
    UpstreamReset,
)
from wasmkit.host.message import Connection, HttpMessage
from wasmkit.host.plugin import FilterVm, Plugin
from wasmkit.host.properties import StreamInfo
from wasmkit.host.stream import run_exchange
from wasmkit.replay.results import FlowCollector, FlowResult, Keep, ReplayResult


class ExchangeLike(Protocol):
    """What the engine needs of a captured exchange."""

    @property
    def index(self) -> int:
        """Position of the flow in its capture."""
        ...

    def to_request_message(self) -> HttpMessage:
        """The request as the client sent it, with Envoy's pseudo-headers."""
        ...

    def to_response_message(self) -> HttpMessage | None:
        """The recorded response, ``None`` when the flow has none."""
        ...

    def connection(self) -> Connection:
        """The client connection."""
        ...

    @property
    def timestamp(self) -> float | None:
        """When the request started (seconds since the epoch)."""
        ...


Upstream = Callable[[HttpMessage, Any], HttpMessage | None]
"""Answers a request the filter passed on: ``(request, exchange) -> response``."""


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay."""

    chunk_size: int | None = None
    """Deliver bodies in chunks of this many bytes (default: one chunk)."""
    follow_time: bool = True
    """Advance the virtual clock to each flow's timestamp (fires ticks)."""
    wait_ms: float = 15_000
    """Virtual time a paused stream may wait for callouts and ticks."""
    connection_manager: ConnectionManager | None = ENVOY_DEFAULTS
    """What Envoy's connection manager and router do around the filter
    (:mod:`wasmkit.host.connection_manager`); ``None``: nothing."""


def _recorded(request: HttpMessage, exchange: Any) -> HttpMessage | None:
    answer: HttpMessage | None = exchange.to_response_message()
    return answer


MAX_CLOCK_NS = (1 << 63) - (1 << 60)
"""The latest virtual time a capture may move the clock to (about year 2226):
times the guest reads stay within a signed 64-bit count of nanoseconds."""


def advance_clock(vm: FilterVm, due_ns: int) -> str | None:
    """Move ``vm``'s virtual clock to ``due_ns`` (if later), firing what is due.

    At most ``Limits.ticks_per_gap`` events fire on the way; past that the
    rest of the gap is skipped as a timer idle that long fires once: each
    event still due fires once at ``due_ns`` (tickers then go on from there).

    Returns:
        A note saying what was skipped, or ``None``.
    """
    clock = vm.clock
    now = clock.now_ns()
    due_ns = min(due_ns, MAX_CLOCK_NS)
    if due_ns <= now:
        return None
    scheduler = vm.events.scheduler
    next_due = scheduler.next_due()
    if next_due is None or next_due > due_ns:
        clock.set_ns(due_ns)  # nothing falls due on the way
        return None
    limit = vm.limits.ticks_per_gap
    stopped = scheduler.advance_bounded(due_ns, limit)
    if stopped < 0:
        return None
    skipped = sum(
        (due_ns - stopped) // (root.tick_period_ms * 1_000_000)
        for root in (p.root for p in vm.plugins)
        if root is not None and root.tick_period_ms > 0
    )
    clock.set_ns(due_ns)
    vm.events.run_due()
    return (
        f"virtual time jumped {(due_ns - now) / 1e9:,.3f} s: {limit:,} timer events "
        f"fired, about {skipped:,} ticks skipped past Limits.ticks_per_gap"
    )


@contextlib.contextmanager
def young_gc_only() -> Iterator[None]:
    """Hold CPython's full (oldest-generation) collections until the block ends.

    A replay keeps every flow's result; each full collection walks all of them
    (and the loaded capture) again, which made up a third of a large replay's
    time. Young collections go on, so cycles that die within a flow are still
    freed; the threshold is restored afterwards (also on errors).
    """
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, _NO_FULL)
    try:
        yield
    finally:
        now = gc.get_threshold()
        if now == (young, middle, _NO_FULL):  # unless someone else changed it
            gc.set_threshold(young, middle, old)


_NO_FULL = 1 << 30


class _Unset:
    # "Not given" for arguments where None means something.
    pass


_UNSET = _Unset()


class _Responder:
    # The upstream of one flow: the recorded (or ``upstream``'s) response, or
    # Envoy's 503 when there is none.
    __slots__ = ("answer", "exchange", "missing", "reads_request")

    def __init__(self, answer: Upstream) -> None:
        self.answer = answer
        self.exchange: Any = None
        self.missing = False
        self.reads_request = answer is not _recorded

    def __call__(self, forwarded: HttpMessage) -> HttpMessage | UpstreamReset:
        got = self.answer(forwarded, self.exchange)
        if got is None:
            # No recorded response (an error flow): Envoy's router answers 503
            # with the reset reason the capture's error implies.
            self.missing = True
            return UpstreamReset(
                hcm.reset_reason(getattr(self.exchange, "error", None))
            )
        return got


def missing_response(error: str | None = None) -> HttpMessage:
    """The 503 Envoy's router answers a flow without a recorded response with.

    ``error`` is the capture's error message: a refused connection gives
    ``reset reason: remote connection failure``, anything else ``connection
    termination`` (see :func:`wasmkit.host.connection_manager.reset_reason`).
    """
    return hcm.router_reply(hcm.reset_reason(error))


class FlowRunner:
    """Runs exchanges through a plugin one at a time (the engine's loop body).

    Args:
        plugin: a started plugin.
        options: chunking and timing.
        upstream: answers requests instead of the recorded responses.
        origin: the capture time virtual time zero stands for (seconds since
            the epoch); by default the first flow's.
        connection_manager: what Envoy's connection manager and router do
            around the filter (default: ``options``'s, Envoy's defaults);
            ``None``: nothing.
    """

    def __init__(
        self,
        plugin: Plugin,
        options: ReplayOptions | None = None,
        upstream: Upstream | None = None,
        origin: float | None = None,
        *,
        connection_manager: ConnectionManager | _Unset | None = _UNSET,
    ) -> None:
        opts = options or ReplayOptions()
        self.connection_manager = (
            opts.connection_manager
            if isinstance(connection_manager, _Unset)
            else connection_manager
        )
        self.plugin = plugin
        # The recorded responses are fresh messages: streams keep them as they are.
        self.owned = upstream is None
        self.upstream = upstream
        self._respond = _Responder(upstream or _recorded)
        self._follow = opts.follow_time
        self._chunk_size = opts.chunk_size
        self._wait_ms = opts.wait_ms
        self._origin = origin
        self._start_ns = plugin.vm.clock.now_ns()
        self.request: HttpMessage | None = None
        """The request message of the last flow run."""

    def run(self, exchange: ExchangeLike) -> FlowResult:
        """Replay one exchange."""
        stamp = exchange.timestamp
        jumped = None
        if self._follow and stamp is not None and math.isfinite(stamp):
            if self._origin is None:
                self._origin = stamp
            due = self._start_ns + int(
                max(-1e12, min(1e12, stamp - self._origin)) * 1e9
            )
            jumped = advance_clock(self.plugin.vm, due)
        respond = self._respond
        respond.exchange = exchange
        respond.missing = False
        began = time.perf_counter()
        fuel_before = self._fuel_used()
        self.request = request = exchange.to_request_message()
        # request.duration and response.backend_latency as captured;
        # request.time stays the virtual clock's (which follows the capture),
        # so it agrees with the filter's own clock.
        info = StreamInfo.from_exchange(exchange, start=False)
        if info.duration_ns is not None or info.backend_latency_ns is not None:
            self.plugin.vm.next_stream_info = info
        result = run_exchange(
            self.plugin,
            request,
            respond,
            chunk_size=self._chunk_size,
            connection=exchange.connection(),
            wait_ms=self._wait_ms,
            owned=self.owned,
            connection_manager=self.connection_manager,
            request_id=functools.partial(
                hcm.flow_request_id, self.plugin.vm.seed, exchange.index
            ),
        )
        if jumped is not None:
            result.notes.insert(0, jumped)
        micros = (time.perf_counter() - began) * 1e6
        # What the Resources view plots: memory after the flow, its fuel.
        result.memory_bytes = self.plugin.vm.memory_region()[1] or None
        fuel_after = self._fuel_used()
        if fuel_before is not None and fuel_after is not None:
            result.fuel = max(0, fuel_after - fuel_before)
        return FlowResult(exchange.index, exchange, result, micros, respond.missing)

    def _fuel_used(self) -> int | None:
        # Fuel the VM consumed so far; None without fuel metering (or a VM).
        vm = self.plugin.vm.vm
        if vm is None or not vm.module.fuel:
            return None
        return vm.fuel_used


def replay_exchanges(
    plugin: Plugin,
    exchanges: Iterable[ExchangeLike],
    *,
    options: ReplayOptions | None = None,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
    origin: float | None = None,
) -> Iterator[FlowResult]:
    """Run each exchange through ``plugin``; yields one result per exchange.

    Args:
        plugin: a started plugin; its VM keeps state from flow to flow.
        exchanges: the captured exchanges, in order.
        options: chunking and timing.
        upstream: answers requests instead of the recorded responses.
        on_flow: called with each result (progress reporting).
        origin: the capture time that virtual time zero stands for (seconds
            since the epoch); by default the first flow's timestamp.
    """
    run = FlowRunner(plugin, options, upstream, origin).run
    with young_gc_only():
        for exchange in exchanges:
            flow = run(exchange)
            if on_flow is not None:
                on_flow(flow)
            yield flow


def replay_all(
    plugin: Plugin,
    exchanges: Iterable[ExchangeLike],
    *,
    name: str = "",
    options: ReplayOptions | None = None,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
    keep: Keep = "all",
    max_kept: int | None = None,
) -> ReplayResult:
    """Replay every exchange and collect the results.

    ``keep`` and ``max_kept`` choose which flows are kept in full (see
    :class:`wasmkit.replay.results.FlowCollector`); ``on_flow`` sees every one.
    """
    collector = FlowCollector(keep, max_kept)
    for flow in replay_exchanges(
        plugin, exchanges, options=options, upstream=upstream, on_flow=on_flow
    ):
        collector.add(flow)
    return ReplayResult(
        filter=name,
        flows=collector.flows,
        metrics=plugin.vm.metrics.table(),
        callouts=list(plugin.vm.callouts),
        keep=keep,
        counted=collector.counted(),
    )
