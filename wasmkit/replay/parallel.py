"""Replay in several processes, or on a cluster: the way in to Dask.

:func:`replay_captures` (what ``replay(..., workers=N)`` and
``replay(..., scheduler=...)`` call) replays capture files by path: the
capture is indexed once (:mod:`wasmkit.replay.partitions`) and every Dask
worker reads its own partition, so flows never travel through this process.
A capture that cannot be indexed (damaged, a ``filter_expr``, a read-only
cache) is read here and its partitions are sent with their tasks.
:func:`replay_parallel` does the same for exchanges already in memory.
What a replay on several VMs gives, and how it differs from one VM:
:mod:`wasmkit.replay.distributed`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from wasmkit.errors import CaptureReadError
from wasmkit.replay import _cluster, _interrupts, distributed, sources, stored
from wasmkit.replay.distributed import Job, merge_metrics, module_of, partition_count
from wasmkit.replay.engine import ExchangeLike, ReplayOptions, Upstream
from wasmkit.replay.partitions import FileIndex, Partition, Rows, index_capture, plan
from wasmkit.replay.partitions import split as split
from wasmkit.replay.results import (
    BALANCE_MODES,
    Balance,
    FlowResult,
    Keep,
    ReplayResult,
)
from wasmkit.traffic import load_capture

__all__ = [
    "merge_metrics",
    "replay_captures",
    "replay_parallel",
    "shutdown_workers",
    "split",
]

PathArg = str | os.PathLike[str]


def shutdown_workers() -> None:
    """Stop the local Dask cluster replays started (the next starts a new one)."""
    _cluster.shutdown()


def idle_workers() -> int:
    """Worker processes of the local cluster kept for the next replay."""
    return _cluster.local_workers()


def _scheduler(workers: int, scheduler: Any) -> Any:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if scheduler is None:
        return _cluster.scheduler_from_env()
    return scheduler


def _check_balance(balance: Balance | None) -> None:
    if balance is not None and balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}, not {balance!r}")


def _first_stamp(exchanges: Iterable[ExchangeLike]) -> float | None:
    for exchange in exchanges:
        stamp = exchange.timestamp
        if stamp is not None and math.isfinite(stamp):
            return stamp
    return None


def _in_memory(items: Sequence[Any], count: int) -> list[Partition]:
    return [
        Partition(k, r, exchanges=tuple(items[r.start : r.stop]))
        for k, r in enumerate(split(len(items), count))
    ]


def replay_parallel(
    filter: Any,
    exchanges: Iterable[ExchangeLike],
    *,
    workers: int = 2,
    scheduler: Any = None,
    partitions: int | None = None,
    config: bytes | str = b"",
    root_id: str = "",
    fail_open: bool = False,
    failure_policy: str | None = None,
    options: ReplayOptions | None = None,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    keep: Keep = "all",
    max_kept: int | None = None,
    balance: Balance | None = None,
    records_to: PathArg | bool | None = None,
    **vm_options: Any,
) -> ReplayResult:
    """Replay exchanges held in memory on Dask, one VM per partition.

    Args:
        filter: a ``.wasm`` / ``.wat`` path, wasm bytes, WAT text or a
            compiled module.
        exchanges: the exchanges, in capture order (sent with their tasks).
        workers: worker processes of the local cluster (when no
            ``scheduler``).
        scheduler: an existing cluster's scheduler address or a
            ``distributed.Client`` (default: ``WASMKIT_DASK_SCHEDULER``,
            else the local cluster).
        partitions: how many partitions (default: one per worker thread,
            more for large captures; see
            :data:`wasmkit.replay.distributed.PARTITION_FLOWS`).
        config: the plugin configuration.
        root_id: the plugin's root id.
        fail_open: Envoy's deprecated ``fail_open: true``.
        failure_policy: what follows a filter failure (Envoy's
            ``failure_policy``, see :func:`wasmkit.replay.run.replay`).
        options: chunking and timing.
        upstream: answers requests instead of the recorded responses (sent
            to the workers with cloudpickle).
        on_flow: called here with each kept flow's result, in order.
        on_progress: called with 0 once the tasks are submitted, then with
            each partition's flows as it is done.
        keep: which flows to keep in full (``all``, ``changed``, ``summary``).
        max_kept: keep at most this many flows in full.
        balance: accepted for older callers: partitions are always even flow
            ranges.
        records_to: a folder (a path, or an ``fsspec`` URL every worker and
            this process write and read) where each partition writes every
            flow's record and summary row (:mod:`wasmkit.replay.stored`;
            :attr:`ReplayResult.stored` reads them back). ``None``: with
            ``keep="summary"`` on wasmkit's local cluster, a temporary folder
            the result owns, else none. ``True``: a temporary folder (this
            machine's workers only); ``False``: none.
        **vm_options: for :class:`wasmkit.host.FilterVm` (sent to the workers).

    Raises:
        ValueError: ``workers`` < 1, a filter of another type, or
            ``upstream`` / ``vm_options`` that cannot be pickled.
        FilterLoadError: the filter cannot be loaded or started.
    """
    _check_balance(balance)
    target = _scheduler(workers, scheduler)
    name, binary = module_of(filter)
    try:
        items = list(exchanges)
        client, owned = _cluster.client_for(workers, target)
    except KeyboardInterrupt:
        return _interrupts.nothing_done(filter, keep)
    parts = _in_memory(items, partition_count(client, len(items), partitions))
    job = _job(
        name, config, root_id, fail_open, failure_policy, options, upstream,
        vm_options, _first_stamp(items), keep, max_kept,
    )  # fmt: skip
    job.store, temporary = _store(records_to, keep, owned)
    return distributed.run(
        client, owned, name, binary, job, parts, [Rows(p) for p in parts],
        on_flow=on_flow, on_progress=on_progress, owned_store=temporary,
    )  # fmt: skip


def _job(
    name: str,
    config: bytes | str,
    root_id: str,
    fail_open: bool,
    failure_policy: str | None,
    options: ReplayOptions | None,
    upstream: Upstream | None,
    vm_options: dict[str, Any],
    origin: float | None,
    keep: Keep,
    max_kept: int | None,
) -> Job:
    return Job(
        name=name,
        fuel=distributed._fuel(vm_options),
        config=config,
        root_id=root_id,
        fail_open=fail_open,
        failure_policy=failure_policy,
        options=options or ReplayOptions(),
        upstream=upstream,
        vm_options=vm_options,
        origin=origin,
        keep=keep,
        max_kept=max_kept,
    )


def replay_captures(
    filter: Any,
    captures: PathArg | Sequence[PathArg],
    *,
    workers: int = 2,
    scheduler: Any = None,
    partitions: int | None = None,
    decoded: bool = False,
    limit: int | None = None,
    filter_expr: str | None = None,
    config: bytes | str = b"",
    root_id: str = "",
    fail_open: bool = False,
    failure_policy: str | None = None,
    options: ReplayOptions | None = None,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    keep: Keep = "all",
    max_kept: int | None = None,
    balance: Balance | None = None,
    records_to: PathArg | bool | None = None,
    **vm_options: Any,
) -> ReplayResult:
    """Replay capture files on Dask, each worker reading its partition by path.

    The arguments are :func:`replay_parallel`'s and
    :func:`wasmkit.replay.run.replay`'s (``decoded``, ``limit``,
    ``filter_expr``). On a cluster of several machines the captures must be
    on storage every worker sees under the same path, or ``fsspec`` URLs
    every worker opens (:mod:`wasmkit.replay.sources`).
    """
    _check_balance(balance)
    target = _scheduler(workers, scheduler)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    name, binary = module_of(filter)
    paths = [captures] if isinstance(captures, str | os.PathLike) else list(captures)
    capture_error: str | None = None
    try:
        client, owned = _cluster.client_for(workers, target)
        indexes: list[FileIndex | None] = (
            [index_capture(p, decoded=decoded) for p in paths]
            if filter_expr is None
            else [None]
        )
        if all(ix is not None for ix in indexes):
            found = [ix for ix in indexes if ix is not None]
            total = sum(ix.rows for ix in found)
            total = total if limit is None else min(total, limit)
            count = partition_count(client, total, partitions)
            parts = plan(found, decoded=decoded, limit=limit, partitions=count)
            by_entry = {ix.entry: ix for ix in found}
            rows = [Rows(p, by_entry) for p in parts]
            origin = next(
                (ix.first_stamp for ix in found if ix.rows and ix.first_stamp), None
            )
            skipped = _skipped(found, total)
        else:
            # Read here: the flows before any damage count.
            capture = load_capture(
                [sources.local_path(p) for p in paths],
                decoded=decoded,
                limit=limit,
                filter_expr=filter_expr,
            )
            items: list[Any] = []
            try:
                items.extend(capture)
            except CaptureReadError as exc:
                capture_error = str(exc)
            finally:
                capture.close()
            skipped = dict(capture.stats.skipped)
            parts = _in_memory(items, partition_count(client, len(items), partitions))
            rows = [Rows(p) for p in parts]
            origin = _first_stamp(items)
    except KeyboardInterrupt:
        return _interrupts.nothing_done(filter, keep)
    job = _job(
        name, config, root_id, fail_open, failure_policy, options, upstream,
        vm_options, origin, keep, max_kept,
    )  # fmt: skip
    job.store, temporary = _store(records_to, keep, owned)
    result = distributed.run(
        client, owned, name, binary, job, parts, rows,
        on_flow=on_flow, on_progress=on_progress, owned_store=temporary,
    )  # fmt: skip
    result.skipped = skipped
    result.capture_error = capture_error
    return result


def _store(
    records_to: PathArg | bool | None, keep: Keep, local: bool
) -> tuple[str | None, bool]:
    # Where the partitions write their records, and whether it is a
    # temporary folder the result owns.
    if records_to is None:
        records_to = keep == "summary" and local
    if records_to is False:
        return None, False
    if records_to is True:
        return tempfile.mkdtemp(prefix="wasmkit-records-"), True
    return stored.prepare(records_to), False


def _skipped(indexes: Sequence[FileIndex], total: int) -> dict[str, int]:
    # The flows not replayed of the files the replay read to the end.
    out: dict[str, int] = {}
    base = 0
    for ix in indexes:
        base += ix.rows
        if base > total:
            break
        for kind, n in ix.skipped.items():
            out[kind] = out.get(kind, 0) + n
    return out
