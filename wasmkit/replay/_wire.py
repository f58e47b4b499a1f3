"""How replay workers and the calling process exchange data.

Exchanges go to a worker as ``marshal`` rows (the warm-load cache's layout,
:func:`wasmkit.traffic.cache.encode`), one blob per row, decoded as the worker
reaches it and read in place by :class:`RowExchange`; other exchange types are
pickled. Results come back as compact records, one
per kept flow (:class:`Packer`): the states after the filter as changes to the
states before it, and the before states themselves only when the parent
cannot rebuild them from its own exchanges. :class:`PackedFlow` rebuilds a
flow's :class:`StreamResult` when its ``result`` is first read.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasmkit.host.callouts import Callout
from wasmkit.host.message import Connection, HttpMessage
from wasmkit.host.stream import StreamResult
from wasmkit.replay.engine import Upstream, missing_response, young_gc_only
from wasmkit.replay.results import FlowResult, ReplayTotals
from wasmkit.traffic import cache, model
from wasmkit.traffic.model import Exchange


@dataclass(slots=True)
class Chunk:
    records: list[bytes]
    """``marshal`` of one record per kept flow (see :class:`Packer`), by piece."""
    extras: list[Any]
    """Logs, trace, local reply, notes, callouts and error of flows that have any."""
    tables: list[Any]
    """The distinct metrics tables the records point to."""
    metrics: list[dict[str, Any]]
    callouts: list[Callout] = field(default_factory=list)
    name: str = ""
    totals: ReplayTotals | None = None


def encode_exchanges(items: Sequence[Any]) -> tuple[str, bytes]:
    if all(type(e) is Exchange for e in items):
        # One blob per row, decoded just before its flow is replayed: the
        # row's objects are then fresh in the cache, not made a piece ago.
        dumps = marshal.dumps
        with _no_gc():
            return "rows", dumps([dumps(cache.encode(e)) for e in items])
    return "pickle", pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL)


def decode_exchanges(payload: tuple[str, bytes], *, full: bool) -> Iterator[Any]:
    # ``full``: real Exchange objects (an ``upstream`` function receives them);
    # otherwise views of the rows, which the engine reads just as well.
    kind, data = payload
    if kind == "rows":
        loads = marshal.loads
        rows = loads(data)
        if full:
            return (cache.decode(loads(row)) for row in rows)
        return (RowExchange(loads(row)) for row in rows)
    with _no_gc():
        items: list[Any] = pickle.loads(data)
    return iter(items)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    # Rows of plain tuples and bytes make no cycles: nothing for the collector
    # to find while millions of them are made at once.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class RowExchange:
    """An exchange as a :func:`wasmkit.traffic.cache.encode` row, read in place.

    What the engine needs (:class:`ExchangeLike`), without building the
    :class:`Exchange`, its request, response and headers.
    """

    __slots__ = ("row",)

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row

    @property
    def index(self) -> int:
        index: int = self.row[0]
        return index

    @property
    def timestamp(self) -> float | None:
        row = self.row
        stamp: float | None = row[16] if row[16] is not None else row[1][10]
        return stamp

    def to_request_message(self) -> HttpMessage:
        rq = self.row[1]
        return model.request_message(
            rq[0], rq[1], rq[2], rq[3], rq[4], rq[6], rq[7], rq[8], rq[9]
        )

    def to_response_message(self) -> HttpMessage | None:
        row = self.row
        rs = row[2]
        if rs is None or row[3] is not None:
            return None
        return model.response_message(rs[0], rs[3], rs[4], rs[5])

    def connection(self) -> Connection:
        row = self.row
        return model.connection_of(
            row[5], row[6], row[7], row[8], row[9], row[10], row[11], row[12],
            row[13], row[15],
        )  # fmt: skip


# -- results back: compact records -------------------------------------------------

# Header deltas: the same list, the before list plus a tail, or a new list.
_SAME, _TAIL, _NEW = 0, 1, 2
# Where the response as the upstream sent it comes from.
_NO_RESPONSE, _RECORDED, _STAND_IN, _SENT = 0, 1, 2, 3


def _message(m: HttpMessage) -> tuple[Any, ...]:
    return (m.headers, m.body, m.trailers)


def _delta(before: HttpMessage | None, after: HttpMessage | None) -> Any:
    if after is None:
        return None
    if before is None:
        return (_NEW, _message(after))
    old, new = before.headers, after.headers
    size = len(old)
    if new == old:
        headers: Any = _SAME
    elif len(new) > size and new[:size] == old:
        headers = (_TAIL, new[size:])
    else:
        headers = (_NEW, new)
    body = after.body
    trailers = after.trailers
    return (
        headers,
        None if body == before.body else body,
        _SAME if trailers == before.trailers else (_NEW, trailers),
    )


def _undelta(before: HttpMessage | None, delta: Any) -> HttpMessage | None:
    if delta is None:
        return None
    if before is None:
        headers, body, trailers = delta[1]
        return HttpMessage(headers, body, trailers)
    head, body, tail = delta
    if head == _SAME:
        headers = list(before.headers)
    elif head[0] == _TAIL:
        headers = before.headers + head[1]
    else:
        headers = head[1]
    return HttpMessage(
        headers,
        before.body if body is None else body,
        (None if before.trailers is None else list(before.trailers))
        if tail == _SAME
        else tail[1],
    )


class Packer:
    """Turns a worker's flows into compact records."""

    def __init__(self, upstream: Upstream | None) -> None:
        self.upstream = upstream
        self.records: list[tuple[Any, ...]] = []
        self.extras: list[Any] = []
        self.tables: list[Any] = []

    def add(self, position: int, flow: FlowResult, request: HttpMessage) -> None:
        r = flow.result
        before = r.request_before
        same_request = before is request or (
            before.headers == request.headers
            and before.body == request.body
            and before.trailers == request.trailers
        )
        response = r.response_before
        if response is None:
            kind = _NO_RESPONSE
        elif self.upstream is not None:
            kind = _SENT
        else:
            kind = _STAND_IN if flow.no_response else _RECORDED
        tables = self.tables
        metrics = r.metrics
        if not tables or tables[-1] != metrics:
            tables.append(metrics)
        extra = -1
        if r.logs or r.trace or r.local_reply or r.notes or r.callouts or r.error:
            error = r.error
            state = (
                None if error is None else (type(error), str(error), dict(vars(error)))
            )
            extra = len(self.extras)
            self.extras.append(
                (r.logs, r.trace, r.local_reply, r.notes, r.callouts, state)
            )
        self.records.append(
            (
                position,
                flow.micros,
                flow.no_response,
                r.context_id,
                r.request_forwarded,
                r.stalled,
                r.reset,
                None if same_request else _message(before),
                _delta(before, r.request_after),
                kind,
                _message(response) if kind == _SENT and response else None,
                _delta(response, r.response_after),
                len(tables) - 1,
                extra,
            )
        )


