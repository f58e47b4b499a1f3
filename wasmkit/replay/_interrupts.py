"""Interrupts during a replay: Ctrl-C, a notebook's kernel interrupt.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread is,
and that includes a host function called from wasm: raised there before the
function's own ``try`` (at its first line), the exception escapes into the
ctypes callback, which ignores it and hands wasmtime a bogus result. So a
replay never lets an interrupt raise while a flow runs: :class:`InterruptGuard`
notes it, the flow under way finishes (each callback is bounded by the VM's
time limits), and the replay stops there with the flows finished so far.
Outside a flow (reading the capture, waiting for workers) it raises at once.

With worker processes (:func:`wasmkit.replay.parallel.replay_parallel`) the
result is this process's flows and the workers' that came back
(:func:`salvage`); the pieces still in the workers are dropped and the worker
processes stopped at once. Workers ignore SIGINT themselves: Ctrl-C reaches
the whole process group, and the calling process decides.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from wasmkit.replay.results import FlowCollector, Keep, ReplayResult, ReplayTotals

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from wasmkit.replay.parallel import _Here


class InterruptGuard:
    """Holds SIGINT back while :attr:`busy` (a flow runs), for the block's time.

    Set :attr:`busy` around each flow and check :attr:`requested` after it:
    an interrupt that came meanwhile is only noted. Outside a flow an
    interrupt raises ``KeyboardInterrupt`` at once. Installed only in the
    main thread (the only one Python delivers signals to); the handler before
    it is restored when the block ends.
    """

    def __init__(self) -> None:
        self.busy = False
        """A flow is running: an interrupt now is only noted."""
        self.requested = False
        """An interrupt came while a flow ran."""
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
            except (ValueError, TypeError):  # not the main interpreter
                self._installed = False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.busy:
            self.requested = True
            return
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise the interrupt noted while a flow ran, now that it is done."""
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt


def ignore_in_worker() -> None:
    """In each worker process: leave SIGINT to the calling process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def filter_name(filter: Any) -> str:
    """How a result names a filter no VM was loaded for (as the VM would)."""
    if isinstance(filter, bytes):
        return "<bytes>"
    if isinstance(filter, str) and filter.lstrip().startswith("("):
        return "<wat>"
    if isinstance(filter, str | os.PathLike):
        return os.fspath(filter)
    return str(getattr(filter, "name", filter))


def nothing_done(filter: Any, keep: Keep) -> ReplayResult:
    """The result of a replay interrupted before its first flow."""
    return ReplayResult(
        filter=filter_name(filter), flows=[], keep=keep, interrupted=True
    )


def salvage(here: _Here) -> ReplayResult:
    """The flows ``here`` and its workers finished, in capture order, marked partial."""
    job = here.job
    mine = here.mine.flows
    flows = list(mine[: here.head_kept])
    totals = [here.mine.totals] if here.mine.counted() is not None else []
    # Before the cut (``measured``) every flow done here is the head's.
    head_stop = min(here.position, here.head.stop) if len(here.head) else here.position
    parts: list[tuple[int, range]] = [(0, range(head_stop))]
    for k, worker in enumerate(here.used):
        with contextlib.suppress(Exception):  # the pieces that are back already
            worker.take(here.items, wait=False)
        flows += worker.done
        if worker.totals is not None:
            totals.append(worker.totals)
        start = worker.part.start
        parts.append((k + 1, range(start, start + worker.flows)))
    flows += mine[here.head_kept :]
    if len(here.tail) and here.position > here.tail.start:
        parts.append((0, range(here.tail.start, here.position)))
    collector = FlowCollector(job.keep, job.max_kept)
    cap = collector.max_kept
    collector.flows = flows if cap is None else flows[:cap]
    counted: ReplayTotals | None = None
    if collector.counted() is not None:
        counted = ReplayTotals()
        for part in totals:
            counted.merge(part)
        counted.kept = len(collector.flows)
    vm = here.plugin.vm
    return ReplayResult(
        filter=str(vm.module.name),
        flows=collector.flows,
        metrics=vm.metrics.table(),
        callouts=list(vm.callouts),
        keep=job.keep,
        counted=counted,
        parts=[(k, r) for k, r in parts if len(r)] if here.used else [],
        interrupted=True,
    )


def stop_processes(pool: ProcessPoolExecutor) -> None:
    """End a pool's worker processes now (after ``shutdown(wait=False)``).

    A worker in the middle of a piece would otherwise finish it first, and
    the calling process waits for it on exit.
    """
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.terminate()
