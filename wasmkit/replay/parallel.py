"""Replay in several processes: the capture split into contiguous chunks.

Each worker process loads its own VM and replays one contiguous run of the
capture's exchanges, in capture order; the results come back in capture order.

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
  to the workers; results come back without their exchanges, which the parent
  puts back. ``on_flow`` runs in the parent as each chunk completes.
* Metrics are merged: counters and histograms add up across workers, a gauge
  keeps the last worker's value. Callouts are concatenated in chunk order.

Workers start with the ``spawn`` method, so each pays one interpreter start
and one module compile: worth it for thousands of flows, not for ten.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from wasmkit.host.callouts import Callout
from wasmkit.host.plugin import load
from wasmkit.replay.engine import ExchangeLike, ReplayOptions, Upstream
from wasmkit.replay.engine import replay_exchanges as _replay_exchanges
from wasmkit.replay.results import FlowResult, ReplayResult

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
    exchanges: list[Any]
    origin: float | None
    """The first timestamp of the whole replay (virtual time zero)."""


@dataclass(slots=True)
class _Chunk:
    flows: list[FlowResult]
    errors: list[tuple[int, type[BaseException], str, dict[str, Any]]]
    metrics: list[dict[str, Any]]
    callouts: list[Callout] = field(default_factory=list)
    name: str = ""


def _first_stamp(exchanges: Sequence[ExchangeLike]) -> float | None:
    for exchange in exchanges:
        if exchange.timestamp is not None:
            return exchange.timestamp
    return None


def _run_chunk(job: _Job) -> _Chunk:
    """Replay one chunk in this process (a worker, or the parent for one)."""
    plugin = load(
        job.filter,
        config=job.config,
        root_id=job.root_id,
        fail_open=job.fail_open,
        **job.vm_options,
    )
    vm = plugin.vm
    opts = replace(job.options, follow_time=False)
    start_ns = vm.clock.now_ns()
    flows: list[FlowResult] = []
    for exchange in job.exchanges:
        # Time as the one-VM engine moves it, from the replay's first stamp.
        stamp = exchange.timestamp
        if job.options.follow_time and stamp is not None and job.origin is not None:
            due = start_ns + int((stamp - job.origin) * 1e9)
            if due > vm.clock.now_ns():
                vm.advance((due - vm.clock.now_ns()) / 1e6)
        flows.extend(
            _replay_exchanges(plugin, [exchange], options=opts, upstream=job.upstream)
        )
    return _Chunk(
        flows=flows,
        errors=[],
        metrics=plugin.vm.metrics.table(),
        callouts=list(plugin.vm.callouts),
        name=plugin.vm.module.name,
    )


def _pack(chunk: _Chunk) -> _Chunk:
    """Make a chunk picklable: errors as data, no exchanges."""
    for i, flow in enumerate(chunk.flows):
        error = flow.result.error
        if error is not None:
            state = dict(vars(error))
            chunk.errors.append((i, type(error), str(error), state))
            flow.result.error = None
        flow.exchange = None
    return chunk


def _unpack(chunk: _Chunk, exchanges: Sequence[Any]) -> list[FlowResult]:
    for i, cls, message, state in chunk.errors:
        error = cls.__new__(cls)
        Exception.__init__(error, message)
        vars(error).update(state)
        chunk.flows[i].result.error = error  # type: ignore[assignment]
    for flow, exchange in zip(chunk.flows, exchanges, strict=True):
        flow.exchange = exchange
    return chunk.flows


def _worker(job: _Job) -> _Chunk:
    return _pack(_run_chunk(job))


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
    **vm_options: Any,
) -> ReplayResult:
    """Replay ``exchanges`` in ``workers`` processes, one contiguous chunk each.

    With ``workers=1`` (or one exchange) it runs in this process.

    Args:
        filter: a ``.wasm`` / ``.wat`` path, wasm bytes or WAT text.
        exchanges: the exchanges, in capture order (picklable).
        workers: the number of processes.
        config: the plugin configuration.
        root_id: the plugin's root id.
        fail_open: let traffic through when the filter fails.
        options: chunking and timing.
        upstream: answers requests instead of the recorded responses; must be
            picklable (a module-level function).
        on_flow: called in this process with each flow's result, in order.
        mp_context: ``spawn`` or ``forkserver``.
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
    ranges = split(len(items), workers)

    def job(part: range) -> _Job:
        return _Job(
            filter=filter,
            config=config,
            root_id=root_id,
            fail_open=fail_open,
            options=opts,
            upstream=upstream,
            vm_options=vm_options,
            exchanges=items[part.start : part.stop],
            origin=origin,
        )

    chunks: list[tuple[_Chunk, list[FlowResult]]] = []
    if len(ranges) <= 1:
        chunk = _run_chunk(job(range(len(items))))
        chunks.append((chunk, chunk.flows))
        for flow in chunk.flows:
            if on_flow is not None:
                on_flow(flow)
    else:
        try:
            pickle.dumps((upstream, vm_options))
        except Exception as exc:
            raise ValueError(
                "replay with workers > 1 sends upstream and the VM options "
                f"(responder...) to other processes, and they cannot be pickled: "
                f"{exc}; use module-level functions or workers=1"
            ) from exc
        context = multiprocessing.get_context(mp_context)
        with ProcessPoolExecutor(max_workers=len(ranges), mp_context=context) as pool:
            futures: list[tuple[range, Future[_Chunk]]] = [
                (part, pool.submit(_worker, job(part))) for part in ranges
            ]
            for part, future in futures:
                chunk = future.result()
                flows = _unpack(chunk, items[part.start : part.stop])
                chunks.append((chunk, flows))
                for flow in flows:
                    if on_flow is not None:
                        on_flow(flow)
    name = filter if isinstance(filter, str | os.PathLike) else chunks[0][0].name
    return ReplayResult(
        filter=str(name),
        flows=[flow for _, flows in chunks for flow in flows],
        metrics=merge_metrics([c.metrics for c, _ in chunks]),
        callouts=[callout for c, _ in chunks for callout in c.callouts],
    )
