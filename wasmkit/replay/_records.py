"""A partition's results in compact form, as a worker sends them back.

Per batch of kept flows (:class:`Packer`): positions, times and flags as
arrays, and one ``marshal`` record per flow: the states after the filter as
changes to the states before it, and the before states themselves only when
the submitting process cannot rebuild them from the flow's exchange (which it
reads back from the capture's cache entry, :class:`wasmkit.replay.partitions.Rows`).
:class:`PackedFlow` reads its exchange and rebuilds its :class:`StreamResult`
when first asked for them.
"""

from __future__ import annotations

import marshal
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wasmkit.host.message import HttpMessage
from wasmkit.host.stream import StreamResult
from wasmkit.replay.engine import Upstream, missing_response, young_gc_only
from wasmkit.replay.results import FlowResult

if TYPE_CHECKING:
    from wasmkit.host.callouts import Callout
    from wasmkit.replay.partitions import Rows


@dataclass(slots=True)
class Piece:
    """A partition's kept flows (see :class:`Packer`)."""

    records: list[tuple[bytes, bytes, bytes, bytes, bytes]]
    """Per batch of kept flows: their positions (``array('I')``), indexes
    (``array('q')``), times in µs
    (``array('d')``), flags (a byte each: no response, failed) and ``marshal``
    of one record each (the rest, decoded when a result is first read)."""
    extras: list[Any]
    """Logs, trace, local reply, notes, callouts and error of flows that have any."""
    tables: list[Any]
    """The distinct metrics tables the records point to."""


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
        self.indexes = array("q")
        self.micros = array("d")
        self.flags = bytearray()
        self.records: list[tuple[Any, ...]] = []
        self.blobs: list[tuple[bytes, bytes, bytes, bytes, bytes]] = []
        self.extras: list[Any] = []
        self.tables: list[Any] = []

    def flush(self) -> None:
        """Packs the records added since the last flush (a batch)."""
        if self.records:
            self.blobs.append(
                (
                    self.positions.tobytes(),
                    self.indexes.tobytes(),
                    self.micros.tobytes(),
                    bytes(self.flags),
                    marshal.dumps(self.records),
                )
            )
            self.positions = array("I")
            self.indexes = array("q")
            self.micros = array("d")
            self.flags.clear()
            self.records.clear()

    def take(self) -> Piece:
        """Every record added so far."""
        self.flush()
        piece = Piece(self.blobs, self.extras, self.tables)
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
        self.indexes.append(flow.index)
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
                r.memory_bytes,
                r.fuel,
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
_EXCHANGE = FlowResult.__dict__["exchange"]


class PackedFlow(FlowResult):
    # A flow replayed by a worker: its exchange is read back and its result
    # rebuilt when first asked for.
    __slots__ = ("_batch", "_failed", "_i", "_position", "_rows")

    def __init__(
        self,
        index: int,
        rows: Rows,
        position: int,
        micros: float,
        flags: int,
        batch: _Batch,
        i: int,
    ) -> None:
        self.index = index
        self._rows = rows
        self._position = position
        self.micros = micros
        self.no_response = bool(flags & 1)
        self._failed = bool(flags & 2)
        self._batch = batch
        self._i = i

    @property
    def exchange(self) -> Any:
        try:
            return _EXCHANGE.__get__(self, FlowResult)
        except AttributeError:
            made = self._rows.get(self._position)
            _EXCHANGE.__set__(self, made)
            return made

    @exchange.setter
    def exchange(self, value: Any) -> None:
        _EXCHANGE.__set__(self, value)

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
        memory_bytes,
        fuel,
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
        memory_bytes=memory_bytes,
        fuel=fuel,
    )


def unpack(piece: Piece, rows: Rows) -> list[FlowResult]:
    """The flows of one partition's piece, their results rebuilt when read."""
    flows: list[FlowResult] = []
    with young_gc_only():
        for positions, indexes, micros, flags, blob in piece.records:
            batch = _Batch(piece, blob)
            where = array("I", positions).tolist()
            numbers = array("q", indexes).tolist()
            took = array("d", micros).tolist()
            flows += [
                PackedFlow(numbers[i], rows, where[i], took[i], flag, batch, i)
                for i, flag in enumerate(flags)
            ]
    return flows
