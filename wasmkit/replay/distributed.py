"""Replay on Dask: partitions of the capture, one task each, merged in order.

The capture is cut into contiguous flow ranges (:mod:`wasmkit.replay.partitions`),
and each range is one Dask task that loads its own VM, reads its flows from
the capture's path and replays them in capture order. The module goes to the
cluster once per replay (scattered to every worker by its content hash; each
worker process keeps it compiled, and its machine's compiled-module cache
keeps the code). Each task answers with compact records of the flows it kept
(:mod:`wasmkit.replay._records`) and its counts, metrics and callouts; the
submitting process merges them in capture order, as one VM's results. Given a
records folder (``records_to``), each task also writes every flow's record
and summary row there (:mod:`wasmkit.replay.stored`), and only the files'
names come back.

What differs from one VM:

* VM state does not carry across partitions. Shared data, queues, metrics and
  anything a filter keeps in memory start fresh in every partition, and
  context ids are numbered per VM. A stateless filter gives the same records
  as one process (apart from context ids and durations); a stateful one
  (rate limits, counters) sees only its own partition's traffic.
  :attr:`ReplayResult.parts` says which partition replayed which flows.
* A failed VM is not: under ``fail_closed`` and ``fail_open`` (the failure
  policy, see :mod:`wasmkit.host.failure`) a VM stays failed, so the flows of
  the partitions after the first one whose VM failed are replayed again in a
  VM failed the same way (the 503 without the filter, or the flow without
  it). Under ``fail_reload`` a later partition's new VM stands for the
  reload, without the backoff one VM would wait.
* Virtual time is aligned: every VM's clock stands where one VM's clock would
  stand at each flow.
* Metrics are merged: counters and histograms add up across VMs, a gauge
  keeps the last partition's value. Callouts are concatenated in order.
* ``on_flow`` runs in the submitting process, in capture order, as the
  partitions come back; ``on_progress`` counts each partition's flows when it
  is done.

A worker that dies (killed, out of memory) has its partition replayed again
on another worker by Dask; a partition that keeps killing its workers is
lost: a warning names it and the flows kept, and the result, marked partial,
holds the other partitions. Ctrl-C (a kernel interrupt) cancels what has not
finished and returns the partitions done so far, marked partial; a local
cluster is stopped then, so that no worker goes on with a cancelled
partition.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from wasmkit import progress
from wasmkit.errors import ErrorKind, FilterTrapError, WasmkitError
from wasmkit.host.failure import VmFailure, resolve_policy
from wasmkit.host.plugin import FilterVm, load
from wasmkit.host.vm import Limits, compile_module
from wasmkit.replay import _cluster
from wasmkit.replay._records import Packer, Piece, unpack
from wasmkit.replay.engine import FlowRunner, ReplayOptions, Upstream, young_gc_only
from wasmkit.replay.partitions import Partition, Rows, read_slices
from wasmkit.replay.results import (
    FlowCollector,
    FlowResult,
    Keep,
    ReplayResult,
    ReplayTotals,
)
from wasmkit.replay.stored import PartWriter, StoredPart, StoredRecords

PARTITION_FLOWS = 25_000
"""The most flows in one partition by default: a large capture is cut into
more partitions than the cluster has threads, so that results come back while
the rest replays and memory per task stays bounded."""


@dataclass(slots=True)
class Job:
    """What every partition's task needs besides its flows."""

    name: str
    fuel: bool
    config: bytes | str
    root_id: str
    fail_open: bool
    failure_policy: str | None
    options: ReplayOptions
    upstream: Upstream | None
    vm_options: dict[str, Any]
    origin: float | None
    """The first timestamp of the whole replay (virtual time zero)."""
    keep: Keep = "all"
    max_kept: int | None = None
    store: str | None = None
    """Where each partition writes its records (:mod:`wasmkit.replay.stored`)."""


FailRow = tuple[int | None, str, str, str, int, str | None]
"""Where a VM failed: the flow, the callback, the error's kind, message,
context id and trap code."""


