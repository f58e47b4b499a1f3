"""How replay workers and the calling process exchange data.

Exchanges go to a worker in pieces, each a ``marshal`` list of batches of
:data:`BATCH_FLOWS` rows: flat rows of what the engine reads, read in place by
:class:`RowExchange` (with an ``upstream`` function, the warm-load cache's rows,
:func:`wasmkit.traffic.cache.encode`, rebuilt as exchanges; other exchange
types are pickled). A worker decodes a batch just before replaying it.
Results come back per batch (:class:`Packer`): positions, times and flags as
arrays, and one compact record per kept flow: the states after the filter as
changes to the states before it, and the before states themselves only when
the parent cannot rebuild them from its own exchanges. :class:`PackedFlow`
decodes its batch's records and rebuilds its :class:`StreamResult` when its
``result`` is first read.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import pickle
import time
from array import array
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
class Piece:
    """A worker's results for one piece of exchanges (see :class:`Packer`)."""

    records: list[tuple[bytes, bytes, bytes, bytes]]
    """Per batch of kept flows: their positions (``array('I')``), times in µs
    (``array('d')``), flags (a byte each: no response, failed) and ``marshal``
    of one record each (the rest, decoded when a result is first read)."""
    extras: list[Any]
    """Logs, trace, local reply, notes, callouts and error of flows that have any."""
    tables: list[Any]
    """The distinct metrics tables the records point to."""
    flows: int = 0
    """Flows the piece had (kept or not)."""
    seconds: float = 0.0
    """The worker's time on the piece (decoding, replaying, packing)."""
    totals: ReplayTotals | None = None
    """The worker's counts so far (compact replays), should it stop."""


@dataclass(slots=True)
class Ending:
    """What a worker reports once its last piece is done."""

    metrics: list[dict[str, Any]]
    callouts: list[Callout] = field(default_factory=list)
    name: str = ""
    totals: ReplayTotals | None = None


BATCH_FLOWS = 256
"""Exchanges a worker decodes at once (and results it packs at once): a
piece's rows are decoded batch by batch, just before they are replayed, and
the results packed after each batch, so that both are still in the CPU's
caches (a whole piece at once was 4 µs a flow slower)."""


def encode_exchanges(items: Sequence[Any], *, full: bool) -> tuple[str, bytes]:
    """One piece of exchanges for a worker, in batches of :data:`BATCH_FLOWS`.

    ``full``: the worker needs real :class:`Exchange` objects (an ``upstream``
    function receives them), sent as warm-load cache rows; otherwise flat rows
    of what the engine reads (:class:`RowExchange`). Other exchange types are
    pickled.
    """
    if all(type(e) is Exchange for e in items):
        row = cache.encode if full else _flat
        dumps = marshal.dumps
        with _no_gc():
            batches = [
                dumps([row(e) for e in items[i : i + BATCH_FLOWS]])
                for i in range(0, len(items), BATCH_FLOWS)
            ]
            return ("rows" if full else "flat"), dumps(batches)
    batches = [
        pickle.dumps(list(items[i : i + BATCH_FLOWS]), protocol=pickle.HIGHEST_PROTOCOL)
        for i in range(0, len(items), BATCH_FLOWS)
    ]
    return "pickle", marshal.dumps(batches)


def _flat(e: Exchange) -> tuple[Any, ...]:
    # The row :class:`RowExchange` reads: index, timestamp, the request's
    # parts, the response's (status ``None``: none to send) and the connection.
    rq = e.request
    rs = e.response
    trailers = rq.trailers
    stamp = e.timestamp_start
    if rs is None or e.error is not None:
        # No response to send: the capture's error in its place (the
        # router's 503 follows it).
        response: tuple[Any, ...] = (None, e.error, None, None)
    else:
        rs_trailers = rs.trailers
        response = (
            rs.status,
            rs.headers.fields,
            rs.body,
            None if rs_trailers is None else rs_trailers.fields,
        )
    return (
        e.index,
        rq.timestamp_start if stamp is None else stamp,
        rq.method,
        rq.scheme,
        rq.host,
        rq.port,
        rq.path,
        rq.headers.fields,
        rq.body,
        None if trailers is None else trailers.fields,
        rq.authority,
        *response,
        e.client_address,
        e.client_port,
        e.listen_address,
        e.listen_port,
        e.server_address,
        e.server_port,
        e.tls,
        e.tls_version,
        e.sni,
        e.mtls,
    )


