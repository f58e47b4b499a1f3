"""The pages of one flow in the explorer: headers, body, logs, trace (HTML)."""

from __future__ import annotations

from typing import Any

from wasmkit.diff.compare import BodyChange, body_change
from wasmkit.notebook import tables
from wasmkit.notebook.tables import e
from wasmkit.replay.results import FlowResult


def headers(flow: FlowResult, *, unchanged: bool = False) -> tuple[str, str]:
    """The Request headers and Response headers pages."""
    r = flow.result
    out = []
    # A capture without a response: the filter saw the replay's stand-in
    # 503, so the diff is against it and its fields are not the filter's.
    stand_in = flow.no_response and r.response_before is not None
    for before, after, gone in (
        (r.request_before, r.request_after, "the filter held the request"),
        (
            None if flow.no_response and not stand_in else r.response_before,
            r.response_after,
            "the client got no response",
        ),
    ):
        table, shown, hidden = tables.header_table(
            flow.index,
            before.headers if before is not None else None,
            after.headers if after is not None else None,
            unchanged=unchanged,
        )
        notes = []
        if stand_in and before is r.response_before:
            notes.append(
                "the capture has no response: before is the 503 the replay stood "
                "in for it, not the filter's"
            )
        if before is None:
            notes.append("the upstream was not asked: every field is the filter's")
        if after is None:
            notes.append(gone)
        if not shown:
            notes.append("no header changed")
        if hidden:
            notes.append(f"{hidden} unchanged fields hidden")
        out.append(table + "".join(f"<p>{e(n)}</p>" for n in notes))
    return out[0], out[1]


def notes(flow: FlowResult) -> list[str]:
    """What happened to the flow besides header and body changes."""
    r = flow.result
    notes = []
    if r.local_reply is not None:
        lr = r.local_reply
        details = f" ({lr.details})" if lr.details else ""
        notes.append(f"local reply {lr.status}{details} from {lr.callback}")
    if r.error is not None:
        notes.append(f"filter failed ({r.error.kind}) in {r.error.callback}: {r.error}")
    if r.stalled:
        notes.append(f"stalled at {r.stalled}")
    if r.reset:
        notes.append("the filter reset the stream")
    if flow.no_response:
        error = getattr(flow.exchange, "error", None)
        notes.append("the capture has no response" + (f": {error}" if error else ""))
    notes.extend(f"note: {n}" for n in r.notes)
    return notes


def body(flow: FlowResult) -> str:
    """The Body page: per side, the body diff with sizes."""
    r = flow.result
    # Without a captured response the filter saw the replay's stand-in 503.
    resp_before = r.response_before
    sides: list[tuple[str, BodyChange | None]] = []
    for side, before, after in (
        ("request", r.request_before, r.request_after),
        ("response", resp_before, r.response_after),
    ):
        if before is None and after is None:
            sides.append((side, None))
        else:
            sides.append(
                (
                    side,
                    body_change(
                        before.body if before is not None else None,
                        after.body if after is not None else None,
                    ),
                )
            )
    return tables.body_table(flow.index, sides)


def logs(flow: FlowResult) -> str:
    """The Logs page: the flow's log records."""
    records = [
        {"level": log.level.label, "source": log.source, "message": log.message}
        for log in flow.result.logs
    ]
    return tables.records_table(
        records,
        table_class="wasmkit-logs",
        flow=flow.index,
        row_classes=[tables.log_class(r["level"]) for r in records],
        empty="The filter logged nothing for this flow.",
    )


def trace(flow: FlowResult) -> str:
    """The Trace page: callbacks and host calls, with their µs."""
    records = [
        {
            "kind": t.kind,
            "name": "  " * t.depth + t.name,
            "args": ", ".join(f"{k}={_value(v)}" for k, v in t.args.items()),
            "result": "" if t.result is None else _value(t.result),
            "µs": round(t.duration_ns / 1000, 1) if t.duration_ns else None,
        }
        for t in flow.result.trace
    ]
    return tables.records_table(
        records,
        table_class="wasmkit-trace",
        flow=flow.index,
        columns=["kind", "name", "args", "result", "µs"],
        empty="No trace for this flow.",
    )


def _value(value: Any) -> str:
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "replace"))
    return str(value)
