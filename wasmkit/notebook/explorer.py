"""The replay explorer: a :class:`~wasmkit.replay.results.ReplayResult` as an anywidget.

One widget, drawn by ``static/explorer.js`` and ``static/explorer.css``: a
status line, then tabs ``Flows | Summary | Resources | Logs | Metrics |
Callouts``. The Flows tab is a virtualized flow table (sortable columns,
failed rows marked, ↑/↓ j/k Enter and ``/``), the mitmproxy filter box, the
All / Modified / Errors / Local reply switch and the selected flow's panes
(``Request headers | Response headers | Body | Logs | Trace | Error |
curl``). Python decides what to show and keeps the state in traitlets
synced as plain JSON; the front end draws it. It is sent only the rows it
shows (:attr:`ReplayExplorer.window`, from :attr:`~ReplayExplorer.window_start`)
and the selected flow's :attr:`~ReplayExplorer.detail`.

The CSS classes (``wasmkit-explorer``, ``wasmkit-status``, ``wasmkit-tabs``,
``wasmkit-filter``, ``wasmkit-show``, ``wasmkit-unchanged``,
``wasmkit-flowtable``, ``wasmkit-flow-tabs``, ``wasmkit-resources``) are a
contract with the browser test; keep them. With a comparison with Envoy
(``envoy=``, or after ``result.against_envoy()``) the explorer adds an Envoy
column, switch choice and flow pane (:mod:`wasmkit.notebook.envoy_pages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from wasmkit.notebook import _static, envoy_pages, flow_detail, resources, tables
from wasmkit.notebook.tables import e
from wasmkit.replay.results import FlowResult, ReplayResult

STATIC = Path(__file__).parent / "static"
TABS = ("Flows", "Summary", "Resources", "Logs", "Metrics", "Callouts")
"""Titles of the explorer's tabs."""
FLOW_TABS = (
    "Request headers", "Response headers", "Body", "Logs", "Trace", "Error", "curl",
)  # fmt: skip
"""Titles of the selected flow's panes."""
SHOW = ("All", "Modified", "Errors", "Local reply")
"""The flow table's switch."""
MAX_ROWS = 100
"""Rows of the Summary and Logs tabs at most (the rest is counted: the flow
table lists every flow, and `result.summary()` has every row)."""
WINDOW = 120
"""Rows sent to the front end at a time (it shows about 15)."""
COLUMNS = (
    ("index", "#"), ("method", "method"), ("host", "host"), ("path", "path"),
    ("status", "status"), ("action", "action"), ("request", "request"),
    ("response", "response"), ("body", "body"), ("us", "µs"), ("error", "error"),
)  # fmt: skip
"""The flow table's columns: key and title."""


def modified(row: dict[str, Any]) -> bool:
    """Whether the filter changed the flow (a summary row).

    The row's ``modified``: :func:`wasmkit.replay.results.modified`, the
    definition every count uses.
    """
    return bool(row["modified"])


def _errored(row: dict[str, Any]) -> bool:
    return row["action"] in ("failed", "reset", "stalled")


def _tag(row: dict[str, Any]) -> str:
    if row["action"] != "forwarded":
        return str(row["action"])
    return "modified" if modified(row) else "unchanged"


def flow_label(row: dict[str, Any], captured: int | None = None) -> str:
    """A flow in words: ``#3  POST host/login  200→403  local reply``.

    ``captured`` is the recorded status, shown when the upstream was not asked.
    """
    before = row["status_before"] if row["status_before"] is not None else captured
    after = row["status_after"]
    return (
        f"#{row['index']}  {row['method']} {row['host']}{row['path']}  "
        f"{'-' if before is None else before}→{'-' if after is None else after}  "
        f"{_tag(row)}"
    )


def short_name(name: str) -> str:
    """A filter's name on one line (inline WAT or wasm is named by its source)."""
    first = name.strip().splitlines()[0] if name.strip() else name
    if len(first) > 80 or first != name.strip():
        return first[:60] + " …"
    return first


def _captured_status(flow: FlowResult) -> int | None:
    response = getattr(flow.exchange, "response", None)
    status = getattr(response, "status", None)
    return status if isinstance(status, int) else None


def _marks(row: dict[str, Any], side: str) -> str:
    return " ".join(
        f"{mark}{row[f'{side}_{kind}']}"
        for kind, mark in (("added", "+"), ("removed", "-"), ("changed", "~"))
        if row[f"{side}_{kind}"]
    )


