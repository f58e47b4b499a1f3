"""Timed events on the host's virtual clock: ticks, callout replies, timeouts."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """The clock the scheduler moves."""

    def now_ns(self) -> int:
        """Wall-clock time (ns since the epoch)."""
        ...

    def set_ns(self, now_ns: int) -> None:
        """Move the clock to ``now_ns`` (never backwards)."""
        ...


class Scheduler:
    """Events due at virtual times, fired in time order (ties: first scheduled)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, due_ns: int, action: Callable[[], None]) -> None:
        """Run ``action`` when the clock reaches ``due_ns``."""
        heapq.heappush(self._heap, (due_ns, next(self._seq), action))

    def after(self, delay_ms: float, action: Callable[[], None]) -> None:
        """Run ``action`` ``delay_ms`` milliseconds from now."""
        self.at(self.clock.now_ns() + int(delay_ms * 1_000_000), action)

    def next_due(self) -> int | None:
        """When the next event is due (ns), or ``None``."""
        return self._heap[0][0] if self._heap else None

    def run_due(self) -> int:
        """Fire every event due by now; returns how many fired."""
        fired = 0
        now = self.clock.now_ns()
        while self._heap and self._heap[0][0] <= now:
            _, _, action = heapq.heappop(self._heap)
            action()
            fired += 1
        return fired

    def advance_to(
        self, target_ns: int, until: Callable[[], bool] | None = None
    ) -> bool:
        """Move time to ``target_ns``, firing events on the way.

        Stops early, at the time of the event after which ``until()`` is true.

        Returns:
            Whether ``until`` became true (``False`` without ``until``).
        """
        if until is not None and until():
            return True
        while self._heap and self._heap[0][0] <= target_ns:
            due = self._heap[0][0]
            if due > self.clock.now_ns():
                self.clock.set_ns(due)
            self.run_due()
            if until is not None and until():
                return True
        if target_ns > self.clock.now_ns():
            self.clock.set_ns(target_ns)
        return False

    def advance_bounded(self, target_ns: int, limit: int) -> int:
        """Move time to ``target_ns`` firing at most ``limit`` events on the way.

        Returns:
            The time the events stopped at when ``limit`` ran out before
            ``target_ns`` (the clock stays there), else ``-1`` (the clock is at
            ``target_ns``).
        """
        fired = 0
        while self._heap and self._heap[0][0] <= target_ns:
            if fired >= limit:
                return self.clock.now_ns()
            due, _, action = heapq.heappop(self._heap)
            if due > self.clock.now_ns():
                self.clock.set_ns(due)
            action()
            fired += 1
        if target_ns > self.clock.now_ns():
            self.clock.set_ns(target_ns)
        return -1

    def clear(self) -> None:
        """Drop every pending event."""
        self._heap.clear()