@dataclass(slots=True)
class PartResult:
    """What one partition's task sends back."""

    number: int
    flows: int
    """Flows replayed (kept or not)."""
    piece: Piece
    totals: ReplayTotals | None
    metrics: list[dict[str, Any]]
    callouts: list[Any]
    failed: FailRow | None
    """Where this partition's VM failed first, if it did."""
    seconds: float
    """The task's time (s)."""
    cpu: float = 0.0
    """The task thread's CPU time (s)."""
    started: float = 0.0
    """When the task started (seconds since the epoch)."""
    process: str = ""
    """Which process replayed it (``host:pid``)."""
    stored: tuple[str, str] | None = None
    """The records and summary files it wrote (:mod:`wasmkit.replay.stored`)."""


# -- in the worker -----------------------------------------------------------------


def replay_partition(
    job: Job, binary: bytes, part: Partition, failure: FailRow | None = None
) -> PartResult:
    """Replay one partition in a new VM (runs on a Dask worker).

    ``failure``: start the VM failed so (a VM failed on an earlier partition).
    """
    began = time.perf_counter()
    started = time.time()
    cpu = time.thread_time()
    module = copy.copy(compile_module(binary, fuel=job.fuel))  # kept here
    module.name = job.name  # named as the submitting process named it
    plugin = load(
        module,
        config=job.config,
        root_id=job.root_id,
        fail_open=job.fail_open,
        failure_policy=job.failure_policy,
        **job.vm_options,
    )
    vm = plugin.vm
    if failure is not None:
        known = _failure_of(failure)
        vm.failed, vm.failure = known.error, known
    runner = FlowRunner(plugin, job.options, job.upstream, job.origin)
    collector = FlowCollector(job.keep, job.max_kept)
    packer = Packer(job.upstream)
    kept = collector.flows
    failed: FailRow | None = None
    exchanges: Any = part.exchanges
    if exchanges is None:
        exchanges = read_slices(part.slices)
    position = 0
    writer = (
        None
        if job.store is None
        else PartWriter(job.store, part.number, 0 if failure is None else 1)
    )
    try:
        with young_gc_only():
            for exchange in exchanges:
                vm.flow = exchange.index  # named should the VM fail on it
                flow = runner.run(exchange)
                if failed is None and failure is None and vm.failed is not None:
                    failed = _fail_row(vm)
                if writer is not None:
                    writer.add(flow)
                if collector.add(flow):
                    assert runner.request is not None
                    packer.add(position, flow, runner.request)
                    kept.clear()  # the record is what goes back
                position += 1
                if position % 256 == 0:
                    packer.flush()
        stored = None if writer is None else writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    counted = collector.counted()
    if counted is not None:
        counted.kept = collector.totals.kept
    return PartResult(
        number=part.number,
        flows=position,
        piece=packer.take(),
        totals=counted,
        metrics=[] if failure is not None else vm.metrics.table(),
        callouts=[] if failure is not None else list(vm.callouts),
        failed=failed,
        seconds=time.perf_counter() - began,
        cpu=time.thread_time() - cpu,
        started=started,
        process=f"{socket.gethostname()}:{os.getpid()}",
        stored=stored,
    )


def _fail_row(vm: FilterVm) -> FailRow:
    failure = vm.failure
    error = vm.failed
    assert error is not None
    callback = failure.callback if failure is not None else error.callback
    context = failure.context_id if failure is not None else error.context_id
    flow = failure.flow if failure is not None else vm.flow
    message = str(error.args[0]) if error.args else str(error)
    return (flow, callback, error.kind, message, context, error.trap_code)


def _failure_of(row: FailRow) -> VmFailure:
    flow, callback, kind, message, context, trap_code = row
    error = FilterTrapError(
        message,
        kind=cast("ErrorKind", kind),
        callback=callback,
        context_id=context,
        trap_code=trap_code,
    )
    return VmFailure(error, callback, context, flow)


# -- in the submitting process -----------------------------------------------------


