"""Replay in several processes: the capture split into contiguous chunks.

Each worker loads its own VM and replays one contiguous run of the capture's
exchanges, in capture order; the results come back in capture order. The
calling process is the first worker: it replays the first chunk while the
others start, so start-up costs only what it takes one process to start.

What differs from one worker:

* VM state does not carry across workers. Shared data, queues, metrics and
  anything a filter keeps in memory start fresh in every worker, and context
  ids are numbered per worker VM. A stateless filter gives the same records
  as with one worker (apart from context ids and durations); a stateful one
  (rate limits, counters) sees only its own chunk's traffic.
* Virtual time is aligned: every worker's clock starts where one VM's clock
  would stand at its first flow (ticks due before that fire in the worker
  first), to within a nanosecond of rounding.
* The filter, its options, ``upstream`` and ``vm_options`` values (a
  ``responder``...) go to the workers by pickling: pass a path, wasm bytes or
  WAT text (not a compiled module), and module-level functions.
* The exchanges are read in the parent (memory: the whole capture) and sent
  to the workers as compact rows (``marshal``, as the warm-load cache stores
  them; other exchange types are pickled), in pieces of
  :data:`PIECE_FLOWS`: a worker replays its first piece while the parent
  encodes the next ones. Results come back compact too, piece by piece:
  only what the parent cannot rebuild from its own exchanges (the states
  after the filter as changes, logs, trace, errors), decoded when a flow's
  ``result`` is first read. ``on_flow`` runs in the parent, in capture order.
* Metrics are merged: counters and histograms add up across workers, a gauge
  keeps the last worker's value. Callouts are concatenated in chunk order.

Workers start with the ``spawn`` method, so each pays one interpreter start
and one module compile: worth it for thousands of flows, not for ten.
"""

from __future__ import annotations

import contextlib
import marshal
import multiprocessing
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from wasmkit.host.callouts import Callout
from wasmkit.host.plugin import load
from wasmkit.host.vm import CompiledModule, Limits, compile_module
from wasmkit.replay import _wire
from wasmkit.replay.engine import (
    ExchangeLike,
    FlowRunner,
    ReplayOptions,
    Upstream,
    young_gc_only,
)
from wasmkit.replay.results import (
    FlowCollector,
    FlowResult,
    Keep,
    ReplayResult,
    ReplayTotals,
)

FilterSource = bytes | str | os.PathLike[str]


@dataclass(slots=True)
class _Job:
    filter: FilterSource
    config: bytes | str
    root_id: str
    fail_open: bool
    options: ReplayOptions
    upstream: Upstream | None
    vm_options: dict[str, Any]
    origin: float | None
    """The first timestamp of the whole replay (virtual time zero)."""
    keep: Keep = "all"
    max_kept: int | None = None


def _first_stamp(exchanges: Sequence[ExchangeLike]) -> float | None:
    for exchange in exchanges:
        if exchange.timestamp is not None:
            return exchange.timestamp
    return None


# -- exchanges to the workers ------------------------------------------------------


_COMPILED: dict[tuple[Any, bool], CompiledModule] = {}
"""Modules a worker process compiled while the parent prepared its chunk."""


def _fuel(vm_options: dict[str, Any]) -> bool:
    limits = vm_options.get("limits")
    return isinstance(limits, Limits) and limits.fuel is not None


def _warm_up(filter: FilterSource, fuel: bool) -> None:
    # Runs first in a new worker: imports done and the module compiled while
    # the parent still encodes the exchanges.
    key = (filter, fuel)
    if key not in _COMPILED:
        _COMPILED[key] = compile_module(filter, fuel=fuel)


class _Run:
    # A worker's replay in progress, in the worker process: it is fed its
    # exchanges piece by piece (each a call), in order, by one parent.
    __slots__ = ("collector", "full", "gc", "packer", "plugin", "position", "runner")

    def __init__(self, job: _Job) -> None:
        fuel = _fuel(job.vm_options)
        source: FilterSource | CompiledModule = _COMPILED.get(
            (job.filter, fuel), job.filter
        )
        self.plugin = load(
            source,
            config=job.config,
            root_id=job.root_id,
            fail_open=job.fail_open,
            **job.vm_options,
        )
        self.runner = FlowRunner(self.plugin, job.options, job.upstream, job.origin)
        self.collector = FlowCollector(job.keep, job.max_kept)
        self.packer = _wire.Packer(job.upstream)
        self.full = job.upstream is not None
        self.position = 0
        # Full collections held from the first piece to the last (not just
        # within each piece: each release would walk the whole heap).
        self.gc = contextlib.ExitStack()
        self.gc.enter_context(young_gc_only())


_RUN: list[_Run] = []
"""The worker process's replay (its pool has this one process)."""


def _start(job: _Job) -> None:
    while _RUN:
        _RUN.pop().gc.close()
    _RUN.append(_Run(job))


