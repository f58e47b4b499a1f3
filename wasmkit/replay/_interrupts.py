"""Interrupts during a replay: Ctrl-C, a notebook's kernel interrupt.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread is,
and that includes a host function called from wasm: raised there before the
function's own ``try`` (at its first line), the exception escapes into the
ctypes callback, which ignores it and hands wasmtime a bogus result. So a
replay never lets an interrupt raise while a flow runs: :class:`InterruptGuard`
notes it, the flow under way finishes (each callback is bounded by the VM's
time limits), and the replay stops there with the flows finished so far.
Outside a flow (reading the capture, waiting for a cluster) it raises at once.

A replay on Dask (:mod:`wasmkit.replay.distributed`) runs no flow in this
process: an interrupt while it waits cancels the partitions not finished and
keeps those that are, marked partial; the session's local cluster is stopped,
so that its workers do not go on with cancelled partitions.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from wasmkit.replay.results import Keep, ReplayResult


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
