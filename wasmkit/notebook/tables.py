"""HTML tables of a replay for the explorer: pandas Stylers tinted by the theme.

Every table is a :class:`pandas.io.formats.style.Styler` rendered to HTML:
its ``<table>`` carries a ``class`` (``wasmkit-diff`` for the diff tables) and
``data-flow="<capture index>"``; diff rows carry ``wk-added`` /
``wk-removed`` / ``wk-changed`` / ``wk-unchanged`` on every cell, tinted by
the Styler's ``<style>`` block with JupyterLab's theme colours
(:data:`wasmkit.diff.frames.TABLE_STYLES`), and a ``change`` column says the
same in words, so the tables read without colour too. Cell values are HTML-escaped with
newlines as line breaks, and every table and diff carries the
``tex2jax_ignore mathjax_ignore`` classes: MathJax (which typesets HTML
widgets and outputs in JupyterLab) never turns a ``$.id`` into LaTeX.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from wasmkit.diff.compare import BodyChange, header_changes
from wasmkit.diff.frames import (
    NO_MATHJAX,
    TABLE_STYLES,
    cell_html,
    css,
    summary_frame,
    tint,
)
from wasmkit.host.message import HeaderPairs


def _swatch(kind: str, word: str) -> str:
    return (
        f'<span class="wk-{kind}" style="{css(tint(kind))};padding:0 4px">{word}</span>'
    )


LEGEND = " ".join(
    _swatch(kind, kind) for kind in ("added", "removed", "changed")
)  # fmt: skip
"""The colour legend of the status lines: tints of the theme's colours."""


_STYLES = [
    *TABLE_STYLES,
    {"selector": "td.wk-warn", "props": tint("changed")},  # log levels
    {"selector": "td.wk-error", "props": tint("failed")},
]


def e(value: Any) -> str:
    """HTML-escape a value (``None`` as empty)."""
    return html.escape("" if value is None else str(value))


def quiet(markup: str) -> str:
    """``markup`` in a block MathJax skips (a path's ``$`` stays text)."""
    return f'<div class="{NO_MATHJAX}">{markup}</div>'


def styled(
    frame: pd.DataFrame,
    *,
    table_class: str,
    flow: int | None = None,
    row_classes: Sequence[str] | None = None,
) -> str:
    """``frame`` as Styler HTML with the table class, ``data-flow`` and row classes.

    Args:
        frame: the rows to show (its index is hidden).
        table_class: the ``class`` of the ``<table>``.
        flow: the capture index written as ``data-flow``.
        row_classes: one CSS class per row, put on every cell of that row.
    """
    frame = frame.reset_index(drop=True)
    attrs = f'class="{table_class}"'
    if flow is not None:
        attrs += f' data-flow="{flow}"'
    styler = (
        pd.DataFrame.style.fget(frame)
        .format(_cell)
        .hide(axis="index")
        .set_table_attributes(attrs)
        .set_table_styles(_STYLES)
    )
    if row_classes is not None and len(frame):
        classes = pd.DataFrame(
            [[cls] * len(frame.columns) for cls in row_classes],
            index=frame.index,
            columns=frame.columns,
        )
        styler = styler.set_td_classes(classes)
    # MathJax skips what is inside: a $.id stays text.
    return f'<div class="{NO_MATHJAX}">{styler.to_html()}</div>'


def _cell(value: Any) -> str:
    if isinstance(value, float) and value == value:
        return f"{value:.1f}"
    return cell_html(value)


COMPACT_COLUMNS = (
    "#", "method", "host", "path", "status", "action", "changes", "µs", "reason",
)  # fmt: skip
"""The Summary tab's columns; the others are behind its "all columns" toggle."""


def _changes(row: dict[str, Any]) -> str:
    # "request +1 ~1, response -2, body": what the filter changed, in words.
    parts = []
    for side in ("request", "response"):
        marks = [
            f"{mark}{row[f'{side}_{kind}']}"
            for kind, mark in (("added", "+"), ("removed", "-"), ("changed", "~"))
            if row[f"{side}_{kind}"]
        ]
        if marks:
            parts.append(f"{side} {' '.join(marks)}")
    if row["body_changed"]:
        parts.append("body")
    return ", ".join(parts)


def _status_pair(row: dict[str, Any]) -> str:
    before, after = row["status_before"], row["status_after"]
    return f"{'-' if before is None else before} → {'-' if after is None else after}"


def compact_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows as the Summary tab's :data:`COMPACT_COLUMNS`."""
    return [
        {
            "#": row["index"],
            "method": row["method"],
            "host": row["host"],
            "path": row["path"],
            "status": _status_pair(row),
            "action": row["action"],
            "changes": _changes(row),
            "µs": row["us"],
            "reason": row["reason"],
        }
        for row in rows
    ]


_SCROLL = "overflow:auto;max-height:36em"
"""The Summary tab's tables scroll (both ways) instead of growing the explorer."""