def decode_exchanges(payload: tuple[str, bytes]) -> Iterator[list[Any]]:
    """The exchanges of one piece (:func:`encode_exchanges`), batch by batch."""
    kind, data = payload
    loads = marshal.loads
    for batch in loads(data):
        with _no_gc():
            if kind == "flat":
                yield [RowExchange(row) for row in loads(batch)]
            elif kind == "rows":
                yield [cache.decode(row) for row in loads(batch)]
            else:
                yield pickle.loads(batch)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    # Rows of plain tuples and bytes make no cycles: nothing for the collector
    # to find while thousands of them are made at once.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class RowExchange:
    """An exchange as a flat row (see :func:`encode_exchanges`), read in place.

    What the engine needs (:class:`ExchangeLike`), without building the
    :class:`Exchange`, its request, response and headers.
    """

    __slots__ = ("index", "row", "timestamp")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self.index: int = row[0]
        self.timestamp: float | None = row[1]

    def to_request_message(self) -> HttpMessage:
        r = self.row
        return model.request_message(
            r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]
        )

    def to_response_message(self) -> HttpMessage | None:
        r = self.row
        if r[11] is None:
            return None
        return model.response_message(r[11], r[12], r[13], r[14])

    @property
    def error(self) -> str | None:
        """The capture's error of a flow without a response."""
        r = self.row
        return None if r[11] is not None else r[12]

    def connection(self) -> Connection:
        r = self.row
        return model.connection_of(
            r[15], r[16], r[17], r[18], r[19], r[20], r[21], r[22], r[23], r[24]
        )


# -- results back: compact records -------------------------------------------------

# Header deltas: the same list, the before list plus a tail, or a new list.
_SAME, _TAIL, _NEW = 0, 1, 2
# Where the response as the upstream sent it comes from.
_NO_RESPONSE, _RECORDED, _STAND_IN, _SENT = 0, 1, 2, 3


