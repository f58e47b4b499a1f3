"""Results of a replay: one record per flow, plus tables and exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmkit.diff.compare import body_change, header_changes
from wasmkit.host.callouts import Callout
from wasmkit.host.record import to_record
from wasmkit.host.stream import StreamResult


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
            "status_before": None
            if self.no_response or r.response_before is None
            else r.response_before.status,
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
class ReplayResult:
    """Everything a replay produced."""

    filter: str
    """The filter's name or path."""
    flows: list[FlowResult]
    """One result per replayed flow, in capture order."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """The filter's metrics at the end."""
    callouts: list[Callout] = field(default_factory=list)
    """Every HTTP callout made."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Flows not replayed, by kind (``tcp``, ``websocket``...)."""
    capture_error: str | None = None
    """Where the capture broke, if it did (flows before it were replayed)."""

    def __iter__(self) -> Iterator[FlowResult]:
        return iter(self.flows)

    def __len__(self) -> int:
        return len(self.flows)

    @property
    def failed(self) -> list[FlowResult]:
        """Flows on which the filter failed."""
        return [f for f in self.flows if f.failed]

    @property
    def summary_rows(self) -> list[dict[str, Any]]:
        """One dict per flow.

        Keys: index, method, host, path, statuses, action, header adds, removes
        and changes per side, body changed, local reply, log count, host calls,
        µs, error.
        """
        return [f.summary() for f in self.flows]

    def header_rows(self, *, unchanged: bool = False) -> list[dict[str, Any]]:
        """One dict per header field that changed (or every field)."""
        rows = []
        for flow in self.flows:
            r = flow.result
            sides = (
                (
                    "request",
                    r.request_before.headers,
                    r.request_after.headers if r.request_after else None,
                ),
                (
                    "response",
                    r.response_before.headers if r.response_before else None,
                    r.response_after.headers if r.response_after else None,
                ),
            )
            for side, before, after in sides:
                if before is None and after is None:
                    continue
                for c in header_changes(before, after):
                    if unchanged or c.change != "unchanged":
                        rows.append(
                            {
                                "flow": flow.index,
                                "side": side,
                                "name": c.name,
                                "before": c.before,
                                "after": c.after,
                                "change": c.change,
                            }
                        )
        return rows

    def body_rows(self) -> list[dict[str, Any]]:
        """One dict per body the filter changed."""
        rows = []
        for flow in self.flows:
            r = flow.result
            pairs = (
                (
                    "request",
                    r.request_before.body,
                    r.request_after.body if r.request_after else None,
                ),
                (
                    "response",
                    r.response_before.body if r.response_before else None,
                    r.response_after.body if r.response_after else None,
                ),
            )
            for side, before, after in pairs:
                if before is None or after is None:
                    continue
                c = body_change(before, after)
                if c.changed:
                    rows.append(
                        {
                            "flow": flow.index,
                            "side": side,
                            "kind": c.kind,
                            "size_before": c.size_before,
                            "size_after": c.size_after,
                            "diff": c.diff,
                        }
                    )
        return rows

    def records(self) -> list[dict[str, Any]]:
        """Every flow as a ``wasmkit run`` record with its ``index``."""
        return [f.record() for f in self.flows]

    def to_json(self, path: str | Path) -> None:
        """Write the records as a JSON array."""
        Path(path).write_text(json.dumps(self.records(), indent=1))

    def _repr_html_(self) -> str:
        from wasmkit.diff import report  # the HTML lives with the report

        return report.render_summary_html(self)

    def summary(self) -> Any:
        """The summary as a pandas DataFrame."""
        from wasmkit.diff import frames  # pandas loads only when asked for

        return frames.summary(self)

    def header_diff(self, *, unchanged: bool = False) -> Any:
        """Header changes as a pandas DataFrame."""
        from wasmkit.diff import frames

        return frames.header_diff(self, unchanged=unchanged)

    def body_diff(self) -> Any:
        """Body changes as a pandas DataFrame."""
        from wasmkit.diff import frames

        return frames.body_diff(self)

    def _after_filter(self) -> list[tuple[Any, Any, Any, str | None]]:
        """Each flow as it left the filter: ``(exchange, request, response, error)``.

        The request as forwarded upstream (or as the filter left it when it held
        it), the response the client received (local replies included; the 503
        that stands in for a missing upstream response is left out, the
        capture's error kept instead), and the error text: the filter's failure,
        a reset or stall, or the capture's own error.
        """
        out = []
        for flow in self.flows:
            r = flow.result
            response = r.response_after
            if flow.no_response and r.local_reply is None:
                response = None
            error: str | None = None
            if r.error is not None:
                error = f"filter failed ({r.error.kind}): {r.error}"
            elif r.reset:
                error = "the filter reset the stream"
            elif r.stalled:
                error = f"the stream stalled at {r.stalled}"
            elif flow.no_response and response is None:
                error = getattr(flow.exchange, "error", None) or "no upstream response"
            out.append((flow.exchange, r.request_after, response, error))
        return out

    def to_flow(self, path: str | Path) -> int:
        """Write the traffic as it left the filter as a mitmproxy ``.flow`` file.

        Opens in mitmweb (``mitmweb -r PATH``); returns the number of flows.
        """
        from wasmkit.traffic import mitm

        return mitm.write_flows(path, self._after_filter())

    def to_har(self, path: str | Path) -> int:
        """Write the traffic as it left the filter as HAR (mitmproxy's exporter).

        Returns the number of entries.
        """
        from wasmkit.traffic import mitm

        return mitm.write_har(path, self._after_filter())

    def to_html(self, path: str | Path) -> None:
        """Write a static, self-contained HTML report of the replay."""
        from wasmkit.diff import report

        report.to_html(self, path)