def summary_html(
    rows: Sequence[dict[str, Any]],
    *,
    row_classes: Sequence[str],
    table_class: str = "wasmkit-summary",
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> str:
    """The Summary tab: the compact columns, every column behind a toggle.

    The compact table (:data:`COMPACT_COLUMNS`) scrolls, sideways rather
    than squeezing its words and down past 36em rather than growing; a
    ``<details>`` below holds the full summary table (every column of
    :meth:`ReplayResult.summary`), closed at first: it works in a live kernel
    and in a saved notebook alike. ``extra`` columns (an
    Envoy column) go after ``action`` in both.
    """
    short = pd.DataFrame(compact_rows(rows), columns=list(COMPACT_COLUMNS))
    every = summary_frame(list(rows))
    for name, values in reversed(list((extra or {}).items())):
        for frame in (short, every):
            frame.insert(frame.columns.get_loc("action") + 1, name, list(values))
    compact = styled(short, table_class=table_class, row_classes=row_classes)
    full = styled(every, table_class=f"{table_class}-all", row_classes=row_classes)
    columns = len(every.columns)
    return (
        f'<div style="{_SCROLL}">{compact}</div>'
        '<details class="wasmkit-summary-toggle"><summary style="cursor:pointer">'
        f"All {columns} columns</summary>"
        f'<div style="{_SCROLL}">{full}</div></details>'
    )


def header_table(
    flow: int,
    before: HeaderPairs | None,
    after: HeaderPairs | None,
    *,
    unchanged: bool = False,
    labels: tuple[str, str] = ("before", "after"),
) -> tuple[str, int, int]:
    """The header diff of one side of a flow as Styler HTML.

    Returns:
        ``(html, rows shown, rows hidden as unchanged)``.
    """
    rows = []
    hidden = 0
    for c in header_changes(before, after):
        if c.change == "unchanged" and not unchanged:
            hidden += 1
            continue
        rows.append(
            {
                "change": c.change,
                "name": c.name,
                labels[0]: c.before,
                labels[1]: c.after,
            }
        )
    frame = pd.DataFrame(rows, columns=["change", "name", *labels])
    table = styled(
        frame,
        table_class="wasmkit-diff",
        flow=flow,
        row_classes=[f"wk-{r['change']}" for r in rows],
    )
    return table, len(rows), hidden


def diff_pre(text: str) -> str:
    """A unified diff or JSON path list as ``<pre>``, lines tinted by kind."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---", "@@")):
            out.append(f'<span style="opacity:0.75">{e(line)}</span>')
            continue
        kind = {"+": "added", "-": "removed", "~": "changed"}.get(line[:1])
        if kind is None:
            out.append(e(line))
        else:
            out.append(f'<span style="{css(tint(kind))}">{e(line)}</span>')
    return (
        f'<pre class="{NO_MATHJAX}" style="background:var(--jp-layout-color1);'
        "color:var(--jp-content-font-color1);padding:4px;"
        'white-space:pre-wrap;max-height:30em;overflow:auto">'
        + "\n".join(out)
        + "</pre>"
    )


def body_table(
    flow: int,
    sides: Iterable[tuple[str, BodyChange | None]],
    labels: tuple[str, str] = ("before", "after"),
) -> str:
    """Per side: how the body changed (kind, sizes) as a table, then the diff."""
    rows = []
    diffs = []
    for side, change in sides:
        if change is None:
            rows.append({"side": side, "change": "absent", "kind": "", "bytes": ""})
            continue
        rows.append(
            {
                "side": side,
                "change": "changed" if change.changed else "unchanged",
                "kind": change.kind,
                "bytes": f"{change.size_before:,} → {change.size_after:,}",
            }
        )
        if change.changed:
            diffs.append(
                f"<p><b>{e(side)} body</b> ({e(change.kind)}, "
                f"{change.size_before:,} → {change.size_after:,} bytes)</p>"
                + diff_pre(change.diff)
            )
    columns = ["side", "change", "kind", "bytes"]
    frame = pd.DataFrame(rows, columns=columns).rename(
        columns={"bytes": f"bytes {labels[0]} → {labels[1]}"}
    )
    table = styled(
        frame,
        table_class="wasmkit-diff",
        flow=flow,
        row_classes=[
            "wk-changed" if r["change"] == "changed" else "wk-unchanged" for r in rows
        ],
    )
    return table + ("".join(diffs) or "<p>No body changed.</p>")


def records_table(
    records: Sequence[dict[str, Any]],
    *,
    table_class: str,
    flow: int | None = None,
    columns: Sequence[str] | None = None,
    row_classes: Sequence[str] | None = None,
    empty: str = "Nothing to show.",
) -> str:
    """Plain rows (logs, metrics, callouts, trace) as Styler HTML."""
    if not records:
        attrs = f' data-flow="{flow}"' if flow is not None else ""
        return f'<p class="{table_class}"{attrs}>{e(empty)}</p>'
    frame = pd.DataFrame(list(records), columns=list(columns) if columns else None)
    return styled(frame, table_class=table_class, flow=flow, row_classes=row_classes)


def log_class(level: str) -> str:
    """The row class of a log level (warnings yellow, errors red)."""
    if level in ("error", "critical"):
        return "wk-error"
    return "wk-warn" if level == "warn" else "wk-unchanged"
