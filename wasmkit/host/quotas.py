"""Quotas on what a filter makes the host keep (the counting side of ``Limits``).

A filter's linear memory is capped by wasmtime; what it makes the *host* hold
(log records, trace events, header fields, properties, shared data, queue
items, metrics, callouts) is capped here, inside the host function that takes
it, so memory stays bounded whatever the filter does. Two kinds of quota:

* *dropped* (logs, trace): what is over is not kept but counted, and the
  stream's result carries a note saying how much was dropped;
* *hard* (everything else): the host function raises :func:`exceeded`, which
  ends the callback as a failure of kind ``quota`` naming the quota, how much
  was asked and the ``Limits`` field that raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wasmkit.host.vm import GuestExit

if TYPE_CHECKING:
    from wasmkit.host.limits import Limits


def exceeded(what: str, asked: int, field: str, limit: int) -> GuestExit:
    """The error that stops a filter asking the host for more than a quota."""
    return GuestExit(
        f"quota: {what} ({asked:,}) past Limits.{field} ({limit:,})", kind="quota"
    )


@dataclass(slots=True)
class Budget:
    """What the filter has made the host keep in the current window.

    A window is one stream (or the time between streams): the counters start
    again when the VM's log and trace lists are emptied.
    """

    log_records: int = 0
    """Log records kept."""
    log_bytes: int = 0
    """Bytes of log messages kept."""
    dropped_logs: int = 0
    """Log records not kept (over the quota)."""
    dropped_log_bytes: int = 0
    """Bytes of the log records not kept."""
    trace_events: int = 0
    """Trace events recorded."""
    dropped_trace: int = 0
    """Trace events not recorded."""
    property_bytes: int = 0
    """Bytes of properties set."""

    def reset(self) -> None:
        """Start a new window."""
        self.log_records = self.log_bytes = self.trace_events = 0
        self.dropped_logs = self.dropped_log_bytes = self.dropped_trace = 0
        self.property_bytes = 0

    def take_log(self, size: int, limits: Limits) -> int | None:
        """How many bytes of a ``size``-byte message to keep (``None``: drop it)."""
        room = limits.log_bytes - self.log_bytes
        if self.log_records >= limits.log_records or (room <= 0 and size):
            self.dropped_logs += 1
            self.dropped_log_bytes += size
            return None
        kept = min(size, room)
        self.log_records += 1
        self.log_bytes += kept
        if kept < size:
            self.dropped_log_bytes += size - kept
        return kept

    def note(self, limits: Limits) -> str | None:
        """What was dropped, for the stream's result; ``None`` if nothing."""
        parts = []
        if self.dropped_logs or self.dropped_log_bytes:
            parts.append(
                f"{self.dropped_logs:,} log records and {self.dropped_log_bytes:,} "
                f"bytes of log messages dropped past Limits.log_records "
                f"({limits.log_records:,}) / Limits.log_bytes ({limits.log_bytes:,})"
            )
        if self.dropped_trace:
            parts.append(
                f"{self.dropped_trace:,} trace events not recorded past "
                f"Limits.trace_events ({limits.trace_events:,})"
            )
        return "; ".join(parts) if parts else None


def check_header_map(
    items: list[tuple[bytes, bytes]], adding: int, limits: Limits
) -> None:
    """Refuse a header field that would make ``items`` pass its quotas.

    ``adding`` is the new field's size. The byte total is recounted every 64
    fields (and for large fields), so a check costs O(1) on average.
    """
    count = len(items) + 1
    if count > limits.header_map_pairs:
        raise exceeded(
            "header map fields", count, "header_map_pairs", limits.header_map_pairs
        )
    if adding > 4096 or count % 64 == 0:
        total = adding + sum(len(k) + len(v) for k, v in items)
        if total > limits.header_map_bytes:
            raise exceeded(
                "header map bytes", total, "header_map_bytes", limits.header_map_bytes
            )
