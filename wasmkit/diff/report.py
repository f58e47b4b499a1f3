"""A replay as a static, self-contained HTML report (stdlib only)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmkit.diff.compare import body_change, header_changes

if TYPE_CHECKING:
    from wasmkit.replay.results import FlowResult, ReplayResult

SUMMARY_COLUMNS = [
    ("#", "index"), ("method", "method"), ("host", "host"), ("path", "path"),
    ("before", "status_before"), ("after", "status_after"), ("action", "action"),
    ("req +", "request_added"), ("req -", "request_removed"),
    ("req ~", "request_changed"), ("resp +", "response_added"),
    ("resp -", "response_removed"), ("resp ~", "response_changed"),
    ("body", "body_changed"), ("local reply", "local_reply"), ("logs", "logs"),
    ("host calls", "host_calls"), ("µs", "us"), ("error", "error"),
    ("reason", "reason"),
]  # fmt: skip

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left;
  vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; }
code, pre, td.value { font-family: ui-monospace, monospace; font-size: 12.5px; }
pre { background: #f7f7f7; padding: .5em; overflow-x: auto; white-space: pre-wrap; }
.status { font-weight: bold; }
tr.added td { background: #dff5dd; }
tr.removed td { background: #f9dcdc; }
tr.changed td { background: #fbf3c8; }
tr.row-failed td { background: #f9dcdc; }
tr.row-modified td.action { background: #fbf3c8; }
tr.row-local-reply td.action { background: #dde8f9; }
pre .add { color: #17701a; } pre .del { color: #a11; } pre .hunk { color: #666; }
details { margin: .3em 0; border-top: 1px solid #ddd; padding-top: .3em; }
summary { cursor: pointer; }
.error { color: #a11; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _row_class(row: dict[str, Any]) -> str:
    # The row's "modified" is results.modified(): the count the status shows.
    if row["action"] == "failed":
        return "row-failed"
    if row["local_reply"] is not None:
        return "row-local-reply"
    return "row-modified" if row["modified"] else "row-unchanged"


def _summary_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{_e(title)}</th>" for title, _ in SUMMARY_COLUMNS)
    out = [f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>']
    for pos, row in enumerate(rows):
        cells = []
        for _, key in SUMMARY_COLUMNS:
            value = row[key]
            if key == "index":
                cell = f'<a href="#flow-{pos}">{value}</a>'
            elif isinstance(value, bool):
                cell = "yes" if value else ""
            else:
                cell = _e(value)
            cls = "num" if isinstance(value, int | float) and key != "index" else key
            cells.append(f'<td class="{cls}">{cell}</td>')
        out.append(f'<tr class="{_row_class(row)}">{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def _header_table(changes: list[dict[str, Any]]) -> str:
    out = [
        '<table class="headers"><thead><tr><th>side</th><th>header</th>'
        "<th>change</th><th>before</th><th>after</th></tr></thead><tbody>"
    ]
    for c in changes:
        out.append(
            f'<tr class="{_e(c["change"])}"><td>{_e(c["side"])}</td>'
            f'<td class="value">{_e(c["name"])}</td><td>{_e(c["change"])}</td>'
            f'<td class="value">{_e(c["before"])}</td>'
            f'<td class="value">{_e(c["after"])}</td></tr>'
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _diff_pre(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        elif line.startswith(("@@", "~")):
            cls = "hunk"
        else:
            lines.append(_e(line))
            continue
        lines.append(f'<span class="{cls}">{_e(line)}</span>')
    return "<pre>" + "\n".join(lines) + "</pre>"


def _changes(flow: FlowResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    r = flow.result
    sides = (
        ("request", r.request_before, r.request_after),
        ("response", r.response_before, r.response_after),
    )
    headers: list[dict[str, Any]] = []
    bodies: list[dict[str, Any]] = []
    for side, before, after in sides:
        if before is None and after is None:
            continue
        for c in header_changes(
            before.headers if before else None, after.headers if after else None
        ):
            if c.change != "unchanged":
                headers.append(
                    {
                        "side": side,
                        "name": c.name,
                        "before": c.before,
                        "after": c.after,
                        "change": c.change,
                    }
                )
        if before is not None and after is not None:
            b = body_change(before.body, after.body)
            if b.changed:
                bodies.append(
                    {
                        "side": side,
                        "kind": b.kind,
                        "size_before": b.size_before,
                        "size_after": b.size_after,
                        "diff": b.diff,
                    }
                )
    return headers, bodies


def _flow_section(pos: int, flow: FlowResult, row: dict[str, Any]) -> str:
    r = flow.result
    headers, bodies = _changes(flow)
    title = (
        f"#{row['index']} {row['method']} {row['host']}{row['path']} — "
        f"{row['status_before'] or '-'} → {row['status_after'] or '-'} "
        f"({row['action']})"
    )
    is_open = " open" if row["action"] == "failed" else ""
    out = [
        f'<details id="flow-{pos}" class="flow {_row_class(row)}"{is_open}>',
        f"<summary>{_e(title)}</summary>",
    ]
    if headers:
        out.append(_header_table(headers))
    else:
        out.append("<p>No header changes.</p>")
    for body in bodies:
        out.append(
            f"<p>{_e(body['side'])} body ({_e(body['kind'])}): "
            f"{body['size_before']} → {body['size_after']} bytes</p>"
        )
        out.append(_diff_pre(body["diff"]))
    if r.local_reply is not None:
        lr = r.local_reply
        out.append(
            f"<p>Local reply <b>{lr.status}</b> from {_e(lr.callback)}"
            + (f" ({_e(lr.details)})" if lr.details else "")
            + "</p>"
        )
    if r.error is not None:
        err = r.error
        out.append(
            f'<p class="error">Filter failed ({_e(err.kind)}) in '
            f"<code>{_e(err.callback)}</code>: {_e(err)}</p>"
        )
        backtrace = getattr(err, "wasm_backtrace", None)
        if backtrace:
            out.append("<pre>" + _e("\n".join(backtrace)) + "</pre>")
    if r.stalled:
        out.append(f'<p class="error">Stalled at {_e(r.stalled)}</p>')
    if r.reset:
        out.append('<p class="error">The filter reset the stream.</p>')
    if flow.no_response:
        error = getattr(flow.exchange, "error", None)
        out.append(
            f"<p>The capture has no response{': ' + _e(error) if error else ''}.</p>"
        )
    if r.logs:
        out.append(
            '<table class="logs"><thead><tr><th>level</th><th>source</th>'
            "<th>message</th></tr></thead><tbody>"
        )
        for log in r.logs:
            level = getattr(log.level, "name", log.level)
            out.append(
                f"<tr><td>{_e(level)}</td><td>{_e(log.source)}</td>"
                f'<td class="value">{_e(log.message)}</td></tr>'
            )
        out.append("</tbody></table>")
    for note in r.notes:
        out.append(f"<p>Note: {_e(note)}</p>")
    out.append("</details>")
    return "\n".join(out)


def _filter_name(name: str) -> str:
    # An inline WAT or wasm filter is named by its source: keep the first line.
    first = name.strip().splitlines()[0] if name.strip() else name
    if len(first) > 80 or first != name.strip():
        return first[:60] + " …"
    return first


def _status(result: ReplayResult, rows: list[dict[str, Any]]) -> str:
    totals = result.totals  # the counts every view shows
    status = (
        f"filter {_filter_name(result.filter)}: {totals.flows} flows, "
        f"{totals.describe()}"
    )
    if result.skipped:
        skipped = ", ".join(f"{n} {k}" for k, n in sorted(result.skipped.items()))
        status += f"; skipped {skipped}"
    return status


def render_summary_html(result: ReplayResult) -> str:
    """The status line and the summary table, as an HTML fragment.

    What a notebook shows for a replay result without a live kernel.
    """
    rows = result.summary_rows
    parts = [
        f"<style>{_CSS.replace('body {', '.wasmkit-replay {')}</style>",
        # MathJax (JupyterLab) leaves the paths and reasons as text.
        '<div class="wasmkit-replay tex2jax_ignore mathjax_ignore">',
        f'<p class="status">{_e(_status(result, rows))}</p>',
    ]
    note = result.partial_note()
    if note:
        parts.append(f'<p class="error">{_e(note[0].upper() + note[1:])}</p>')
    if result.capture_error:
        parts.append(f'<p class="error">Capture error: {_e(result.capture_error)}</p>')
    parts.append(_summary_table(rows))
    parts.append("</div>")
    return "\n".join(parts)


def render_html(result: ReplayResult) -> str:
    """The report as one HTML document (inline CSS, no scripts, no links out)."""
    rows = result.summary_rows
    status = _status(result, rows)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>wasmkit replay — {_e(_filter_name(result.filter))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>wasmkit replay</h1>",
        f'<p class="status">{_e(status)}</p>',
    ]
    note = result.partial_note()
    if note:
        parts.append(f'<p class="error">{_e(note[0].upper() + note[1:])}</p>')
    if result.capture_error:
        parts.append(f'<p class="error">Capture error: {_e(result.capture_error)}</p>')
    parts.append("<h2>Summary</h2>")
    parts.append(_summary_table(rows))
    parts.append("<h2>Flows</h2>")
    for pos, (flow, row) in enumerate(zip(result.flows, rows, strict=True)):
        parts.append(_flow_section(pos, flow, row))
    if result.metrics:
        parts.append("<h2>Metrics</h2>")
        keys = sorted({k for m in result.metrics for k in m})
        parts.append(
            "<table><thead><tr>"
            + "".join(f"<th>{_e(k)}</th>" for k in keys)
            + "</tr></thead><tbody>"
        )
        for m in result.metrics:
            parts.append(
                "<tr>" + "".join(f"<td>{_e(m.get(k))}</td>" for k in keys) + "</tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def to_html(result: ReplayResult, path: str | Path) -> None:
    """Write :func:`render_html` of ``result`` to ``path`` (UTF-8).

    Written to a temporary file beside ``path`` and renamed once complete.

    Raises:
        OSError: it cannot be written; ``filename`` is ``path``.
    """
    from wasmkit.traffic import _atomic

    _atomic.write_text(path, render_html(result))