def module_of(filter: Any) -> tuple[str, bytes]:
    """The name and wasm binary of a filter given as a path, bytes, WAT or module.

    Raises:
        FilterLoadError: it cannot be read or is not wasm.
        ValueError: it is none of these.
    """
    from wasmkit.host.engine import read_binary

    if not isinstance(filter, bytes | str | os.PathLike):
        raise ValueError(
            "a replay on Dask needs the filter as a path, wasm bytes or WAT "
            f"text, not {type(filter).__name__}"
        )
    return read_binary(filter)


def _fuel(vm_options: dict[str, Any]) -> bool:
    limits = vm_options.get("limits")
    return isinstance(limits, Limits) and limits.fuel is not None


def _check_sendable(upstream: Upstream | None, vm_options: dict[str, Any]) -> None:
    import cloudpickle  # type: ignore[import-untyped]

    try:
        cloudpickle.dumps((upstream, vm_options))
    except Exception as exc:
        raise ValueError(
            "a replay on Dask sends upstream and the VM options (responder...) "
            f"to the workers, and they cannot be pickled: {exc}; use workers=1"
        ) from exc


def partition_count(client: Any, flows: int, partitions: int | None) -> int:
    """Partitions for ``flows``: ``partitions``, or one per worker thread at least."""
    if partitions is not None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, not {partitions}")
        return partitions
    return max(_cluster.threads(client), math.ceil(flows / PARTITION_FLOWS))


def run(
    client: Any,
    owned: bool,
    name: str,
    binary: bytes,
    job: Job,
    parts: Sequence[Partition],
    rows: Sequence[Rows],
    *,
    on_flow: Callable[[FlowResult], None] | None,
    on_progress: Callable[[int], None] | None,
    owned_store: bool = False,
) -> ReplayResult:
    """Replay ``parts`` on ``client``'s cluster; the merged result.

    With :attr:`Job.store`, the result's :attr:`~ReplayResult.stored` reads
    the partitions' files (removed with it when ``owned_store``).
    """
    from distributed import as_completed

    _check_sendable(job.upstream, job.vm_options)
    bar = progress.current()
    link = _cluster.dashboard(client)
    if bar is not None:
        where = f"on Dask, {len(parts)} partitions" + (f", {link}" if link else "")
        total = sum(len(p.positions) for p in parts)
        bar.describe(f"replaying ({where})", total=total, where=where)
    module = _cluster.scatter(client, binary)
    stays_failed = resolve_policy(job.failure_policy, job.fail_open) not in (
        "fail_reload",
    )
    token = hashlib.sha256(os.urandom(16)).hexdigest()[:12]

    def submit(part: Partition, failure: FailRow | None, round_: int) -> Any:
        return client.submit(
            replay_partition,
            job,
            module,
            part,
            failure,
            key=f"wasmkit-replay-{token}-{round_}-{part.number}",
            pure=False,
            priority=len(parts) - part.number,
        )

    futures = {p.number: submit(p, None, 0) for p in parts}
    owner = {f.key: p.number for p, f in zip(parts, futures.values(), strict=True)}
    done: dict[int, PartResult] = {}
    lost: dict[int, str] = {}
    counted: set[int] = set()
    merged = _Merge(job, parts, rows, on_flow)
    failure: FailRow | None = None
    interrupted = False
    if on_progress is not None:
        on_progress(0)  # submitted: the flows' time starts now
    pending = as_completed(  # type: ignore[no-untyped-call]
        list(futures.values()), loop=client.loop
    )
    try:
        for item in cast("Iterable[Any]", pending):
            number = owner[item.key]
            if futures[number] is not item:
                continue  # superseded by a replay in a failed VM
            answer: PartResult | None
            try:
                answer = item.result()
            except WasmkitError:
                raise  # the filter does not load or start: as in one process
            except Exception as exc:
                lost[number] = f"{type(exc).__name__}: {exc}"
                answer = None
            if answer is not None:
                done[number] = answer
                if number not in counted:
                    counted.add(number)
                    if on_progress is not None:
                        on_progress(answer.flows)
            # Merge the partitions that are complete, in order.
            while merged.next < len(parts):
                k = merged.next
                if k in lost:
                    merged.skip()
                    continue
                if k not in done:
                    break
                finished = done.pop(k)
                merged.add(finished)
                if stays_failed and failure is None and finished.failed is not None:
                    # This VM stays failed: the later partitions again, in a
                    # VM failed the same way.
                    failure = finished.failed
                    for p in parts[k + 1 :]:
                        done.pop(p.number, None)
                        lost.pop(p.number, None)
                        old = futures[p.number]
                        futures[p.number] = new = submit(p, failure, 1)
                        owner[new.key] = p.number
                        pending.add(new)  # type: ignore[no-untyped-call]
                        old.cancel()
    except KeyboardInterrupt:
        interrupted = True
        client.cancel(list(futures.values()))
        if owned:
            _cluster.shutdown()  # the running partitions would go on
    except BaseException:
        client.cancel(list(futures.values()))
        raise
    result = merged.result(name, interrupted=interrupted or bool(lost), later=done)
    if job.store is not None:
        result.stored = StoredRecords(job.store, merged.stored, owned=owned_store)
        result.stored.write_manifest(interrupted=result.interrupted)
    for k, reason in sorted(lost.items()):
        positions = parts[k].positions
        warnings.warn(
            f"replay partition {k} of {len(parts)} (flows at positions "
            f"{positions.start} to {positions.stop - 1}) was lost on the Dask "
            f"cluster ({reason}); the result keeps the {result.done_flows} "
            "flows of the others, marked partial",
            RuntimeWarning,
            stacklevel=3,
        )
    return result


