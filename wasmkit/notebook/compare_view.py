"""The compare view: a :class:`~wasmkit.replay.compare.Comparison` as an anywidget.

One widget in the explorer's style, drawn by ``static/compare.js`` after the
explorer's shared ``static/flowtable.js``, with ``explorer.css`` and
``compare.css``: a status line (both sides by the user's names, how many
flows differ), the mitmproxy filter box and the All / Differing switch, a
virtualized flow table (index, method, host, path, status a → b, what each
side did, which fields differ; failed flows marked; sortable; ↑/↓ j/k Home
End and ``/`` that never reach the notebook) and the selected flow's panes
(``Overview | Request headers | Response headers | Bodies | Logs | Error``),
side by side, the panes where the sides differ marked and the differing rows
tinted (:mod:`wasmkit.notebook.compare_pages`). Like the explorer it is sent
only the rows it shows (:attr:`CompareView.window`) and the selected flow's
:attr:`~CompareView.detail`. Saved notebooks and static exports show the
comparison's ``_repr_html_``.

The CSS classes (``wasmkit-compare``, ``wasmkit-status``, ``wasmkit-filter``,
``wasmkit-show``, ``wasmkit-flowtable``, ``wasmkit-flow-tabs``,
``wasmkit-flow-pane``) are a contract with the browser test; keep them.
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets as t

from wasmkit.notebook import _static, compare_pages, tables
from wasmkit.notebook.compare_pages import flow_label, shown
from wasmkit.notebook.explorer import short_name
from wasmkit.notebook.tables import e
from wasmkit.replay.compare import Comparison, FlowComparison
from wasmkit.replay.results import FlowResult

__all__ = ["SHOW", "CompareView", "flow_label"]

SHOW = ("All", "Differing")
"""The flow table's switch."""
WINDOW = 120
"""Rows sent to the front end at a time (it shows about 15)."""


def _columns(names: tuple[str, str]) -> list[dict[str, str]]:
    return [
        {"key": "index", "title": "#"},
        {"key": "method", "title": "method"},
        {"key": "host", "title": "host"},
        {"key": "path", "title": "path"},
        {"key": "status", "title": f"status {names[0]} → {names[1]}"},
        {"key": "a", "title": names[0]},
        {"key": "b", "title": names[1]},
        {"key": "fields", "title": "differs in"},
    ]


def _failed(flow: FlowComparison) -> bool:
    return "failed" in (flow.action_a, flow.action_b)


def _tag(flow: FlowComparison) -> str:
    if _failed(flow):
        return "failed"
    return "differs" if flow.differs else "same"


def _sort_key(key: str) -> Any:
    def status(flow: FlowComparison) -> tuple[int, int]:
        a, b = flow.status_a, flow.status_b
        return (-1 if a is None else a, -1 if b is None else b)

    keys: dict[str, Any] = {
        "index": lambda f: f.index,
        "method": lambda f: f.method,
        "host": compare_pages.host,
        "path": lambda f: f.path,
        "status": status,
        "a": lambda f: f.action_a,
        "b": lambda f: f.action_b,
        "fields": lambda f: (len(f.fields), ", ".join(f.fields)),
    }
    return keys.get(key, keys["index"])