def _delta(before: HttpMessage | None, after: HttpMessage | None) -> Any:
    if after is None:
        return None
    if before is None:
        return (_NEW, (after.headers, after.body, after.trailers))
    old = before.headers
    new = after.headers
    if new == old:
        headers: Any = _SAME
    else:
        size = len(old)
        if len(new) > size and new[:size] == old:
            headers = (_TAIL, new[size:])
        else:
            headers = (_NEW, new)
    body = after.body
    trailers = after.trailers
    return (
        headers,
        None if body is before.body or body == before.body else body,
        _SAME
        if trailers is before.trailers or trailers == before.trailers
        else (_NEW, trailers),
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
    """Turns a worker's flows into compact records, batch by batch."""

    def __init__(self, upstream: Upstream | None) -> None:
        self.upstream = upstream
        self.positions = array("I")
        self.micros = array("d")
        self.flags = bytearray()
        self.records: list[tuple[Any, ...]] = []
        self.blobs: list[tuple[bytes, bytes, bytes, bytes]] = []
        self.extras: list[Any] = []
        self.tables: list[Any] = []

    def flush(self) -> None:
        """Packs the records added since the last flush (a batch)."""
        if self.records:
            self.blobs.append(
                (
                    self.positions.tobytes(),
                    self.micros.tobytes(),
                    bytes(self.flags),
                    marshal.dumps(self.records),
                )
            )
            self.positions = array("I")
            self.micros = array("d")
            self.flags.clear()
            self.records.clear()

    def take(self, flows: int, began: float) -> Piece:
        """The records added since the last call: ``flows`` flows since ``began``."""
        self.flush()
        seconds = time.perf_counter() - began
        piece = Piece(self.blobs, self.extras, self.tables, flows, seconds)
        self.blobs, self.extras, self.tables = [], [], []
        return piece

    def add(self, position: int, flow: FlowResult, request: HttpMessage) -> None:
        """Record one flow; ``request`` is the message the parent will rebuild."""
        r = flow.result
        before = r.request_before
        # The client's request (the connection manager's input, when there
        # is one) is sent only when the parent cannot rebuild it.
        client = r.client_request if r.client_request is not None else before
        if client is request or (
            client.headers == request.headers
            and client.body == request.body
            and client.trailers == request.trailers
        ):
            sent = None
        else:
            sent = (client.headers, client.body, client.trailers)
        seen = None if r.client_request is None else _delta(client, before)
        response = r.response_before
        recorded = None
        if response is None:
            kind, upstream = _NO_RESPONSE, None
        elif self.upstream is not None or flow.no_response:
            # The router's 503 of a flow without a response follows the
            # capture's error, which the parent's rows do not carry.
            kind, upstream = _SENT, (response.headers, response.body, response.trailers)
        else:
            kind, upstream = _RECORDED, None
            recorded = _delta(flow.exchange.to_response_message(), response)
        tables = self.tables
        metrics = r.metrics
        if not tables or (tables[-1] is not metrics and tables[-1] != metrics):
            tables.append(metrics)
        extra = -1
        error = r.error
        if r.logs or r.trace or r.local_reply or r.notes or r.callouts or error:
            state = (
                None if error is None else (type(error), str(error), dict(vars(error)))
            )
            extra = len(self.extras)
            self.extras.append(
                (r.logs, r.trace, r.local_reply, r.notes, r.callouts, state)
            )
        self.positions.append(position)
        self.micros.append(flow.micros)
        self.flags.append(flow.no_response | (error is not None) << 1)
        self.records.append(
            (
                r.context_id,
                r.request_forwarded,
                r.stalled,
                r.reset,
                sent,
                _delta(before, r.request_after),
                kind,
                upstream,
                _delta(response, r.response_after),
                len(tables) - 1,
                extra,
                seen,
                recorded,
                _delta(r.request_after, r.upstream_request),
                _delta(r.response_after, r.client_response),
                r.host_changes or None,
                r.details,
            )
        )


class _Batch:
    # One batch of a piece's records, decoded when a result is first read.
    __slots__ = ("blob", "piece", "records")

    def __init__(self, piece: Piece, blob: bytes) -> None:
        self.piece = piece
        self.blob = blob
        self.records: list[tuple[Any, ...]] | None = None

    def record(self, i: int) -> tuple[Any, ...]:
        records = self.records
        if records is None:
            records = self.records = marshal.loads(self.blob)
            self.blob = b""
        return records[i]


_RESULT = FlowResult.__dict__["result"]  # the slot behind FlowResult.result


class PackedFlow(FlowResult):
    # A flow replayed by a worker: its result is rebuilt when first read.
    __slots__ = ("_batch", "_failed", "_i")

    def __init__(
        self,
        exchange: Any,
        micros: float,
        flags: int,
        batch: _Batch,
        i: int,
    ) -> None:
        self.index = exchange.index
        self.exchange = exchange
        self.micros = micros
        self.no_response = bool(flags & 1)
        self._failed = bool(flags & 2)
        self._batch = batch
        self._i = i

    @property
    def result(self) -> StreamResult:
        try:
            made: StreamResult = _RESULT.__get__(self, FlowResult)
        except AttributeError:
            batch = self._batch
            made = _unpack(self.exchange, batch.record(self._i), batch.piece)
            _RESULT.__set__(self, made)
        return made

    @result.setter
    def result(self, value: StreamResult) -> None:
        _RESULT.__set__(self, value)

    @property
    def failed(self) -> bool:
        """The filter failed on this flow."""
        return self._failed


def _unpack(exchange: Any, record: tuple[Any, ...], piece: Piece) -> StreamResult:
    (
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
        seen,
        recorded,
        upstream_request,
        client_response,
        host_changes,
        details,
    ) = record
    client = exchange.to_request_message() if request is None else HttpMessage(*request)
    before = client if seen is None else _undelta(client, seen)
    assert before is not None
    if kind == _RECORDED:
        upstream = exchange.to_response_message()
        if recorded is not None:
            upstream = _undelta(upstream, recorded)
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
        logs, trace, reply, notes, callouts, state = piece.extras[extra]
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
        for m in piece.tables[table]
    ]
    after = _undelta(before, request_after)
    response_out = _undelta(upstream, response_after)
    return StreamResult(
        before,
        after,
        forwarded,
        upstream,
        response_out,
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
        client_request=None if seen is None else client,
        upstream_request=_undelta(after, upstream_request),
        client_response=_undelta(response_out, client_response),
        host_changes=list(host_changes or ()),
        details=details,
    )


def unpack_piece(
    piece: Piece, exchanges: Sequence[Any], start: int
) -> list[FlowResult]:
    """The flows of one piece; a record's position counts from ``start``."""
    flows: list[FlowResult] = []
    with young_gc_only():
        for positions, micros, flags, blob in piece.records:
            batch = _Batch(piece, blob)
            where = array("I", positions).tolist()
            took = array("d", micros).tolist()
            flows += [
                PackedFlow(exchanges[start + where[i]], took[i], flag, batch, i)
                for i, flag in enumerate(flags)
            ]
    return flows