class _Merge:
    # Partitions folded into one result, in order.
    def __init__(
        self,
        job: Job,
        parts: Sequence[Partition],
        rows: Sequence[Rows],
        on_flow: Callable[[FlowResult], None] | None,
    ) -> None:
        self.job = job
        self.parts = parts
        self.rows = rows
        self.stored: list[StoredPart] = []
        self.on_flow = on_flow
        self.collector = FlowCollector(job.keep, job.max_kept)
        self.totals: list[ReplayTotals] = []
        self.tables: list[list[dict[str, Any]]] = []
        self.callouts: list[Any] = []
        self.merged: list[int] = []
        self.next = 0

    def skip(self) -> None:
        self.next += 1

    def add(self, part: PartResult) -> None:
        flows = unpack(part.piece, self.rows[part.number])
        _collect(self.collector, flows, self.on_flow)
        if part.totals is not None:
            self.totals.append(part.totals)
        self.tables.append(part.metrics)
        self.callouts.extend(part.callouts)
        self.merged.append(part.number)
        if part.stored is not None:
            start = self.parts[part.number].positions.start
            self.stored.append(StoredPart(part.number, start, part.flows, *part.stored))
        self.next += 1

    def result(
        self,
        name: str,
        *,
        interrupted: bool,
        later: dict[int, PartResult],
    ) -> ReplayResult:
        if interrupted:
            # Finished partitions after a gap are kept too, in order.
            for k in sorted(later):
                if k >= self.next:
                    self.next = k
                    self.add(later[k])
        counted = self.collector.counted()
        if counted is not None:
            counted = ReplayTotals()
            for totals in self.totals:
                counted.merge(totals)
            counted.kept = len(self.collector.flows)
        return ReplayResult(
            filter=name,
            flows=self.collector.flows,
            metrics=merge_metrics(self.tables),
            callouts=self.callouts,
            keep=self.job.keep,
            counted=counted,
            parts=[(k, self.parts[k].positions) for k in self.merged],
            interrupted=interrupted,
        )


def _collect(
    collector: FlowCollector,
    flows: list[FlowResult],
    on_flow: Callable[[FlowResult], None] | None,
) -> None:
    # Flows already chosen by their partition: the overall cap, in order.
    cap = collector.max_kept
    if cap is None and on_flow is None:
        collector.flows.extend(flows)
        return
    for flow in flows:
        if cap is not None and len(collector.flows) >= cap:
            return
        collector.flows.append(flow)
        if on_flow is not None:
            on_flow(flow)


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
