"""One flow's result, the counts over a replay, and which flows a replay keeps.

:class:`FlowResult` (one captured exchange after the filter, its summary row
and resource row), :func:`modified` (the one definition every count uses),
:class:`ReplayTotals` and :class:`FlowCollector`. :mod:`wasmkit.replay.results`
re-exports them beside :class:`~wasmkit.replay.results.ReplayResult`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from wasmkit.abi.constants import LogLevel
from wasmkit.diff.compare import body_change, header_changes
from wasmkit.host.record import to_record
from wasmkit.host.stream import StreamResult

Keep = Literal["all", "changed", "summary"]
"""Which flows a replay keeps in full (see :class:`FlowCollector`)."""

KEEP_MODES: tuple[Keep, ...] = ("all", "changed", "summary")

Balance = Literal["measured", "even"]
"""How a replay with several workers cuts the capture between them (see
:func:`wasmkit.replay.parallel.replay_parallel`)."""

BALANCE_MODES: tuple[Balance, ...] = ("measured", "even")

DEFAULT_MAX_KEPT = 1000
"""How many flows the ``changed`` and ``summary`` modes keep in full."""


@dataclass(slots=True)
class FlowResult:
    """One captured exchange after the filter."""

    index: int
    """Position of the flow in the capture."""
    exchange: Any
    """The captured exchange."""
    result: StreamResult
    """What the filter did."""
    micros: float
    """Wall time of the whole stream in the host (µs)."""
    no_response: bool = False
    """The capture had no response (an error flow); a 503 stood in for it."""

    @property
    def failed(self) -> bool:
        """The filter failed on this flow."""
        return self.result.error is not None

    def record(self) -> dict[str, Any]:
        """The flow as a ``wasmkit run`` record with an ``index``."""
        return {"index": self.index, **to_record(self.result)}

    def summary(self) -> dict[str, Any]:
        """One summary row (see :attr:`ReplayResult.summary_rows`)."""
        r = self.result
        req = r.request_before
        path = (req.get(b":path") or b"").decode("utf-8", "replace")
        host = (req.get(b":authority") or b"").decode("utf-8", "replace")
        row: dict[str, Any] = {
            "index": self.index,
            "method": (req.get(b":method") or b"").decode(),
            "host": host,
            "path": path,
            "status_before": self._recorded_status(),
            "status_after": r.response_after.status if r.response_after else None,
            "action": _action(self),
        }
        for side, before, after in (
            (
                "request",
                req.headers,
                r.request_after.headers if r.request_after else None,
            ),
            (
                "response",
                r.response_before.headers if r.response_before else None,
                r.response_after.headers if r.response_after else None,
            ),
        ):
            changes = header_changes(before, after) if before is not None else []
            row[f"{side}_added"] = sum(c.change == "added" for c in changes)
            row[f"{side}_removed"] = sum(c.change == "removed" for c in changes)
            row[f"{side}_changed"] = sum(c.change == "changed" for c in changes)
        row["body_changed"] = any(
            body_change(b, a).changed
            for b, a in (
                (req.body, r.request_after.body if r.request_after else None),
                (
                    r.response_before.body if r.response_before else None,
                    r.response_after.body if r.response_after else None,
                ),
            )
            if b is not None and a is not None
        )
        row["local_reply"] = r.local_reply.status if r.local_reply else None
        row["logs"] = len(r.logs)
        row["host_calls"] = sum(1 for t in r.trace if t.kind == "hostcall")
        row["us"] = round(self.micros, 1)
        row["error"] = f"{r.error.kind}: {r.error.callback}" if r.error else None
        row["reason"] = self.reason()
        row["modified"] = modified(self)
        return row

    def _recorded_status(self) -> int | None:
        # What the upstream answered: as the filter saw it, or, when a local
        # reply on the request side kept the request from it, as recorded.
        r = self.result
        if self.no_response:
            return None
        if r.response_before is not None:
            return r.response_before.status
        recorded = getattr(self.exchange, "response", None)
        status = getattr(recorded, "status", None)
        return int(status) if isinstance(status, int) else None

    def reason(self) -> str | None:
        """Why the flow did not simply pass: ``None`` when it did.

        For a local reply its details and the filter's last warn-or-worse log
        line; for a failure the error kind and the first line of its message.
        """
        r = self.result
        if r.error is not None:
            head = str(r.error).strip().splitlines()
            return f"{r.error.kind}: {head[0] if head else r.error.callback}"[:300]
        if r.local_reply is None:
            return None
        parts = []
        if r.local_reply.details:
            parts.append(r.local_reply.details)
        said = [
            log.message
            for log in r.logs
            if log.level >= LogLevel.WARN and log.source != "host"
        ]
        if said:
            parts.append(said[-1].strip())
        return " — ".join(parts)[:300] if parts else None


def _headers_differ(
    before: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]] | None
) -> bool:
    # As the summary counts them: equal lists never differ, lists of different
    # lengths always do; others may only have moved fields around.
    if after is None:
        return bool(before)
    if len(before) != len(after):
        return True
    if before == after:
        return False
    return any(c.change != "unchanged" for c in header_changes(before, after))


def modified(flow: FlowResult) -> bool:
    """Whether the filter changed the flow: the one definition every count uses.

    True when the filter failed, answered with a local reply, reset or
    stalled the stream, or changed a header or body of either side. A flow
    whose capture has no response (``no response``) is not modified by that
    alone: the 503 standing in for the missing response is the replay's, not
    the filter's; it is modified when the filter changed something else.
    The progress line, :meth:`ReplayTotals.describe` (the CLI footer, the
    explorer's status line, the HTML report) and the ``modified`` key of the
    summary rows all count with this function.
    """
    if _action(flow) not in ("forwarded", "no response"):
        return True
    r = flow.result
    req, after = r.request_before, r.request_after
    if _headers_differ(req.headers, after.headers if after else None):
        return True
    if after is not None and after.body != req.body:
        return True
    before, after = r.response_before, r.response_after
    if before is None:
        return False
    if _headers_differ(before.headers, after.headers if after else None):
        return True
    return after is not None and after.body != before.body


RESOURCE_COLUMNS = ["flow", "us", "us_filter", "host_calls", "fuel", "memory_bytes"]
"""The first columns of :meth:`ReplayResult.resources` (then ``us_<callback>``)."""


def resource_row(flow: FlowResult) -> dict[str, Any]:
    """What one flow cost: µs, µs per callback, host calls, fuel, memory after it.

    Keys as the columns of :meth:`ReplayResult.resources`; a callback's
    ``us_<name>`` key only when it ran.
    """
    r = flow.result
    per_callback: dict[str, float] = {}
    host_calls = 0
    for event in r.trace:
        if event.kind == "hostcall":
            host_calls += 1
        elif event.kind == "callback" and event.depth == 0:
            key = "us_" + event.name.removeprefix("proxy_")
            per_callback[key] = per_callback.get(key, 0.0) + event.duration_ns / 1000
    row: dict[str, Any] = {
        "flow": flow.index,
        "us": round(flow.micros, 1),
        "us_filter": round(sum(per_callback.values()), 1),
        "host_calls": host_calls,
        "fuel": r.fuel,
        "memory_bytes": r.memory_bytes,
    }
    row.update((k, round(v, 1)) for k, v in per_callback.items())
    return row


def _action(flow: FlowResult) -> str:
    r = flow.result
    if r.error is not None:
        return "failed"
    if r.local_reply is not None:
        return "local reply"
    if r.reset:
        return "reset"
    if r.stalled:
        return "stalled"
    if flow.no_response:
        return "no response"
    return "forwarded"


@dataclass(slots=True)
class ReplayTotals:
    """Counts over every replayed flow, also those a compact replay let go."""

    flows: int = 0
    """Flows replayed."""
    modified: int = 0
    """Flows the filter changed (see :func:`modified`)."""
    failed: int = 0
    """Flows on which the filter failed."""
    actions: dict[str, int] = field(default_factory=dict)
    """Flows by action (``forwarded``, ``local reply``, ``failed`` ...)."""
    micros: float = 0.0
    """Wall time of all streams in the host (µs)."""
    kept: int = 0
    """Flows kept in full in :attr:`ReplayResult.flows`."""

    def add(self, flow: FlowResult) -> bool:
        """Count one flow; returns whether the filter changed it."""
        self.flows += 1
        action = _action(flow)
        self.actions[action] = self.actions.get(action, 0) + 1
        if action == "failed":
            self.failed += 1
        self.micros += flow.micros
        changed = modified(flow)
        if changed:
            self.modified += 1
        return changed

    def merge(self, other: ReplayTotals) -> None:
        """Add another replay's counts (workers of one replay)."""
        self.flows += other.flows
        self.modified += other.modified
        self.failed += other.failed
        for action, n in other.actions.items():
            self.actions[action] = self.actions.get(action, 0) + n
        self.micros += other.micros
        self.kept += other.kept

    @property
    def local_reply(self) -> int:
        """Flows the filter answered with a local reply."""
        return self.actions.get("local reply", 0)

    @property
    def no_response(self) -> int:
        """Flows whose capture has no response, which the filter let through."""
        return self.actions.get("no response", 0)

    def describe(self) -> str:
        """The counts every view shows: ``9 modified, 1 failed, 2 local reply, ...``.

        Modified and failed always; local reply and no response when there are
        any. The progress line, the CLI footer, the explorer's status line and
        the HTML report all show this text.
        """
        text = f"{self.modified} modified, {self.failed} failed"
        if self.local_reply:
            text += f", {self.local_reply} local reply"
        if self.no_response:
            text += f", {self.no_response} no response"
        return text

    def report(self) -> str:
        """One line for people: flows, the counts of :meth:`describe`, by action."""
        said = ("failed", "local reply", "no response")  # describe() has them
        actions = ", ".join(
            f"{n} {a}" for a, n in sorted(self.actions.items()) if a not in said
        )
        text = f"{self.flows} flows replayed: {self.describe()}"
        if actions:
            text += f" ({actions})"
        if self.kept < self.flows:
            text += f"; {self.kept} kept in full"
        return text


class FlowCollector:
    """Collects a replay's flows: every one, or only some in full.

    Modes (``keep``):

    * ``all``: every flow's full result (before/after, logs, trace);
    * ``changed``: the flows the filter changed or failed on, at most
      ``max_kept`` of them, in capture order;
    * ``summary``: only the flows the filter failed on, at most ``max_kept``.

    :attr:`totals` count every flow in all modes, so memory stays flat in
    the capture's size with ``changed`` and ``summary``.
    """

    def __init__(self, keep: Keep = "all", max_kept: int | None = None) -> None:
        if keep not in KEEP_MODES:
            raise ValueError(f"keep must be one of {KEEP_MODES}, not {keep!r}")
        if max_kept is not None and max_kept < 0:
            raise ValueError(f"max_kept must be >= 0, not {max_kept}")
        self.keep: Keep = keep
        self.max_kept = (
            max_kept if max_kept is not None or keep == "all" else DEFAULT_MAX_KEPT
        )
        self.flows: list[FlowResult] = []
        self.totals = ReplayTotals()

    def add(self, flow: FlowResult) -> bool:
        """Count ``flow`` and keep it if the mode says so; returns whether kept."""
        totals = self.totals
        if self.keep == "all" and self.max_kept is None:
            # Counted when asked (ReplayResult.totals): full replays stay fast.
            self.flows.append(flow)
            totals.kept += 1
            return True
        changed = totals.add(flow)
        if self.max_kept is not None and totals.kept >= self.max_kept:
            return False
        if (
            self.keep == "all"
            or (self.keep == "changed" and changed)
            or (self.keep == "summary" and flow.failed)
        ):
            self.flows.append(flow)
            totals.kept += 1
            return True
        return False

    def extend(self, flows: Iterable[FlowResult]) -> None:
        """Add several flows."""
        for flow in flows:
            self.add(flow)

    def counted(self) -> ReplayTotals | None:
        """The totals, or ``None`` when every flow is kept (count them later)."""
        if self.keep == "all" and self.max_kept is None:
            return None
        return self.totals
