"""Replay exchanges through a filter: one VM, streams as in Envoy, virtual time.

Each exchange's request goes through the filter; unless the filter answered
it, the recorded response (or an upstream function's) comes back through the
response path. Virtual time follows the capture's timestamps, so ticks fire
between flows as they would have live. A flow whose filter call fails is
marked and replay goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from wasmkit.host.message import Connection, HttpMessage, response
from wasmkit.host.plugin import Plugin
from wasmkit.host.stream import StreamResult
from wasmkit.replay.results import FlowResult, ReplayResult


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


def _recorded(request: HttpMessage, exchange: Any) -> HttpMessage | None:
    answer: HttpMessage | None = exchange.to_response_message()
    return answer


def replay_exchanges(
    plugin: Plugin,
    exchanges: Iterable[ExchangeLike],
    *,
    options: ReplayOptions | None = None,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
) -> Iterator[FlowResult]:
    """Run each exchange through ``plugin``; yields one result per exchange.

    Args:
        plugin: a started plugin; its VM keeps state from flow to flow.
        exchanges: the captured exchanges, in order.
        options: chunking and timing.
        upstream: answers requests instead of the recorded responses.
        on_flow: called with each result (progress reporting).
    """
    opts = options or ReplayOptions()
    answer = upstream or _recorded
    vm = plugin.vm
    first: float | None = None
    start_ns = vm.clock.now_ns()
    for exchange in exchanges:
        stamp = exchange.timestamp
        if opts.follow_time and stamp is not None:
            if first is None:
                first = stamp
            due = start_ns + int((stamp - first) * 1e9)
            if due > vm.clock.now_ns():
                vm.advance((due - vm.clock.now_ns()) / 1e6)
        request = exchange.to_request_message()
        missing: list[bool] = []

        def respond(
            forwarded: HttpMessage,
            exchange: Any = exchange,
            missing: list[bool] = missing,
        ) -> HttpMessage:
            got = answer(forwarded, exchange)
            if got is None:
                # No recorded response (an error flow): Envoy would answer 503.
                missing.append(True)
                return response(
                    503, [("content-type", "text/plain")], "no upstream response"
                )
            return got

        began = time.perf_counter()
        result: StreamResult = plugin.run_http(
            request,
            respond,
            chunk_size=opts.chunk_size,
            connection=exchange.connection(),
            wait_ms=opts.wait_ms,
        )
        flow = FlowResult(
            index=exchange.index,
            exchange=exchange,
            result=result,
            micros=(time.perf_counter() - began) * 1e6,
            no_response=bool(missing),
        )
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
) -> ReplayResult:
    """Replay every exchange and collect the results."""
    flows = list(
        replay_exchanges(
            plugin, exchanges, options=options, upstream=upstream, on_flow=on_flow
        )
    )
    return ReplayResult(
        filter=name,
        flows=flows,
        metrics=plugin.vm.metrics.table(),
        callouts=list(plugin.vm.callouts),
    )
