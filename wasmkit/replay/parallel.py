"""Replay in several processes: the capture cut into contiguous runs.

Each worker process loads its own VM and replays contiguous runs of the
capture's exchanges, in capture order; the results come back in capture
order. The calling process replays too: it starts on the first flows while
the workers start, so start-up costs only the time its replay would take
anyway.

How the capture is cut (``balance``):

* ``measured`` (the default): the calling process replays from the first flow
  until the workers are ready, timing its flows; then each worker takes a
  share of what is left, sized so that all finish together. When the calling
  process reaches the first worker's share, it cuts the rest of the last
  worker's run again, with both sides' speeds measured by then, and replays
  the end of the capture itself. A replay that ends before the workers are
  ready runs here alone. The cut depends on timing.
* ``even``: equal contiguous chunks, the calling process's first; the same cut
  every run.

What differs from one worker:

* VM state does not carry across VMs. Shared data, queues, metrics and
  anything a filter keeps in memory start fresh in every worker, and context
  ids are numbered per VM. A stateless filter gives the same records as with
  one worker (apart from context ids and durations); a stateful one (rate
  limits, counters) sees only its own runs' traffic: use ``even`` to keep its
  cut the same from run to run. :attr:`ReplayResult.parts` says which VM
  replayed which flows.
* A failed VM is not: under ``fail_closed`` and ``fail_open`` (the failure
  policy, see :mod:`wasmkit.host.failure`) a VM stays failed, so the flows
  of the parts after the one it failed on are replayed again in a VM failed
  the same way, and read as one VM's would (the 503 without the filter, or
  the flow without it). Under ``fail_reload`` a later part's new VM stands
  for the reload, without the backoff one VM would wait.
* Virtual time is aligned: every VM's clock stands where one VM's clock
  would stand at each flow (ticks due before a run starts fire first), to
  within a nanosecond of rounding.
* The filter, its options, ``upstream`` and ``vm_options`` values (a
  ``responder``...) go to the workers by pickling: pass a path, wasm bytes or
  WAT text (not a compiled module), and module-level functions.
* The exchanges are read in the calling process (memory: the whole capture;
  the workers start while it reads) and sent to the workers as compact rows
  (``marshal``; other exchange types are pickled), a few pieces ahead of
  what each worker replays. Results come back compact, piece by piece, and
  are unpacked while the calling process replays: only what the parent
  cannot rebuild from its own exchanges (the states after the filter as
  changes, logs, trace, errors), decoded when a flow's ``result`` is first
  read. ``on_flow`` runs in the calling process, in capture order.
* Metrics are merged: counters and histograms add up across VMs, a gauge
  keeps the last VM's value. Callouts are concatenated in capture order.

Workers start with the ``spawn`` method, so each pays one interpreter start
and one module compile, while the calling process replays. After a replay
they wait for the next one (:data:`IDLE_S`, ``WASMKIT_WORKER_IDLE_S``;
:func:`shutdown_workers`), keeping the modules they compiled (by the file's
contents: a rebuilt filter compiles again); not when ``upstream`` or a VM
option is a function, whose module may change in between. A worker process
that stops mid-replay (killed, crashed) leaves the flows it had not answered
to the calling process, which replays them in a new VM and warns.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import multiprocessing
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from wasmkit.errors import ErrorKind, FilterLoadError, FilterTrapError
from wasmkit.host.failure import VmFailure
from wasmkit.host.plugin import FilterVm, Plugin, load
from wasmkit.host.vm import CompiledModule, Limits, compile_module
from wasmkit.replay import _interrupts, _wire
from wasmkit.replay.engine import (
    ExchangeLike,
    FlowRunner,
    ReplayOptions,
    Upstream,
    young_gc_only,
)
from wasmkit.replay.results import (
    BALANCE_MODES,
    Balance,
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
    failure_policy: str | None = None


def _first_stamp(exchanges: Sequence[ExchangeLike]) -> float | None:
    for exchange in exchanges:
        if exchange.timestamp is not None:
            return exchange.timestamp
    return None


# -- exchanges to the workers ------------------------------------------------------


_COMPILED: dict[tuple[Any, ...], CompiledModule] = {}
"""Modules a worker process compiled, by source (a file: by its path and
contents), most recent last."""

COMPILED_KEPT = 4
"""Modules a worker process keeps compiled between replays."""


def _fuel(vm_options: dict[str, Any]) -> bool:
    limits = vm_options.get("limits")
    return isinstance(limits, Limits) and limits.fuel is not None


def _module_key(filter: FilterSource, fuel: bool) -> tuple[Any, ...] | None:
    # A file by its contents (rebuilt, it compiles again); ``None``: unreadable.
    if isinstance(filter, os.PathLike) or (
        isinstance(filter, str) and not filter.lstrip().startswith("(")
    ):
        try:
            data = Path(filter).read_bytes()
        except OSError:
            return None
        return (os.fspath(filter), hashlib.blake2b(data).digest(), fuel)
    return (filter, fuel)


def _compiled(filter: FilterSource, fuel: bool) -> FilterSource | CompiledModule:
    # The module compiled for ``filter`` (compiling it now), or ``filter``
    # itself when it cannot be read: the load reports that.
    key = _module_key(filter, fuel)
    if key is None:
        return filter
    module = _COMPILED.pop(key, None)
    if module is None:
        try:
            module = compile_module(filter, fuel=fuel)
        except FilterLoadError:
            return filter
    _COMPILED[key] = module
    while len(_COMPILED) > COMPILED_KEPT:
        del _COMPILED[next(iter(_COMPILED))]
    return module


def _warm_up(filter: FilterSource, fuel: bool) -> None:
    # Runs first in a worker: imports done and the module compiled while the
    # calling process reads the exchanges.
    _compiled(filter, fuel)


class _Run:
    # A worker's replay in progress, in the worker process: it is fed its
    # exchanges piece by piece (each a call), in order, by one parent.
    __slots__ = (
        "collector",
        "failed",
        "gc",
        "packer",
        "plugin",
        "position",
        "runner",
    )

    def __init__(self, job: _Job) -> None:
        self.plugin = load(
            _compiled(job.filter, _fuel(job.vm_options)),
            config=job.config,
            root_id=job.root_id,
            fail_open=job.fail_open,
            failure_policy=job.failure_policy,
            **job.vm_options,
        )
        self.runner = FlowRunner(self.plugin, job.options, job.upstream, job.origin)
        self.collector = FlowCollector(job.keep, job.max_kept)
        self.packer = _wire.Packer(job.upstream)
        self.position = 0
        self.failed: _FailRow | None = None
        # Full collections held from the first piece to the last (not just
        # within each piece: each release would walk the whole heap).
        self.gc = contextlib.ExitStack()
        self.gc.enter_context(young_gc_only())


_RUN: list[_Run] = []
"""The worker process's replay (its pool has this one process)."""


