"""A replay summary as plain text, for the terminal."""

from __future__ import annotations

from wasmkit.replay.results import ReplayResult

_COLUMNS = [
    ("#", "index", 4),
    ("method", "method", 7),
    ("host", "host", 22),
    ("path", "path", 28),
    ("status", "status", 11),
    ("action", "action", 11),
    ("req +/-/~", "req", 9),
    ("resp +/-/~", "resp", 10),
    ("body", "body", 4),
    ("logs", "logs", 4),
    ("µs", "us", 8),
]


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_summary(result: ReplayResult, *, max_rows: int = 200) -> str:
    """The summary table, then totals, failures and where a capture broke."""
    lines = ["  ".join(f"{title:<{w}}" for title, _, w in _COLUMNS).rstrip()]
    rows = result.summary_rows
    for row in rows[:max_rows]:
        values = {
            "index": str(row["index"]),
            "method": row["method"],
            "host": row["host"],
            "path": row["path"],
            "status": f"{row['status_before'] or '-'} -> {row['status_after'] or '-'}",
            "action": row["action"],
            "req": f"{row['request_added']}/{row['request_removed']}/"
            f"{row['request_changed']}",
            "resp": f"{row['response_added']}/{row['response_removed']}/"
            f"{row['response_changed']}",
            "body": "yes" if row["body_changed"] else "",
            "logs": str(row["logs"]),
            "us": f"{row['us']:.0f}",
        }
        lines.append(
            "  ".join(
                f"{_cell(values[key], w):<{w}}" for _, key, w in _COLUMNS
            ).rstrip()
        )
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more flows")
    # The totals count every flow (a compact replay's rows are the kept ones).
    lines.append(f"{result.totals.report()} through {result.filter}")
    _tail(result, lines)
    return "\n".join(lines)


def _tail(result: ReplayResult, lines: list[str]) -> None:
    if result.skipped:
        lines.append(
            "skipped "
            + ", ".join(f"{n} {k}" for k, n in sorted(result.skipped.items()))
        )
    for flow in result.failed:
        error = flow.result.error
        first = str(error).splitlines()[0] if error else ""
        lines.append(f"  flow {flow.index}: [{error.kind if error else ''}] {first}")
    if result.capture_error:
        lines.append(f"capture broke: {result.capture_error}")
    note = result.partial_note()
    if note:
        lines.append(note)