def _feed(payload: tuple[str, bytes]) -> bytes:
    # Replays one piece; returns the records of its kept flows (marshal).
    run = _RUN[0]
    exchanges = _wire.decode_exchanges(payload, full=run.full)
    runner, collector, packer = run.runner, run.collector, run.packer
    position = run.position
    for exchange in exchanges:
        flow = runner.run(exchange)
        if collector.add(flow):
            assert runner.request is not None
            packer.add(position, flow, runner.request)
            collector.flows.clear()  # the record is what goes back
        position += 1
    run.position = position
    records = marshal.dumps(packer.records)
    packer.records.clear()
    return records


def _finish() -> _wire.Chunk:
    run = _RUN.pop()
    run.gc.close()
    vm = run.plugin.vm
    return _wire.Chunk(
        records=[],
        extras=run.packer.extras,
        tables=run.packer.tables,
        metrics=vm.metrics.table(),
        callouts=list(vm.callouts),
        name=vm.module.name,
        totals=run.collector.counted(),
    )


PIECE_FLOWS = 4096
"""Exchanges per piece sent to a worker process.

A worker replays its first piece while the calling process encodes the next
ones, instead of waiting for its whole chunk; its results come back piece by
piece too, while the calling process still replays.
"""


@dataclass(slots=True)
class _Worker:
    # The calling process's side of one worker process.
    part: range
    pool: ProcessPoolExecutor
    start: Future[None]
    pieces: list[Future[bytes]]
    finish: Future[_wire.Chunk] | None = None

    def chunk(self) -> _wire.Chunk:
        self.start.result()  # its load error first
        records = [piece.result() for piece in self.pieces]
        assert self.finish is not None
        chunk = self.finish.result()
        chunk.records = records
        return chunk


def split(count: int, workers: int) -> list[range]:
    """Contiguous, near-equal ranges of ``range(count)``, at most ``workers``."""
    workers = max(1, min(workers, count))
    size, extra = divmod(count, workers)
    out, start = [], 0
    for k in range(workers):
        stop = start + size + (1 if k < extra else 0)
        out.append(range(start, stop))
        start = stop
    return [r for r in out if len(r)]


FIRST_CHUNK_WEIGHT = 1.15
"""How much more the calling process replays than each worker process.

The workers also start an interpreter, decode the exchanges they receive and
pack their results (about a tenth of the replay's time per flow), so the
calling process, which only encodes them, takes a larger first chunk and all
finish together.
"""


def _split_weighted(count: int, workers: int, first: float) -> list[range]:
    # Contiguous ranges; the first ``first`` times as long as the others.
    workers = max(1, min(workers, count))
    if workers == 1:
        return split(count, workers)
    head = min(count - (workers - 1), round(count * first / (first + workers - 1)))
    rest = split(count - head, workers - 1)
    return [range(head)] + [range(r.start + head, r.stop + head) for r in rest]