def _start(job: _Job) -> None:
    if _RUN:
        _tidy()
    _RUN.append(_Run(job))


def _tidy() -> None:
    # Frees the last replay's VM (its objects form cycles: only a full
    # collection frees them) once the worker is idle.
    while _RUN:
        _RUN.pop().gc.close()
    gc.collect()


def _feed(payload: tuple[str, bytes]) -> _wire.Piece:
    # Replays one piece; returns the records of its kept flows.
    began = time.perf_counter()
    run = _RUN[0]
    runner, collector, packer = run.runner, run.collector, run.packer
    first = position = run.position
    kept = collector.flows
    for batch in _wire.decode_exchanges(payload):
        vm = run.plugin.vm
        for exchange in batch:
            vm.flow = exchange.index  # named should the VM fail on it
            flow = runner.run(exchange)
            if vm.failed is not None and run.failed is None:
                run.failed = _fail_row(vm, position)
            if collector.add(flow):
                assert runner.request is not None
                packer.add(position, flow, runner.request)
                kept.clear()  # the record is what goes back
            position += 1
        packer.flush()
    run.position = position
    piece = packer.take(position - first, began)
    counted = collector.counted()
    if counted is not None:
        piece.totals = copy.deepcopy(counted)
    return piece


def _finish() -> tuple[_wire.Ending, _FailRow | None]:
    run = _RUN.pop()
    run.gc.close()
    vm = run.plugin.vm
    ending = _wire.Ending(
        metrics=vm.metrics.table(),
        callouts=list(vm.callouts),
        name=vm.module.name,
        totals=run.collector.counted(),
    )
    return ending, run.failed


# -- a VM failed on one part: the later parts ---------------------------------------

_FailRow = tuple[int, int | None, str, str, str, int, str | None]
"""Where a worker's VM failed, picklable: its position in the part, the
flow, the callback, the error's kind, message, context id and trap code."""


def _fail_row(vm: FilterVm, position: int) -> _FailRow:
    failure = vm.failure
    error = vm.failed
    assert error is not None
    callback = failure.callback if failure is not None else error.callback
    context = failure.context_id if failure is not None else error.context_id
    flow = failure.flow if failure is not None else vm.flow
    message = str(error.args[0]) if error.args else str(error)
    return (position, flow, callback, error.kind, message, context, error.trap_code)


def _failure_of(row: _FailRow) -> VmFailure:
    _, flow, callback, kind, message, context, trap_code = row
    error = FilterTrapError(
        message,
        kind=cast("ErrorKind", kind),
        callback=callback,
        context_id=context,
        trap_code=trap_code,
    )
    return VmFailure(error, callback, context, flow)