class CompareView(anywidget.AnyWidget):
    """Browse where two replays of one capture differ, flow by flow.

    Set the traits from Python as the front end does (``view.selected = 3``,
    ``view.show = "All"``, ``view.filter_text = "~m POST"``); :meth:`move`
    is what ↑/↓ and j/k do.

    Args:
        comparison: the result of :func:`wasmkit.compare`.
    """

    _esm = _static.esm("compare.js")
    _css = _static.css("explorer.css", "compare.css")

    status = t.Unicode("", help="The status line (HTML).").tag(sync=True)
    names = t.List(t.Unicode(), help="The sides' names, a then b.").tag(sync=True)
    columns = t.List(t.Dict(), help="The flow table's columns.").tag(sync=True)
    count = t.Int(0, help="Rows the filter and switch let through.").tag(sync=True)
    total = t.Int(0, help="Flows in the comparison.").tag(sync=True)
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
    show = t.Unicode("Differing", help="The switch: which flows the table lists.").tag(
        sync=True
    )
    selected = t.Int(-1, help="Capture index of the selected flow; -1: none.").tag(
        sync=True
    )
    position = t.Int(-1, help="Row of the selected flow; -1: not listed.").tag(
        sync=True
    )
    flow_tabs = t.List(t.Unicode(), help="The flow panes' titles.").tag(sync=True)
    flow_tab = t.Unicode("Overview", help="The flow pane on show.").tag(sync=True)
    detail = t.Dict(help="The selected flow's panes.").tag(sync=True)

    def __init__(self, comparison: Comparison, **kwargs: Any) -> None:
        self.comparison = comparison
        self.flows = {f.index: f for f in comparison.flows}
        self._labels = {
            f.index: flow_label(f, comparison.names) for f in comparison.flows
        }
        self._matches: set[int] | None = None  # the last valid expression's
        self._mitm: dict[int, list[Any]] = {}  # converted once, matched many times
        self._order: list[int] = []
        self._positions: dict[int, int] = {}
        super().__init__(
            status=tables.quiet(self._status()),
            names=list(comparison.names),
            columns=_columns(comparison.names),
            total=len(comparison.flows),
            show_options=list(SHOW),
            flow_tabs=list(compare_pages.PANES),
            **kwargs,
        )
        self.add_class("wasmkit-compare")
        self.observe(self._refresh, names=["sort_by", "sort_desc", "show"])
        self.observe(self._on_filter, names="filter_text")
        self.observe(self._on_window, names="window_start")
        self.observe(self._on_selected, names="selected")
        self.on_msg(self._on_message)
        self._refresh()

    def _status(self) -> str:
        c = self.comparison
        a, b = c.names
        failed = sum(1 for f in c.flows if _failed(f))
        return (
            f"<b>{e(a)}</b> {e(short_name(c.a.filter))} vs <b>{e(b)}</b> "
            f"{e(short_name(c.b.filter))} · {len(c.flows)} flows · "
            f"{len(c.differing)} differing"
            + (f" · {failed} failed on a side" if failed else "")
            + f" &nbsp; {tables.LEGEND} "
            f"(added: only in {e(b)}, removed: only in {e(a)})"
        )

    # -- the flow table -----------------------------------------------------------

    def row_json(self, flow: FlowComparison) -> dict[str, Any]:
        """One row of the flow table as the front end draws it."""
        return {
            "index": flow.index,
            "method": flow.method,
            "host": compare_pages.host(flow),
            "path": flow.path,
            "status": f"{shown(flow.status_a)} → {shown(flow.status_b)}",
            "a": flow.action_a,
            "b": flow.action_b,
            "fields": ", ".join(flow.fields) or "same",
            "tag": _tag(flow),
            "label": self._labels[flow.index],
        }

    @property
    def order(self) -> list[int]:
        """Capture indexes of the listed flows, in the table's order."""
        return list(self._order)

    def _visible(self, flow: FlowComparison) -> bool:
        if self._matches is not None and flow.index not in self._matches:
            return False
        return flow.differs or self.show != "Differing"

    def _refresh(self, change: Any = None) -> None:
        listed = [f for f in self.comparison.flows if self._visible(f)]
        listed.sort(key=lambda f: f.index)
        listed.sort(key=_sort_key(self.sort_by), reverse=self.sort_desc)
        self._order = [f.index for f in listed]
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
            self.row_json(self.flows[index])
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

    # -- the filter box -------------------------------------------------------------

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
        for index, flow in self.flows.items():
            try:
                if index not in self._mitm:
                    self._mitm[index] = _mitm_flows(flow)
                if any(match(item) for item in self._mitm[index]):
                    matches.add(index)
            except Exception:  # a flow that cannot be converted: not matched
                failures += 1
        self._matches = matches
        note = f" ({failures} flows could not be matched)" if failures else ""
        self.filter_invalid = False
        self.filter_message = f"{len(matches)} flows match{note}"
        self._refresh()

    # -- the selected flow --------------------------------------------------------

    def _render(self) -> None:
        index = self.selected
        if index not in self.flows:
            empty = "No flow differs." if self.show == "Differing" else "No flows."
            if self._matches is not None:
                empty = "No flow matches."
            self.detail = {"index": -1, "title": empty, "panes": {}}
            return
        self.detail = compare_pages.detail(self.flows[index], self.comparison.names)


def _mitm_flows(flow: FlowComparison) -> list[Any]:
    # The flow as captured and as it left each side's filter: an expression
    # matches a flow when it matches any of them (~c 403 finds b's denial).
    from wasmkit.traffic import mitm

    out = []
    sides: list[FlowResult] = [x for x in (flow.a, flow.b) if x is not None]
    ex = sides[0].exchange
    out.append(mitm.to_flow(ex, ex.to_request_message(), ex.to_response_message()))
    for side in sides:
        r = side.result
        error = str(r.error) if r.error is not None else ex.error
        out.append(mitm.to_flow(ex, r.request_after, r.response_after, error))
    return out