_RESULT = FlowResult.__dict__["result"]  # the slot behind FlowResult.result


class PackedFlow(FlowResult):
    # A flow replayed by a worker: its result is rebuilt when first read.
    __slots__ = ("_chunk", "_failed", "_record")

    def __init__(
        self, exchange: Any, record: tuple[Any, ...], chunk: Chunk, failed: bool
    ) -> None:
        self.index = exchange.index
        self.exchange = exchange
        self.micros = record[1]
        self.no_response = record[2]
        self._record = record
        self._chunk = chunk
        self._failed = failed

    @property
    def result(self) -> StreamResult:
        try:
            made: StreamResult = _RESULT.__get__(self, FlowResult)
        except AttributeError:
            made = _unpack(self.exchange, self._record, self._chunk)
            _RESULT.__set__(self, made)
        return made

    @result.setter
    def result(self, value: StreamResult) -> None:
        _RESULT.__set__(self, value)

    @property
    def failed(self) -> bool:
        """The filter failed on this flow."""
        return self._failed


def _unpack(exchange: Any, record: tuple[Any, ...], chunk: Chunk) -> StreamResult:
    (
        _,
        _,
        _,
        context_id,
        forwarded,
        stalled,
        reset,
        request,
        request_after,
        kind,
        response,
        response_after,
        table,
        extra,
    ) = record
    before = exchange.to_request_message() if request is None else HttpMessage(*request)
    if kind == _RECORDED:
        upstream = exchange.to_response_message()
    elif kind == _STAND_IN:
        upstream = missing_response()
    elif kind == _SENT:
        upstream = HttpMessage(*response)
    else:
        upstream = None
    logs: list[Any] = []
    trace: list[Any] = []
    reply = None
    notes: list[str] = []
    callouts: list[Callout] = []
    error = None
    if extra >= 0:
        logs, trace, reply, notes, callouts, state = chunk.extras[extra]
        logs, trace, notes, callouts = (
            list(logs),
            list(trace),
            list(notes),
            list(callouts),
        )
        if state is not None:
            cls, message, attrs = state
            error = cls.__new__(cls)
            Exception.__init__(error, message)
            vars(error).update(attrs)
    metrics = [
        {**m, "samples": None if m["samples"] is None else list(m["samples"])}
        for m in chunk.tables[table]
    ]
    return StreamResult(
        before,
        _undelta(before, request_after),
        forwarded,
        upstream,
        _undelta(upstream, response_after),
        reply,
        logs,
        trace,
        error,
        stalled,
        reset,
        context_id,
        notes,
        callouts,
        metrics,
    )


def unpack_chunk(chunk: Chunk, exchanges: Sequence[Any]) -> list[FlowResult]:
    flows: list[FlowResult] = []
    failed = {i for i, extra in enumerate(chunk.extras) if extra[5] is not None}
    with young_gc_only():
        for piece in chunk.records:
            flows += [
                PackedFlow(exchanges[record[0]], record, chunk, record[13] in failed)
                for record in marshal.loads(piece)
            ]
    return flows
