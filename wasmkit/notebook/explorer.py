"""The replay explorer: a :class:`~wasmkit.replay.results.ReplayResult` as widgets.

A status line, then tabs ``Summary | Flows | Logs | Metrics | Callouts``. The
Flows tab filters the flow list with a mitmproxy filter expression and an
All / Modified / Errors / Local reply toggle, and shows the selected flow in
tabs ``Request headers | Response headers | Body | Logs | Trace``, built when
the flow is selected. The CSS classes (``wasmkit-explorer``, ``wasmkit-status``,
``wasmkit-tabs``, ``wasmkit-filter``, ``wasmkit-show``, ``wasmkit-unchanged``,
``wasmkit-flowlist``, ``wasmkit-flow-tabs``) are a contract with the browser
test; keep them. With a comparison with Envoy (``envoy=``, or after
``result.against_envoy()``) the explorer adds an Envoy column, toggle choice
and flow tab (:mod:`wasmkit.notebook.envoy_pages`).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from wasmkit.notebook import envoy_pages, flow_pages, tables
from wasmkit.notebook.tables import e
from wasmkit.replay.results import FlowResult, ReplayResult

TABS = ("Summary", "Flows", "Logs", "Metrics", "Callouts")
"""Titles of the explorer's tabs."""
FLOW_TABS = ("Request headers", "Response headers", "Body", "Logs", "Trace")
"""Titles of the selected flow's tabs."""
SHOW = ("All", "Modified", "Errors", "Local reply")
"""The flow list's toggle."""
MAX_ROWS = 1000
"""Rows of the Summary and Logs tables at most (the rest is counted)."""


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
    """The flow list's label: ``#3  POST host/login  200→403  local reply``.

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


def _html(css_class: str | None = None) -> widgets.HTML:
    widget = widgets.HTML()
    if css_class:
        widget.add_class(css_class)
    return widget


class ReplayExplorer(widgets.VBox):  # type: ignore[misc]
    """Widgets to browse a replay: summary, flows with their diffs, logs, metrics.

    Args:
        result: the replay to show.
        envoy: a comparison of ``result`` with Envoy
            (:class:`~wasmkit.envoy.differ.EnvoyComparison`); default: the one
            ``result.against_envoy()`` kept, if any.
    """

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
        if self.envoy is not None:
            for index in self._labels:
                word = envoy_pages.word(self.envoy.flow(index))
                self._labels[index] += f"  envoy: {word}"
        self.status = _html("wasmkit-status")
        self.status.value = tables.quiet(self._status())
        self.filter = widgets.Text(
            placeholder="mitmproxy filter, e.g. ~m POST & ~c 404 (before or after)",
            description="filter",
            continuous_update=True,
            layout=widgets.Layout(width="50%"),
        )
        self.filter.add_class("wasmkit-filter")
        self.filter_message = _html("wasmkit-filter-message")
        choices = list(SHOW)
        if self.envoy is not None:
            choices.append(envoy_pages.SHOW)
        self.show_mode = widgets.ToggleButtons(
            options=choices, style={"button_width": "auto"}, value="All"
        )
        self.show_mode.add_class("wasmkit-show")
        self.flowlist = widgets.Select(
            options=[], rows=10, layout=widgets.Layout(width="100%")
        )
        self.flowlist.add_class("wasmkit-flowlist")
        self.unchanged = widgets.Checkbox(
            value=False, description="show unchanged", indent=False
        )
        self.unchanged.add_class("wasmkit-unchanged")
        self.flow_title = _html("wasmkit-flow-title")
        titles = list(FLOW_TABS)
        if self.envoy is not None:
            titles.append(envoy_pages.TAB)
        self.flow_pages = [_html(f"wasmkit-flow-{i}") for i in range(len(titles))]
        self.flow_tabs = widgets.Tab(children=self.flow_pages, titles=titles)
        self.flow_tabs.add_class("wasmkit-flow-tabs")
        flows_page = widgets.VBox(
            [
                widgets.HBox([self.filter, self.show_mode]),
                self.filter_message,
                self.flowlist,
                self.flow_title,
                self.unchanged,
                self.flow_tabs,
            ]
        )
        self.tabs = widgets.Tab(
            children=[
                widgets.HTML(self._summary_html()),
                flows_page,
                widgets.HTML(self._logs_html()),
                widgets.HTML(self._metrics_html()),
                widgets.HTML(self._callouts_html()),
            ],
            titles=list(TABS),
        )
        self.tabs.add_class("wasmkit-tabs")
        super().__init__([self.status, self.tabs], **kwargs)
        self.add_class("wasmkit-explorer")
        self._matches: set[int] | None = None  # the last valid expression's
        self._mitm_flows: dict[int, tuple[Any, Any]] = {}
        self._quiet = False
        self._rendered: int | None = -1  # the flow the pages show
        self.filter.observe(self._on_filter, names="value")
        self.show_mode.observe(self._refresh_list, names="value")
        self.flowlist.observe(self._on_select, names="value")
        self.unchanged.observe(self._on_unchanged, names="value")
        self._refresh_list()

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
            text += f'<br><span style="color:#a11">capture error: {e(r.capture_error)}'
            text += "</span>"
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
            words = [envoy_pages.word(self.envoy.flow(r["index"])) for r in rows]
            extra["envoy"] = words
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

    # -- the flow list ----------------------------------------------------------

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

    def _on_filter(self, change: dict[str, Any]) -> None:
        from wasmkit.traffic import mitm

        expr = str(change["new"]).strip()
        if not expr:
            self._matches = None
            self.filter_message.value = ""
            self._refresh_list()
            return
        try:
            match = mitm.compile_filter(expr)
        except ValueError as exc:
            self.filter_message.value = (
                f'<span style="color:#a11">{e(exc)} — the list shows the last valid '
                "filter's flows. Syntax: ~m METHOD, ~d DOMAIN, ~c CODE, ~h HEADER, "
                "~u URL, !, &amp;, |</span>"
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
        self.filter_message.value = f"{len(matches)} flows match{note}"
        self._refresh_list()

    def _visible(self, row: dict[str, Any]) -> bool:
        if self._matches is not None and row["index"] not in self._matches:
            return False
        mode = self.show_mode.value
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

    def _refresh_list(self, change: Any = None) -> None:
        current = self.flowlist.value
        options = [
            (self._labels[r["index"]], r["index"])
            for r in self.rows
            if self._visible(r)
        ]
        values = [v for _, v in options]
        self._quiet = True  # one render below, not one per trait change
        try:
            self.flowlist.options = options
            if current in values:
                self.flowlist.value = current
            elif values:
                self.flowlist.value = values[0]
        finally:
            self._quiet = False
        if self.flowlist.value != self._rendered or not values:
            self._render(self.flowlist.value)

    def _on_select(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self._render(change["new"])

    def _on_unchanged(self, change: dict[str, Any]) -> None:
        self._render(self.flowlist.value)

    # -- the selected flow --------------------------------------------------------

    def _render(self, index: int | None) -> None:
        self._rendered = index
        if index is None or index not in self.flows:
            self.flow_title.value = "<p>No flow matches.</p>"
            for page in self.flow_pages:
                page.value = ""
            return
        flow, _ = self.flows[index]
        title = f"<b>{e(self._labels[index])}</b>" + "".join(
            f"<br>{e(line)}" for line in flow_pages.notes(flow)
        )
        self.flow_title.value = tables.quiet(title)
        request, response = flow_pages.headers(
            flow, unchanged=bool(self.unchanged.value)
        )
        self.flow_pages[0].value = request
        self.flow_pages[1].value = response
        self.flow_pages[2].value = flow_pages.body(flow)
        self.flow_pages[3].value = flow_pages.logs(flow)
        self.flow_pages[4].value = flow_pages.trace(flow)
        if self.envoy is not None:
            self.flow_pages[5].value = envoy_pages.flow_page(self.envoy, index)
