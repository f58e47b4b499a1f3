"""Progress of long compiles and replays: a bar after a second, then one line.

:class:`Progress` shows nothing while the work is quick. Once it has run
longer than ``delay`` (1 s), it shows a ``tqdm.auto`` bar: a widget in a
Jupyter kernel, a console bar on stderr in a terminal. On close the bar goes
away and one summary line stays (``replayed 17 flows in 1.3 s: 3 modified,
1 failed``). Without a terminal or a notebook it stays silent, unless asked
for explicitly: then it writes plain lines (no carriage returns), a heartbeat
every ``heartbeat`` seconds and the summary, which suits logs.

The core uses it without importing IPython: a kernel is recognised from
``sys.modules``, and tqdm (imported only when a bar is shown) picks its
notebook bar the same way.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from types import TracebackType
from typing import Any, Literal, TextIO

Mode = Literal["off", "bar", "plain"]

DELAY_S = 1.0
"""How long work runs before progress shows (s)."""

_CURRENT: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "wasmkit_progress", default=None
)


def current() -> Progress | None:
    """The innermost :class:`Progress` block running in this context, if any.

    Work deep inside a call (a replay on a cluster) can say what it is doing
    and how much there is to do (:meth:`Progress.describe`) without the bar
    being passed down.
    """
    return _CURRENT.get()


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (an IPython shell with a kernel)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return getattr(shell, "kernel", None) is not None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress:
    """A progress bar that appears only for slow work and ends in one line.

    Use it as a context manager; call :meth:`update` as items finish and
    :meth:`done` with what was achieved before the block ends::

        with Progress(desc="replaying", unit="flows") as bar:
            for flow in flows:
                ...
                bar.update()
            bar.done(f"replayed {n} flows", "3 modified, 1 failed")

    prints ``replayed 17 flows in 1.3 s: 3 modified, 1 failed`` when it took
    longer than ``delay``, and nothing otherwise. Leaving the block with an
    exception removes the bar and prints no summary.

    Args:
        total: how many items are expected (``None``: unknown, no bar fill).
        desc: what is going on, shown left of the bar (``"replaying"``).
        unit: what is counted (``"flows"``).
        enabled: ``None``: on in a Jupyter kernel and when ``file`` is a
            terminal, off otherwise; ``False``: never; ``True``: always (plain
            lines when ``file`` is not a terminal and there is no notebook).
        delay: show nothing until this many seconds have passed (s;
            default :data:`DELAY_S`).
        file: where the console bar and the summary go (default: stderr; in a
            notebook the summary is printed to stdout).
        ticker: refresh from a background thread, so a bar appears and its
            time runs even without :meth:`update` calls (a compile).
        bar_format: tqdm's ``bar_format`` (e.g. ``"{desc} {elapsed}"``).
        heartbeat: seconds between the lines of the plain mode (s).
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        *,
        enabled: bool | None = None,
        delay: float | None = None,
        file: TextIO | None = None,
        ticker: bool = False,
        bar_format: str | None = None,
        heartbeat: float = 10.0,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.delay = DELAY_S if delay is None else delay
        self.bar_format = bar_format
        self.heartbeat = heartbeat
        self.n = 0
        """Items counted so far."""
        self.summary: str | None = None
        """The line printed on close (set by :meth:`done`), if any."""
        self._file = file
        self._notebook = in_notebook()
        self.mode: Mode = self._mode(enabled)
        """``off``, ``bar`` (tqdm) or ``plain`` (lines)."""
        self.shown = False
        """Whether anything was displayed (the work outlived ``delay``)."""
        self._start = time.perf_counter()
        self._wall_start = time.time()
        self._bar: Any = None
        self._last_line = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done: tuple[str, str] | None = None
        self._closed = False
        self._token: contextvars.Token[Progress | None] | None = None
        self.where = ""
        """Where the work runs, said in the summary (``on Dask, 4 partitions``)."""
        if ticker and self.mode != "off":
            context = contextvars.copy_context()  # the notebook cell's output
            self._thread = threading.Thread(
                target=context.run, args=(self._tick,), daemon=True
            )
            self._thread.start()

    @property
    def file(self) -> TextIO:
        """The stream the console bar and lines go to."""
        return self._file if self._file is not None else sys.stderr

    def _mode(self, enabled: bool | None) -> Mode:
        if enabled is False:
            return "off"
        if self._notebook or _isatty(self.file):
            return "bar"
        return "plain" if enabled else "off"

    @property
    def elapsed(self) -> float:
        """Seconds since the start (s)."""
        return time.perf_counter() - self._start

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.n += n
        if self.mode == "off":
            return
        if self._bar is not None:
            with self._lock:
                if self._bar is not None:
                    self._bar.update(n)
            return
        self._poll()

    def _poll(self) -> None:
        elapsed = self.elapsed
        if elapsed < self.delay:
            return
        with self._lock:
            if self._closed:
                return
            if self.mode == "bar":
                if self._bar is None:
                    self._bar = self._make_bar()
                    self.shown = True
                else:
                    self._bar.refresh()
            elif not self.shown or elapsed - self._last_line >= self.heartbeat:
                self.shown = True
                if elapsed >= self.heartbeat:
                    self._last_line = elapsed
                    count = self._count()
                    self._line(
                        f"{self.desc}: {count} ({elapsed:.0f} s)"
                        if count
                        else f"{self.desc} ({elapsed:.0f} s)"
                    )

    def _count(self) -> str:
        # "1 flow", "2 flows"; nothing when nothing is counted (a compile).
        unit = self.unit
        if self.n == 1 and self.total in (None, 1) and unit.endswith("s"):
            unit = unit[:-1]
        if self.total is not None:
            return f"{self.n}/{self.total} {unit}".rstrip()
        if not unit:
            return ""
        return f"{self.n} {unit}"

    def restart(self) -> None:
        """Start the clock again: what ran so far reported itself (a load).

        Only before anything was shown: a replay whose filter took 30 s to
        load (with its own ``loaded ...`` line) shows its bar, heartbeat and
        summary for the flows' time, not a stale ``replaying: 1 flow (30 s)``.
        """
        with self._lock:
            if self.shown or self._bar is not None:
                return
            self._start = time.perf_counter()
            self._wall_start = time.time()

    def describe(
        self, desc: str | None = None, *, total: int | None = None, where: str = ""
    ) -> None:
        """Change what the bar says and how many items it expects.

        ``where``: appended to the summary line (``replayed 9 flows in 1.2 s
        (on Dask, dashboard http://...)``).
        """
        with self._lock:
            if desc is not None:
                self.desc = desc
            if total is not None:
                self.total = total
            if where:
                self.where = where
            bar = self._bar
            if bar is not None:
                if desc is not None:
                    bar.set_description_str(desc, refresh=False)
                if total is not None:
                    bar.total = total
                bar.refresh()

    def _make_bar(self) -> Any:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]  # only when shown

        options: dict[str, Any] = {
            "total": self.total,
            "desc": self.desc,
            "unit": f" {self.unit}" if self.unit else "",
            "initial": self.n,
            "leave": False,
            "dynamic_ncols": True,
        }
        if not self._notebook:
            options["file"] = self.file
        if self.bar_format is not None:
            options["bar_format"] = self.bar_format
        bar = tqdm(**options)
        bar.start_t = self._wall_start  # elapsed counts from the real start
        bar.refresh()
        return bar

    def _tick(self) -> None:
        # Wake often enough for the bar to appear on time and its clock to run.
        step = min(0.25, max(self.delay / 4, 0.02))
        while not self._stop.wait(step):
            self._poll()

    def _line(self, text: str) -> None:
        stream = sys.stdout if self._notebook else self.file
        print(text, file=stream, flush=True)

    def done(self, what: str, detail: str = "") -> None:
        """Set the summary: ``what`` ``in 1.3 s``, then ``: detail`` if given."""
        self._done = (what, detail)

    def close(self) -> None:
        """Stop the bar and print the summary line if anything was shown."""
        if self._closed:
            return
        elapsed = self.elapsed
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._closed = True
            bar, self._bar = self._bar, None
            if bar is not None:
                bar.close()
        if self._done is not None:
            what, detail = self._done
            where = f" ({self.where})" if self.where else ""
            self.summary = f"{what} in {elapsed:.1f} s{where}" + (
                f": {detail}" if detail else ""
            )
            if self.mode != "off" and elapsed >= self.delay:
                self.shown = True
                self._line(self.summary)

    def __enter__(self) -> Progress:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # left in another context (a thread)
                _CURRENT.set(None)
            self._token = None
        if exc_type is not None:
            self._done = None  # the error speaks for itself
        self.close()