def _sort_key(key: str) -> Any:
    def status(row: dict[str, Any]) -> tuple[int, int]:
        after, before = row["status_after"], row["status_before"]
        return (-1 if after is None else after, -1 if before is None else before)

    def changes(side: str) -> Any:
        return lambda row: sum(
            row[f"{side}_{k}"] for k in ("added", "removed", "changed")
        )

    special = {
        "status": status,
        "request": changes("request"),
        "response": changes("response"),
        "body": lambda row: row["body_changed"],
        "error": lambda row: row["error"] or "",
        "tag": _tag,
    }
    if key in special:
        return special[key]
    return lambda row: row[key]


class ReplayExplorer(anywidget.AnyWidget):
    """Browse a replay: a flow table with diffs, resources, summary, logs, metrics.

    Set the traits from Python as the front end does (``explorer.selected =
    3``, ``explorer.filter_text = "~m POST"``, ``explorer.sort_by = "us"``);
    :meth:`move` is what ↑/↓ and j/k do.

    Args:
        result: the replay to show.
        envoy: a comparison of ``result`` with Envoy
            (:class:`~wasmkit.envoy.differ.EnvoyComparison`); default: the one
            ``result.against_envoy()`` kept, if any.
    """

    _esm = _static.esm("explorer.js")
    _css = STATIC / "explorer.css"

    status = t.Unicode("", help="The status line (HTML).").tag(sync=True)
    tabs = t.List(t.Unicode(), help="The tab titles.").tag(sync=True)
    tab = t.Unicode("Flows", help="The tab on show.").tag(sync=True)
    pages = t.Dict(help="HTML of the static tabs, by title.").tag(sync=True)
    columns = t.List(t.Dict(), help="The flow table's columns.").tag(sync=True)
    count = t.Int(0, help="Rows the filter and switch let through.").tag(sync=True)
    total = t.Int(0, help="Flows in the replay shown.").tag(sync=True)
    window_start = t.Int(0, help="First row position of window.").tag(sync=True)
    window = t.List(t.Dict(), help="The rows from window_start on.").tag(sync=True)
    sort_by = t.Unicode("index", help="The column the rows are sorted by.").tag(
        sync=True
    )
    sort_desc = t.Bool(False, help="Sorted in descending order.").tag(sync=True)
    filter_text = t.Unicode("", help="A mitmproxy filter expression.").tag(sync=True)
    filter_message = t.Unicode("", help="What the expression matched.").tag(sync=True)
    filter_invalid = t.Bool(False, help="The expression does not parse.").tag(sync=True)
    show_options = t.List(t.Unicode(), help="The switch's choices.").tag(sync=True)
    show = t.Unicode("All", help="The switch: which flows the table lists.").tag(
        sync=True
    )
    selected = t.Int(-1, help="Capture index of the selected flow; -1: none.").tag(
        sync=True
    )
    position = t.Int(-1, help="Row of the selected flow; -1: not listed.").tag(
        sync=True
    )
    flow_tabs = t.List(t.Unicode(), help="The flow panes' titles.").tag(sync=True)
    flow_tab = t.Unicode("Response headers", help="The flow pane on show.").tag(
        sync=True
    )
    unchanged = t.Bool(False, help="Header diffs list unchanged fields.").tag(sync=True)
    detail = t.Dict(help="The selected flow's panes.").tag(sync=True)
    resources = t.Dict(help="The Resources tab's series.").tag(sync=True)

    def __init__(self, result: ReplayResult, envoy: Any = None, **kwargs: Any) -> None:
        self.result = result
        self.envoy = envoy if envoy is not None else result.envoy_comparison
        self.rows = result.summary_rows
        self.flows: dict[int, tuple[FlowResult, dict[str, Any]]] = {
            f.index: (f, row) for f, row in zip(result.flows, self.rows, strict=True)
        }
        self._labels = {
            f.index: flow_label(row, _captured_status(f))
            for f, row in self.flows.values()
        }
        self._envoy_words: dict[int, str] = {}
        if self.envoy is not None:
            for index in self._labels:
                word = envoy_pages.word(self.envoy.flow(index))
                self._envoy_words[index] = word
                self._labels[index] += f"  envoy: {word}"
        self._matches: set[int] | None = None  # the last valid expression's
        self._mitm_flows: dict[int, tuple[Any, Any]] = {}
        self._order: list[int] = []
        self._positions: dict[int, int] = {}
        columns = [{"key": k, "title": title} for k, title in COLUMNS]
        show = list(SHOW)
        flow_tabs = list(FLOW_TABS)
        if self.envoy is not None:
            columns.insert(6, {"key": "envoy", "title": "envoy"})
            show.append(envoy_pages.SHOW)
            flow_tabs.append(envoy_pages.TAB)
        super().__init__(
            status=tables.quiet(self._status()),
            tabs=list(TABS),
            pages={
                "Summary": self._summary_html(),
                "Logs": self._logs_html(),
                "Metrics": self._metrics_html(),
                "Callouts": self._callouts_html(),
            },
            columns=columns,
            total=len(self.rows),
            show_options=show,
            flow_tabs=flow_tabs,
            resources=resources.view(result.resource_rows()),
            **kwargs,
        )
        self.add_class("wasmkit-explorer")
        self.observe(self._refresh, names=["sort_by", "sort_desc", "show"])
        self.observe(self._on_filter, names="filter_text")
        self.observe(self._on_window, names="window_start")
        self.observe(self._on_selected, names="selected")
        self.observe(self._on_unchanged, names="unchanged")
        self.on_msg(self._on_message)
        self._refresh()

    # -- static parts -----------------------------------------------------------

    def _status(self) -> str:
        r = self.result
        totals = r.totals  # the counts every view shows
        total_ms = sum(f.micros for f in r.flows) / 1000
        parts = [
            f"<b>{e(short_name(r.filter))}</b>",
            f"{totals.flows} flows",
            *totals.describe().split(", "),
            f"{total_ms:,.1f} ms in the filter",
        ]
        if self.envoy is not None:
            parts.append(envoy_pages.status(self.envoy))
        if r.skipped:
            parts.append(
                "skipped " + ", ".join(f"{n} {k}" for k, n in sorted(r.skipped.items()))
            )
        text = " · ".join(parts) + f" &nbsp; {tables.LEGEND}"
        if r.capture_error:
            text += (
                '<br><span class="wasmkit-error-text">capture error: '
                f"{e(r.capture_error)}</span>"
            )
        return text

    def _summary_html(self) -> str:
        rows = self.rows[:MAX_ROWS]
        if not rows:
            return "<p>No flows were replayed.</p>"
        classes = []
        for row in rows:
            if row["action"] == "failed":
                classes.append("wk-failed")
            elif row["local_reply"] is not None:
                classes.append("wk-local-reply")
            else:
                classes.append("wk-modified" if modified(row) else "wk-unchanged")
        extra = {}
        if self.envoy is not None:
            extra["envoy"] = [self._envoy_words[r["index"]] for r in rows]
        html = tables.summary_html(rows, row_classes=classes, extra=extra)
        return html + self._more(len(self.rows))

    @staticmethod
    def _more(total: int) -> str:
        if total <= MAX_ROWS:
            return ""
        return f"<p>First {MAX_ROWS:,} of {total:,} rows.</p>"

    def _logs_html(self) -> str:
        records: list[dict[str, Any]] = [
            {
                "flow": f.index,
                "level": log.level.label,
                "source": log.source,
                "message": log.message,
            }
            for f in self.result.flows
            for log in f.result.logs
        ]
        shown = records[:MAX_ROWS]
        return tables.records_table(
            shown,
            table_class="wasmkit-logs",
            row_classes=[tables.log_class(r["level"]) for r in shown],
            empty="The filter logged nothing.",
        ) + self._more(len(records))

    def _metrics_html(self) -> str:
        return tables.records_table(
            self.result.metrics,
            table_class="wasmkit-metrics",
            empty="The filter defined no metrics.",
        )

    def _callouts_html(self) -> str:
        return tables.records_table(
            [c.to_json() for c in self.result.callouts],
            table_class="wasmkit-callouts",
            empty="The filter made no HTTP callouts.",
        )

    # -- the flow table -----------------------------------------------------------

    def row_json(self, row: dict[str, Any]) -> dict[str, Any]:
        """One row of the flow table as the front end draws it."""
        index = row["index"]
        flow, _ = self.flows[index]
        before = row["status_before"]
        if before is None:
            before = _captured_status(flow)
        after = row["status_after"]
        out = {
            "index": index,
            "method": row["method"],
            "host": row["host"],
            "path": row["path"],
            "status": f"{'-' if before is None else before} → "
            f"{'-' if after is None else after}",
            "action": row["action"],
            "request": _marks(row, "request"),
            "response": _marks(row, "response"),
            "body": "changed" if row["body_changed"] else "",
            "us": row["us"],
            "error": row["error"] or "",
            "tag": _tag(row).replace(" ", "-"),
            "label": self._labels[index],
        }
        if self.envoy is not None:
            out["envoy"] = self._envoy_words[index]
        return out

    def _mitm_flow(self, flow: FlowResult) -> tuple[Any, Any]:
        from wasmkit.traffic import mitm

        cached = self._mitm_flows.get(flow.index)
        if cached is None:
            r, ex = flow.result, flow.exchange
            after_resp = r.response_after
            if flow.no_response and r.local_reply is None:
                after_resp = None
            error = str(r.error) if r.error is not None else ex.error
            cached = (
                mitm.to_flow(  # as captured: the recorded response too
                    ex, ex.to_request_message(), ex.to_response_message(), ex.error
                ),
                mitm.to_flow(ex, r.request_after, after_resp, error),
            )
            self._mitm_flows[flow.index] = cached
        return cached

    def _on_filter(self, change: Any = None) -> None:
        from wasmkit.traffic import mitm

        expr = self.filter_text.strip()
        if not expr:
            self._matches = None
            self.filter_message = ""
            self.filter_invalid = False
            self._refresh()
            return
        try:
            match = mitm.compile_filter(expr)
        except ValueError as exc:
            self.filter_invalid = True
            self.filter_message = (
                f"{exc} — the table shows the last valid filter's flows. Syntax: "
                "~m METHOD, ~d DOMAIN, ~c CODE, ~h HEADER, ~u URL, !, &, |"
            )
            return
        matches = set()
        failures = 0
        for index, (flow, _) in self.flows.items():
            try:
                if any(match(item) for item in self._mitm_flow(flow)):
                    matches.add(index)
            except Exception:  # a flow that cannot be converted: not matched
                failures += 1
        self._matches = matches
        note = f" ({failures} flows could not be matched)" if failures else ""
        self.filter_invalid = False
        self.filter_message = f"{len(matches)} flows match{note}"
        self._refresh()

    def _visible(self, row: dict[str, Any]) -> bool:
        if self._matches is not None and row["index"] not in self._matches:
            return False
        mode = self.show
        if mode == "Modified":
            return modified(row)
        if mode == "Errors":
            return _errored(row)
        if mode == "Local reply":
            return row["local_reply"] is not None
        if mode == envoy_pages.SHOW and self.envoy is not None:
            exchange = self.envoy.flow(row["index"])
            return exchange is not None and not exchange.agrees
        return True

    @property
    def order(self) -> list[int]:
        """Capture indexes of the listed flows, in the table's order."""
        return list(self._order)

    def _refresh(self, change: Any = None) -> None:
        key = _sort_key(self.sort_by if self.sort_by else "index")
        listed = [r for r in self.rows if self._visible(r)]
        listed.sort(key=lambda r: r["index"])
        try:
            listed.sort(key=key, reverse=self.sort_desc)
        except (KeyError, TypeError):  # an unknown column or None among values
            listed.sort(key=lambda r: (key(r) is None, str(key(r))))
        self._order = [r["index"] for r in listed]
        self._positions = {index: i for i, index in enumerate(self._order)}
        with self.hold_sync():
            self.count = len(self._order)
            first = self._order[0] if self._order else -1
            if self.selected not in self._positions and self.selected != first:
                self.selected = first  # placed and drawn by _on_selected
            else:
                self._place()
            self._send_window()

    def _place(self) -> None:
        # The selected flow's row, and a window that holds it.
        position = self._positions.get(self.selected, -1)
        self.position = position
        start = self.window_start
        if position >= 0 and not start <= position < start + WINDOW - 5:
            self.window_start = max(0, position - 20)
        if position < 0 and self.window_start >= max(1, self.count):
            self.window_start = 0
        self._render()

    def _on_window(self, change: Any) -> None:
        self._send_window()

    def _send_window(self) -> None:
        start = max(0, min(self.window_start, max(0, self.count - 1)))
        rows = [
            self.row_json(self.flows[index][1])
            for index in self._order[start : start + WINDOW]
        ]
        self.window = [{**row, "position": start + i} for i, row in enumerate(rows)]

    def move(self, delta: int = 0, to: int | None = None) -> None:
        """Select the flow ``delta`` rows down (up if negative), or at row ``to``.

        ``to=-1`` is the last row. What ↑/↓, j/k, Page Up/Down, Home and End do.
        """
        if not self._order:
            return
        if to is not None:
            target = to if to >= 0 else len(self._order) + to
        else:
            target = max(self.position, 0) + delta
        target = max(0, min(len(self._order) - 1, target))
        self.selected = self._order[target]

    def _on_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "move":
            delta, to = content.get("delta", 0), content.get("to")
            self.move(int(delta), None if to is None else int(to))

    def _on_selected(self, change: Any) -> None:
        with self.hold_sync():
            self._place()

    def _on_unchanged(self, change: Any) -> None:
        self._render()

    # -- the selected flow --------------------------------------------------------

    def _render(self) -> None:
        index = self.selected
        if index not in self.flows:
            self.detail = {"index": -1, "title": "No flow matches.", "panes": {}}
            return
        flow, _ = self.flows[index]
        detail = flow_detail.detail(flow, self._labels[index], unchanged=self.unchanged)
        if self.envoy is not None:
            detail["panes"][envoy_pages.TAB] = envoy_pages.flow_page(self.envoy, index)
        self.detail = detail