# -- the calling process -----------------------------------------------------------

FIRST_PIECE_FLOWS = 256
"""A worker's first piece: small, so that it starts replaying at once; each
next piece is twice as large, up to :data:`PIECE_FLOWS`."""

PIECE_FLOWS = 4096
"""The most exchanges in one piece sent to a worker."""

PIECE_SECONDS = 0.1
"""With ``measured``, a piece holds at most this much replay time, so that
the last cut is fine-grained for slow filters too."""

AHEAD = 2
"""Pieces each worker has been sent and not yet answered: it never waits for
the next one, and the unsent rest can still be cut."""

WORKER_EXTRA_US = 3.0
"""A worker's cost per flow beyond the replay itself (µs): decoding the
exchange it receives and packing the result it sends back. The first cut
uses it; the last uses the worker's measured speed."""

CALLER_EXTRA_US = 3.5
"""The calling process's cost per flow a worker replays (µs): encoding the
exchange and unpacking the result (the first cut; the last measures it)."""

MIN_SHARE_S = 0.02
"""Replay time (s) below which a worker's share is not worth sending."""

POLL_FLOWS = 16
"""The calling process checks on the workers after this many of its flows."""

CALIBRATION_FLOWS = 32
"""Flows the calling process times at least before the first cut."""


@dataclass(slots=True)
class _Worker:
    # The calling process's side of one worker process.
    pool: ProcessPoolExecutor
    ready: Future[Any]
    context: str = "spawn"
    part: range = range(0)
    """The flows it replays (of the last worker's, the end may be cut off)."""
    final: bool = False
    """:attr:`part` will not change."""
    sent: int = 0
    """Flows of :attr:`part` sent so far."""
    size: int = FIRST_PIECE_FLOWS
    """The next piece's size."""
    largest: int = PIECE_FLOWS
    pieces: list[tuple[int, Future[_wire.Piece]]] = field(default_factory=list)
    """Each piece's size and its future results."""
    taken: int = 0
    """Pieces unpacked into :attr:`done`."""
    done: list[FlowResult] = field(default_factory=list)
    flows: int = 0
    """Flows of the unpacked pieces."""
    seconds: float = 0.0
    """The worker's time on the unpacked pieces."""
    totals: ReplayTotals | None = None
    """Its counts up to the last unpacked piece (compact replays)."""
    finish: Future[tuple[_wire.Ending, _FailRow | None]] | None = None
    lost: BaseException | None = None
    """Why the worker process stopped before it answered everything."""
    recovered: range = range(0)
    """The flows of :attr:`part` replayed here after it stopped."""

    def feed(self, items: list[Any], full: bool) -> None:
        # Keeps AHEAD pieces in flight; asks for the end once all are sent.
        part = self.part
        try:
            while (
                self.lost is None
                and self.sent < len(part)
                and len(self.pieces) - self.taken < AHEAD
            ):
                start = part.start + self.sent
                stop = min(start + min(self.size, self.largest), part.stop)
                payload = _wire.encode_exchanges(items[start:stop], full=full)
                self.pieces.append((stop - start, self.pool.submit(_feed, payload)))
                self.sent += stop - start
                self.size = min(self.size * 2, self.largest)
            if self.final and self.finish is None and self.sent == len(part):
                self.finish = self.pool.submit(_finish)
        except BrokenProcessPool as exc:
            self.lost = exc

    def take(self, items: list[Any], wait: bool) -> None:
        # Unpacks the pieces that came back, in order (all of them: ``wait``).
        pieces = self.pieces
        while self.lost is None and self.taken < len(pieces):
            future = pieces[self.taken][1]
            if not (wait or future.done()):
                return
            try:
                piece = future.result()
            except BrokenProcessPool as exc:
                self.lost = exc
                return
            self.done += _wire.unpack_piece(piece, items, self.part.start)
            self.flows += piece.flows
            self.seconds += piece.seconds
            if piece.totals is not None:
                self.totals = piece.totals
            self.taken += 1

    def started(self) -> bool:
        """Whether it started (``False``: its process stopped first)."""
        try:
            self.ready.result()
        except BrokenProcessPool as exc:
            self.lost = exc
            return False
        return True

    def busy_us(self, micros: float) -> float:
        """Work (µs) sent and not answered, at ``micros`` per flow.

        Half of the piece it is on counts as done.
        """
        sizes = [size for size, _ in self.pieces[self.taken :]]
        return (sum(sizes) - sizes[0] / 2) * micros if sizes else 0.0


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