def merge_metrics(tables: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One metrics table from several VMs' (counters add, gauges: the last)."""
    merged: dict[str, dict[str, Any]] = {}
    for table in tables:
        for row in table:
            have = merged.get(row["name"])
            if have is None:
                merged[row["name"]] = dict(row)
                if row["samples"] is not None:
                    merged[row["name"]]["samples"] = list(row["samples"])
            elif row["type"] == "counter":
                have["value"] = (have["value"] or 0) + (row["value"] or 0)
            elif row["type"] == "histogram":
                samples = list(have["samples"] or []) + list(row["samples"] or [])
                have["samples"] = samples
                have["count"] = len(have["samples"])
            else:
                have["value"] = row["value"]
    return list(merged.values())


def replay_parallel(
    filter: FilterSource,
    exchanges: Sequence[ExchangeLike],
    *,
    workers: int = 2,
    config: bytes | str = b"",
    root_id: str = "",
    fail_open: bool = False,
    options: ReplayOptions | None = None,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
    mp_context: str = "spawn",
    keep: Keep = "all",
    max_kept: int | None = None,
    **vm_options: Any,
) -> ReplayResult:
    """Replay ``exchanges`` in ``workers`` processes, one contiguous chunk each.

    This process replays the first chunk; ``workers - 1`` others replay the
    rest. With ``workers=1`` (or one exchange) it all runs here.

    Args:
        filter: a ``.wasm`` / ``.wat`` path, wasm bytes or WAT text.
        exchanges: the exchanges, in capture order (picklable).
        workers: the number of processes, this one included.
        config: the plugin configuration.
        root_id: the plugin's root id.
        fail_open: let traffic through when the filter fails.
        options: chunking and timing.
        upstream: answers requests instead of the recorded responses; must be
            picklable (a module-level function).
        on_flow: called in this process with each kept flow's result, in
            order.
        mp_context: ``spawn`` or ``forkserver``.
        keep: which flows to keep in full (``all``, ``changed``, ``summary``:
            see :class:`wasmkit.replay.results.FlowCollector`).
        max_kept: keep at most this many flows in full.
        **vm_options: for :class:`wasmkit.host.FilterVm` (picklable values).

    Raises:
        ValueError: ``workers`` < 1, the filter is a compiled module, or
            ``upstream`` / ``vm_options`` cannot be pickled.
        FilterLoadError: the filter cannot be loaded or started.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if not isinstance(filter, bytes | str | os.PathLike):
        raise ValueError(
            "replay with workers > 1 needs the filter as a path, wasm bytes or "
            f"WAT text, not {type(filter).__name__}"
        )
    items = list(exchanges)
    opts = options or ReplayOptions()
    origin = _first_stamp(items)
    ranges = _split_weighted(len(items), workers, FIRST_CHUNK_WEIGHT)
    collector = FlowCollector(keep, max_kept)
    totals: list[ReplayTotals] = []
    tables: list[list[dict[str, Any]]] = []
    callouts: list[Callout] = []
    name = ""
    others: list[_Worker] = []
    try:
        if len(ranges) > 1:
            try:
                pickle.dumps((upstream, vm_options))
            except Exception as exc:
                raise ValueError(
                    "replay with workers > 1 sends upstream and the VM options "
                    "(responder...) to other processes, and they cannot be "
                    f"pickled: {exc}; use module-level functions or workers=1"
                ) from exc
            context = multiprocessing.get_context(mp_context)
            job = _Job(
                filter=filter,
                config=config,
                root_id=root_id,
                fail_open=fail_open,
                options=opts,
                upstream=upstream,
                vm_options=vm_options,
                origin=origin,
                keep=keep,
                max_kept=max_kept,
            )
            # Start the workers now: they start up while the exchanges are
            # encoded, and replay each piece as soon as it arrives.
            fuel = _fuel(vm_options)
            for part in ranges[1:]:
                # One pool per worker: its calls run in order in one process.
                pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
                try:
                    pool.submit(_warm_up, filter, fuel)
                    started = pool.submit(_start, job)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                others.append(_Worker(part, pool, started, []))
            longest = max(len(w.part) for w in others)
            for offset in range(0, longest, PIECE_FLOWS):
                for worker in others:
                    start = worker.part.start + offset
                    stop = min(start + PIECE_FLOWS, worker.part.stop)
                    if start < stop:
                        payload = _wire.encode_exchanges(items[start:stop])
                        worker.pieces.append(worker.pool.submit(_feed, payload))
            for worker in others:
                worker.finish = worker.pool.submit(_finish)
        # The first chunk here, while the workers start.
        first = items[ranges[0].start : ranges[0].stop] if ranges else []
        plugin = load(
            filter, config=config, root_id=root_id, fail_open=fail_open, **vm_options
        )
        runner = FlowRunner(plugin, opts, upstream, origin)
        mine = FlowCollector(keep, max_kept)
        # One hold on full collections for the replay here and the workers'
        # results (released in between, one would walk all of them).
        with young_gc_only():
            for exchange in first:
                mine.add(runner.run(exchange))
            _collect(collector, mine.flows, on_flow)
            if mine.counted() is not None:
                totals.append(mine.totals)
            tables.append(plugin.vm.metrics.table())
            callouts.extend(plugin.vm.callouts)
            name = plugin.vm.module.name
            for worker in others:
                part = worker.part
                chunk = worker.chunk()
                flows = _wire.unpack_chunk(chunk, items[part.start : part.stop])
                _collect(collector, flows, on_flow)
                if chunk.totals is not None:
                    totals.append(chunk.totals)
                tables.append(chunk.metrics)
                callouts.extend(chunk.callouts)
    finally:
        # Every result is in (or an error ended the replay): the workers exit
        # in the background.
        for worker in others:
            worker.pool.shutdown(wait=False, cancel_futures=True)
    counted = collector.counted()
    if counted is not None:
        counted = ReplayTotals()
        for part_totals in totals:
            counted.merge(part_totals)
        counted.kept = len(collector.flows)
    return ReplayResult(
        filter=str(name),
        flows=collector.flows,
        metrics=merge_metrics(tables),
        callouts=callouts,
        keep=keep,
        counted=counted,
    )


def _collect(
    collector: FlowCollector,
    flows: list[FlowResult],
    on_flow: Callable[[FlowResult], None] | None,
) -> None:
    # Flows already chosen by their worker: apply the overall cap, in order.
    cap = collector.max_kept
    if cap is None and on_flow is None:
        collector.flows.extend(flows)
        return
    for flow in flows:
        if cap is None or len(collector.flows) < cap:
            collector.flows.append(flow)
        if on_flow is not None:
            on_flow(flow)