def measured_share(remaining: int, micros: float, workers: int) -> int:
    """Flows each of ``workers`` ready worker processes should take.

    The calling process replays ``remaining`` flows at ``micros`` each unless
    it hands ``workers`` equal shares to others; the shares make everyone
    finish together, counting what moving a flow costs on either side
    (:data:`WORKER_EXTRA_US`, :data:`CALLER_EXTRA_US`). ``0``: not worth it.
    """
    if workers < 1 or remaining < 2 or micros <= 0:
        return 0
    # micros * (remaining - workers * n) + CALLER_EXTRA_US * workers * n
    #     == (micros + WORKER_EXTRA_US) * n
    cost = micros * (workers + 1) + WORKER_EXTRA_US - CALLER_EXTRA_US * workers
    share = int(micros * remaining / max(cost, micros))
    share = min(share, remaining // workers)
    if share * micros * 1e-6 < MIN_SHARE_S:
        return 0
    return share


def last_cut(
    unsent: int, busy_us: float, caller_us: float, worker_us: float, moving_us: float
) -> int:
    """How many of the last worker's ``unsent`` flows it should still replay.

    The calling process replays the others (the end of the capture) at
    ``caller_us`` each, plus ``moving_us`` for each flow it sends; the worker
    first finishes ``busy_us`` of work sent, then replays at ``worker_us``.
    """
    if unsent <= 0:
        return 0
    # caller_us * (unsent - n) + moving_us * n == busy_us + worker_us * n
    cost = caller_us + worker_us - moving_us
    if cost <= 0:
        return unsent
    return max(0, min(unsent, int((caller_us * unsent - busy_us) / cost)))


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
    exchanges: Iterable[ExchangeLike],
    *,
    workers: int = 2,
    config: bytes | str = b"",
    root_id: str = "",
    fail_open: bool = False,
    failure_policy: str | None = None,
    options: ReplayOptions | None = None,
    upstream: Upstream | None = None,
    on_flow: Callable[[FlowResult], None] | None = None,
    mp_context: str = "spawn",
    keep: Keep = "all",
    max_kept: int | None = None,
    balance: Balance = "measured",
    on_progress: Callable[[int], None] | None = None,
    **vm_options: Any,
) -> ReplayResult:
    """Replay ``exchanges`` in ``workers`` processes, one contiguous chunk each.

    This process replays the first chunk; ``workers - 1`` others replay the
    rest. With ``workers=1`` (or one exchange) it all runs here.

    Args:
        filter: a ``.wasm`` / ``.wat`` path, wasm bytes or WAT text.
        exchanges: the exchanges, in capture order (picklable); read while
            the worker processes start.
        workers: the number of processes, this one included.
        config: the plugin configuration.
        root_id: the plugin's root id.
        fail_open: Envoy's deprecated ``fail_open: true``.
        failure_policy: what follows a filter failure (Envoy's
            ``failure_policy``, see :func:`wasmkit.replay.run.replay`).
        options: chunking and timing.
        upstream: answers requests instead of the recorded responses; must be
            picklable (a module-level function).
        on_flow: called in this process with each kept flow's result, in
            order (this process's own flows as they finish).
        mp_context: ``spawn`` or ``forkserver``.
        keep: which flows to keep in full (``all``, ``changed``, ``summary``:
            see :class:`wasmkit.replay.results.FlowCollector`).
        max_kept: keep at most this many flows in full.
        balance: how the chunks are cut. ``measured``: this process replays
            from the start while the workers start, times its flows, then
            gives each worker the share that makes all finish together (a
            replay done before they are ready runs here alone); the cut
            depends on timing. ``even``: equal chunks, the same every run
            (for filters whose state makes the cut matter).
        on_progress: called in this process with how many more flows are
            done (kept or not) as this process replays them and as workers'
            results come back (a progress bar); first with 0 once this
            process has loaded the filter.
        **vm_options: for :class:`wasmkit.host.FilterVm` (picklable values).

    Raises:
        ValueError: ``workers`` < 1, the filter is a compiled module, an
            unknown ``balance``, or ``upstream`` / ``vm_options`` cannot be
            pickled.
        FilterLoadError: the filter cannot be loaded or started.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    if balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}, not {balance!r}")
    if not isinstance(filter, bytes | str | os.PathLike):
        raise ValueError(
            "replay with workers > 1 needs the filter as a path, wasm bytes or "
            f"WAT text, not {type(filter).__name__}"
        )
    if workers > 1:
        try:
            pickle.dumps((upstream, vm_options))
        except Exception as exc:
            raise ValueError(
                "replay with workers > 1 sends upstream and the VM options "
                "(responder...) to other processes, and they cannot be "
                f"pickled: {exc}; use module-level functions or workers=1"
            ) from exc
    # Processes kept for the next replay only when nothing sent to them can
    # change meanwhile (a function's module may be edited and re-imported).
    reusable = upstream is None and not any(map(callable, vm_options.values()))
    others: list[_Worker] = []
    done = False
    guard = _interrupts.InterruptGuard()
    try:
        # Full collections held for the whole replay: each would walk every
        # exchange and result so far (the young ones go on).
        with guard, young_gc_only():
            # Start the workers first: they start up while the exchanges are
            # read, and this process replays while they finish starting.
            fuel = _fuel(vm_options)
            for _ in range(workers - 1):
                others.append(_new_worker(mp_context, filter, fuel))
            items = list(exchanges)
            job = _Job(
                filter=filter,
                config=config,
                root_id=root_id,
                fail_open=fail_open,
                failure_policy=failure_policy,
                options=options or ReplayOptions(),
                upstream=upstream,
                vm_options=vm_options,
                origin=_first_stamp(items),
                keep=keep,
                max_kept=max_kept,
            )
            if len(items) >= 2:
                for worker in others:
                    worker.ready = _submit_start(worker, job)
                result = _replay_with(
                    others, items, job, balance, on_flow, on_progress, guard
                )
            else:
                result = _replay_with(
                    [], items, job, balance, on_flow, on_progress, guard
                )
            done = not result.interrupted
            return result
    except KeyboardInterrupt:
        # Before any flow was replayed (reading the exchanges, starting).
        return _interrupts.nothing_done(filter, keep)
    finally:
        # Every result is in (or an error ended the replay): idle workers
        # wait for the next replay, the others exit in the background (at
        # once when interrupted: a worker's piece may take long).
        _release(others, reuse=done and reusable, stop=not done)


def _submit_start(worker: _Worker, job: _Job) -> Future[Any]:
    # A worker process that died before its job was handed over (its pool is
    # broken): a failed start, so that its flows are replayed elsewhere.
    try:
        return worker.pool.submit(_start, job)
    except BrokenProcessPool as exc:
        failed: Future[Any] = Future()
        failed.set_exception(exc)
        return failed


# -- worker processes, kept between replays ----------------------------------------

IDLE_S = 300.0
"""Seconds an idle worker process waits for the next replay before it exits
(``WASMKIT_WORKER_IDLE_S``; ``0``: new processes for every replay)."""

IDLE_MAX = 8
"""Idle worker processes kept at most."""

_IDLE: list[tuple[str, ProcessPoolExecutor, float]] = []
"""Idle workers: start method, the one-process pool, idle since (monotonic)."""

_IDLE_LOCK = threading.Lock()
_REAPER: list[threading.Timer] = []


def _idle_s() -> float:
    value = os.environ.get("WASMKIT_WORKER_IDLE_S", "")
    try:
        return max(0.0, float(value)) if value.strip() else IDLE_S
    except ValueError:
        return IDLE_S


def _new_worker(mp_context: str, filter: FilterSource, fuel: bool) -> _Worker:
    # An idle worker process that still answers, or a new one.
    while True:
        with _IDLE_LOCK:
            found = next((e for e in _IDLE if e[0] == mp_context), None)
            if found is None:
                break
            _IDLE.remove(found)
        pool = found[1]
        try:
            pool.submit(os.getpid).result(timeout=5)
            return _Worker(pool, pool.submit(_warm_up, filter, fuel), mp_context)
        except Exception:  # it died while idle (BrokenProcessPool...)
            pool.shutdown(wait=False, cancel_futures=True)
    # One pool per worker: its calls run in order in one process.
    context = multiprocessing.get_context(mp_context)
    pool = ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=_interrupts.ignore_in_worker
    )
    try:
        return _Worker(pool, pool.submit(_warm_up, filter, fuel), mp_context)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise


def _release(others: list[_Worker], *, reuse: bool, stop: bool = False) -> None:
    idle = _idle_s() if reuse else 0.0
    now = time.monotonic()
    for worker in others:
        pool = worker.pool
        if idle > 0 and worker.lost is None:
            with _IDLE_LOCK:
                if len(_IDLE) < IDLE_MAX:
                    _IDLE.append((worker.context, pool, now))
                    continue
        pool.shutdown(wait=False, cancel_futures=True)
        if stop:
            _interrupts.stop_processes(pool)
    if idle > 0 and others:
        _reap_after(idle)


def _reap_after(seconds: float) -> None:
    # One timer: it stops the workers idle for ``seconds`` by then.
    with _IDLE_LOCK:
        for timer in _REAPER:
            timer.cancel()
        _REAPER.clear()
        timer = threading.Timer(seconds + 0.1, _reap, (seconds,))
        timer.daemon = True
        _REAPER.append(timer)
    timer.start()


def _reap(seconds: float) -> None:
    now = time.monotonic()
    with _IDLE_LOCK:
        old = [e for e in _IDLE if now - e[2] >= seconds]
        for entry in old:
            _IDLE.remove(entry)
        left = [now - e[2] for e in _IDLE]
    for _, pool, _ in old:
        pool.shutdown(wait=False, cancel_futures=True)
    if left:
        _reap_after(seconds - max(left))


def idle_workers() -> int:
    """Worker processes waiting for the next replay."""
    with _IDLE_LOCK:
        return len(_IDLE)


def shutdown_workers(*, wait: bool = True) -> None:
    """Stop the worker processes kept for the next replay."""
    with _IDLE_LOCK:
        pools = [pool for _, pool, _ in _IDLE]
        _IDLE.clear()
        for timer in _REAPER:
            timer.cancel()
        _REAPER.clear()
    for pool in pools:
        pool.shutdown(wait=wait, cancel_futures=True)


def _replay_with(
    others: list[_Worker],
    items: list[Any],
    job: _Job,
    balance: Balance,
    on_flow: Callable[[FlowResult], None] | None,
    on_progress: Callable[[int], None] | None,
    guard: _interrupts.InterruptGuard,
) -> ReplayResult:
    # The calling process's side of replay_parallel: its own runs, the cuts,
    # the workers' pieces out and their results back.
    here = _Here(job, items, others, on_flow, on_progress, guard)
    try:
        _replay_here(here, others, balance)
        return here.result()
    except KeyboardInterrupt:
        return _interrupts.salvage(here)


def _replay_here(here: _Here, others: list[_Worker], balance: Balance) -> None:
    # This process's runs and the cuts (the workers replay theirs meanwhile).
    items = here.items
    count = len(items)
    if others and balance == "even":
        ranges = split(count, len(others) + 1)
        for worker, part in zip(others, ranges[1:], strict=False):
            worker.part, worker.final = part, True
        here.head = ranges[0]
        here.start_workers([w for w in others if len(w.part)])
        here.replay(here.head, live=True)
    elif others:
        # Replay from the start while the workers start, then cut.
        here.calibrate()
        micros = here.micros()
        done = here.position
        # A worker whose process stopped before it was ready is left out (its
        # load error, should the filter not load there, is raised).
        others = [w for w in others if not w.ready.done() or w.started()]
        share = measured_share(count - done, micros, len(others))
        if share:
            largest = min(
                PIECE_FLOWS, max(POLL_FLOWS, int(PIECE_SECONDS * 1e6 / micros))
            )
            # The last worker's run is cut again when the head is done: it
            # starts with more than its share (more than it can have in
            # flight), so that the head ends first.
            left = count - done - share * len(others)
            extra = min(left, share, max(share // 8, 2 * AHEAD * largest))
            stop = count - share * len(others) - extra
            here.head = range(stop)
            for k, worker in enumerate(others):
                end = stop + (k + 1) * share if k < len(others) - 1 else count
                worker.part = range(stop + k * share, end)
                worker.final = k < len(others) - 1
                worker.largest = largest
            here.start_workers(others)
            here.replay(range(done, stop), live=True)
            here.tail = here.cut_last()
            here.replay(here.tail, live=False)
        else:
            here.head = range(count)
            here.replay(range(done, count), live=True)
    else:
        here.head = range(count)
        here.replay(here.head, live=True)


class _Here:
    # The calling process's VM and what it gathers: a head run from the first
    # flow, the workers' runs, and (``measured``) a tail run at the end.
    def __init__(
        self,
        job: _Job,
        items: list[Any],
        others: list[_Worker],
        on_flow: Callable[[FlowResult], None] | None,
        on_progress: Callable[[int], None] | None,
        guard: _interrupts.InterruptGuard,
    ) -> None:
        self.job = job
        self.on_progress = on_progress
        self.items = items
        self.others = others
        self.used: list[_Worker] = []
        self.on_flow = on_flow
        self.full = job.upstream is not None
        self.guard = guard
        guard.busy = True  # start-up runs wasm too
        self.plugin = load(
            job.filter,
            config=job.config,
            root_id=job.root_id,
            fail_open=job.fail_open,
            failure_policy=job.failure_policy,
            **job.vm_options,
        )
        guard.busy = False
        guard.check()
        if on_progress is not None:
            on_progress(0)  # loaded here: the flows' time starts now
        self.runner = FlowRunner(self.plugin, job.options, job.upstream, job.origin)
        self.mine = FlowCollector(job.keep, job.max_kept)
        self.position = 0
        self.head = range(0)
        self.tail = range(0)
        self.head_kept = 0
        self.head_callouts = 0
        self.replay_s = 0.0
        self.replayed = 0
        self.moving_s = 0.0
        self.failed_at: int | None = None
        """Where this process's VM first failed (a position)."""
        self.head_totals: ReplayTotals | None = None
        """The head's counts (compact replays), without the tail's."""
        self._failed: tuple[Plugin, FlowRunner] | None = None

    def calibrate(self) -> None:
        # Replays from the first flow until every worker is ready (and at
        # least CALIBRATION_FLOWS flows are timed).
        count = len(self.items)
        others = self.others
        while self.position < count and (
            self.position < CALIBRATION_FLOWS or not all(w.ready.done() for w in others)
        ):
            stop = min(count, self.position + POLL_FLOWS)
            self._run(range(self.position, stop), live=True)

    def micros(self) -> float:
        """This process's replay time per flow so far (µs)."""
        return self.replay_s * 1e6 / max(self.replayed, 1)

    def start_workers(self, workers: list[_Worker]) -> None:
        self.used = workers
        self._poll()

    def replay(self, flows: range, *, live: bool) -> None:
        """Replays ``flows`` here, checking on the workers as it goes."""
        for start in range(flows.start, flows.stop, POLL_FLOWS):
            self._run(range(start, min(start + POLL_FLOWS, flows.stop)), live=live)
            if self.used:
                self._poll()

    def _run(self, flows: range, *, live: bool) -> None:
        began = time.perf_counter()
        add, run, kept = self.mine.add, self.runner.run, self.mine.flows
        on_flow = self.on_flow if live else None
        guard = self.guard
        stop = flows.start
        vm = self.plugin.vm
        for exchange in self.items[flows.start : flows.stop]:
            guard.busy = True  # an interrupt waits for the flow to finish
            vm.flow = exchange.index  # named should the VM fail on it
            flow = run(exchange)
            guard.busy = False
            if self.failed_at is None and vm.failed is not None:
                self.failed_at = stop
            stop += 1
            if add(flow) and on_flow is not None:
                on_flow(kept[-1])
            if guard.requested:
                break
        self.replay_s += time.perf_counter() - began
        self.replayed += stop - flows.start
        self.position = stop
        if self.on_progress is not None:
            self.on_progress(stop - flows.start)
        if live:
            self.head_kept = len(kept)
            self.head_callouts = len(self.plugin.vm.callouts)
            if self.mine.counted() is not None:
                self.head_totals = copy.deepcopy(self.mine.totals)
        guard.check()

    def _poll(self) -> None:
        began = time.perf_counter()
        for worker in self.used:
            answered = worker.flows
            worker.take(self.items, wait=False)
            worker.feed(self.items, self.full)
            if self.on_progress is not None and worker.flows != answered:
                self.on_progress(worker.flows - answered)
        self.moving_s += time.perf_counter() - began

    def cut_last(self) -> range:
        """This process's tail run: the end of the last worker's unsent flows.

        Both sides' speeds are measured by now: the cut makes them finish
        together.
        """
        last = self.used[-1]
        if last.lost is not None:
            return range(0)  # what it did not answer is replayed at the end
        caller_us = self.micros()
        moved = sum(w.sent for w in self.used)
        moving_us = self.moving_s * 1e6 / moved if moved else CALLER_EXTRA_US
        worker_us = (
            last.seconds * 1e6 / last.flows
            if last.flows
            else caller_us + WORKER_EXTRA_US
        )
        unsent = len(last.part) - last.sent
        keep = last_cut(
            unsent, last.busy_us(worker_us), caller_us, worker_us, moving_us
        )
        part = last.part
        last.part = range(part.start, part.start + last.sent + keep)
        last.final = True
        self._poll()
        return range(last.part.stop, part.stop)

    def _recover(self, number: int, worker: _Worker) -> _wire.Ending:
        # The worker process stopped: the flows it did not answer are replayed
        # here, in order, in a new VM (as if its VM restarted there).
        job = self.job
        part = worker.part
        lost = range(part.start + worker.flows, part.stop)
        worker.recovered = lost
        warnings.warn(_recover_note(number, worker, lost), RuntimeWarning, stacklevel=4)
        self.guard.busy = True
        plugin = load(
            job.filter,
            config=job.config,
            root_id=job.root_id,
            fail_open=job.fail_open,
            failure_policy=job.failure_policy,
            **job.vm_options,
        )
        self.guard.busy = False
        runner = FlowRunner(plugin, job.options, job.upstream, job.origin)
        collector = FlowCollector(job.keep, job.max_kept)
        guard = self.guard
        try:
            for exchange in self.items[lost.start : lost.stop]:
                guard.busy = True
                plugin.vm.flow = exchange.index
                flow = runner.run(exchange)
                guard.busy = False
                collector.add(flow)
                guard.check()
        finally:
            worker.done += collector.flows  # interrupted: those finished
        totals = collector.counted()
        if totals is not None and worker.totals is not None:
            totals.merge(worker.totals)
        return _wire.Ending(
            metrics=plugin.vm.metrics.table(),
            callouts=list(plugin.vm.callouts),
            name=plugin.vm.module.name,
            totals=totals,
        )

    def _replay_failed(
        self, flows: range, failure: VmFailure
    ) -> tuple[list[FlowResult], _wire.Ending]:
        # A VM failed on an earlier part: ``flows`` go through a VM failed
        # the same way, as one VM's later flows would (fail_closed: the 503
        # without the filter; fail_open: without the filter).
        job = self.job
        if self._failed is None:
            plugin = load(
                job.filter,
                config=job.config,
                root_id=job.root_id,
                fail_open=job.fail_open,
                failure_policy=job.failure_policy,
                **job.vm_options,
            )
            runner = FlowRunner(plugin, job.options, job.upstream, job.origin)
            self._failed = (plugin, runner)
        plugin, runner = self._failed
        plugin.vm.failed, plugin.vm.failure = failure.error, failure
        collector = FlowCollector(job.keep, job.max_kept)
        for exchange in self.items[flows.start : flows.stop]:
            collector.add(runner.run(exchange))
        ending = _wire.Ending(
            metrics=[], name=plugin.vm.module.name, totals=collector.counted()
        )
        return collector.flows, ending

    def _stays_failed(self) -> bool:
        # fail_reload reloads a failed VM: a later part's new VM stands for
        # the reload (VM state does not carry across parts anyway).
        return self.plugin.config.policy != "fail_reload"

    def result(self) -> ReplayResult:
        """Waits for the workers; every flow in capture order."""
        job, items = self.job, self.items
        collector = FlowCollector(job.keep, job.max_kept)
        kept = self.mine.flows
        collector.flows.extend(kept[: self.head_kept])
        vm = self.plugin.vm
        totals = [self.mine.totals] if self.mine.counted() is not None else []
        tables = [vm.metrics.table()]
        callouts = list(vm.callouts[: self.head_callouts])
        # A VM that failed stays failed (fail_closed, fail_open): the flows
        # of the parts after it are what that VM would have made of them.
        failure: VmFailure | None = None
        if (
            self._stays_failed()
            and self.failed_at is not None
            and self.failed_at in self.head
        ):
            failure = vm.failure
        for k, worker in enumerate(self.used):
            ending = None
            row: _FailRow | None = None
            answered = worker.flows
            if worker.started():  # or its load error
                while worker.finish is None and worker.lost is None:
                    worker.take(items, wait=True)
                    worker.feed(items, self.full)
                worker.take(items, wait=True)
                if worker.lost is None:
                    assert worker.finish is not None
                    try:
                        ending, row = worker.finish.result()
                        worker.pool.submit(_tidy)  # while this process goes on
                    except BrokenProcessPool as exc:
                        worker.lost = exc
            if ending is None:
                ending = self._recover(k + 1, worker)
            if self.on_progress is not None:
                done = len(worker.part) if len(worker.recovered) else worker.flows
                self.on_progress(done - answered)
            if failure is not None:
                worker.done, ending = self._replay_failed(worker.part, failure)
            elif row is not None and self._stays_failed():
                failure = _failure_of(row)
            _collect(collector, worker.done, self.on_flow)
            if ending.totals is not None:
                totals.append(ending.totals)
            tables.append(ending.metrics)
            callouts.extend(ending.callouts)
        tail = kept[self.head_kept :]
        if failure is not None and failure is not vm.failure and len(self.tail):
            # A worker's VM failed before the tail this VM replayed.
            tail, ending = self._replay_failed(self.tail, failure)
            if totals and ending.totals is not None:
                totals[0] = self.head_totals or ReplayTotals()
                totals.append(ending.totals)
        else:
            callouts.extend(vm.callouts[self.head_callouts :])
        _collect(collector, tail, self.on_flow)
        counted = collector.counted()
        if counted is not None:
            counted = ReplayTotals()
            for part_totals in totals:
                counted.merge(part_totals)
            counted.kept = len(collector.flows)
        parts = [(0, self.head)]
        for k, w in enumerate(self.used):
            stop = w.recovered.start if len(w.recovered) else w.part.stop
            parts += [(k + 1, range(w.part.start, stop)), (0, w.recovered)]
        parts.append((0, self.tail))
        return ReplayResult(
            filter=str(vm.module.name),
            flows=collector.flows,
            metrics=merge_metrics(tables),
            callouts=callouts,
            keep=job.keep,
            counted=counted,
            parts=[(k, r) for k, r in parts if len(r)] if self.used else [],
        )


def _recover_note(number: int, worker: _Worker, lost: range) -> str:
    return (
        f"replay worker process {number} stopped ({worker.lost!r}) with flows "
        f"{lost.start} to {lost.stop - 1} of the replay unanswered: they were "
        "replayed in this process, in a new VM (the metrics and callouts the "
        "worker's VM had gathered are lost)"
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
        if cap is not None and len(collector.flows) >= cap:
            return
        collector.flows.append(flow)
        if on_flow is not None:
            on_flow(flow)
