"""The compare view: a :class:`~wasmkit.replay.compare.Comparison` as widgets.

A status line (flows, how many differ), an All / Differing toggle, the flow
list and, for the selected flow, the two sides (labelled with the
comparison's names) side by side: status, action, local reply, failure, then
where their headers and bodies differ. CSS classes
(``wasmkit-compare``, ``wasmkit-status``, ``wasmkit-show``,
``wasmkit-flowlist``) are a contract with the browser test; keep them.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import pandas as pd

from wasmkit.notebook import tables
from wasmkit.notebook.explorer import short_name
from wasmkit.notebook.tables import e
from wasmkit.replay.compare import Comparison, FlowComparison
from wasmkit.replay.results import FlowResult

SHOW = ("All", "Differing")
"""The flow list's toggle."""


def _host(flow: FlowComparison) -> str:
    either = flow.a or flow.b
    assert either is not None
    raw = either.result.request_before.get(b":authority") or b""
    return raw.decode("utf-8", "replace")


def _status(value: int | None) -> str:
    return "-" if value is None else str(value)


def flow_label(flow: FlowComparison, names: tuple[str, str] = ("a", "b")) -> str:
    """The list's label of a flow, the sides by their names.

    ``#3  POST host/login  old 200 forwarded | new 403 local reply  differs:
    status, action, local reply``.
    """
    text = (
        f"#{flow.index}  {flow.method} {_host(flow)}{flow.path}  "
        f"{names[0]} {_status(flow.status_a)} {flow.action_a} | "
        f"{names[1]} {_status(flow.status_b)} {flow.action_b}"
    )
    fields = flow.fields
    return text + (f"  differs: {', '.join(fields)}" if fields else "")


def _reply(flow: FlowResult | None) -> str:
    reply = flow.result.local_reply if flow is not None else None
    if reply is None:
        return "none"
    return f"{reply.status}" + (f" ({reply.details})" if reply.details else "")


def _error(flow: FlowResult | None) -> str:
    error = flow.result.error if flow is not None else None
    return "none" if error is None else f"{error.kind} in {error.callback}: {error}"


class CompareView(widgets.VBox):  # type: ignore[misc]
    """Widgets to browse where two replays of one capture differ.

    Args:
        comparison: the result of :func:`wasmkit.compare`.
    """

    def __init__(self, comparison: Comparison, **kwargs: Any) -> None:
        self.comparison = comparison
        self.flows = {f.index: f for f in comparison.flows}
        self.status = widgets.HTML(tables.quiet(self._status()))
        self.status.add_class("wasmkit-status")
        self.show_mode = widgets.ToggleButtons(
            options=list(SHOW), style={"button_width": "auto"}, value="Differing"
        )
        self.show_mode.add_class("wasmkit-show")
        self.flowlist = widgets.Select(
            options=[], rows=10, layout=widgets.Layout(width="100%")
        )
        self.flowlist.add_class("wasmkit-flowlist")
        self.detail = widgets.HTML()
        self.detail.add_class("wasmkit-compare-flow")
        super().__init__(
            [self.status, self.show_mode, self.flowlist, self.detail], **kwargs
        )
        self.add_class("wasmkit-compare")
        self._quiet = False
        self._rendered: int | None = -1
        self.show_mode.observe(self._refresh_list, names="value")
        self.flowlist.observe(self._on_select, names="value")
        self._refresh_list()

    def _status(self) -> str:
        c = self.comparison
        a, b = c.names
        return (
            f"<b>{e(a)}</b> {e(short_name(c.a.filter))} vs <b>{e(b)}</b> "
            f"{e(short_name(c.b.filter))} · {len(c.flows)} flows · "
            f"{len(c.differing)} differing &nbsp; {tables.LEGEND} "
            f"(added: only in {e(b)}, removed: only in {e(a)})"
        )

    def _refresh_list(self, change: Any = None) -> None:
        differing = self.show_mode.value == "Differing"
        options = [
            (flow_label(f, self.comparison.names), f.index)
            for f in self.comparison.flows
            if f.differs or not differing
        ]
        values = [v for _, v in options]
        current = self.flowlist.value
        self._quiet = True
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

    def _render(self, index: int | None) -> None:
        self._rendered = index
        if index is None or index not in self.flows:
            self.detail.value = (
                "<p>No flow differs.</p>"
                if self.show_mode.value == "Differing"
                else "<p>No flows.</p>"
            )
            return
        self.detail.value = tables.quiet(
            render_flow(self.flows[index], self.comparison.names)
        )


def render_flow(flow: FlowComparison, names: tuple[str, str] = ("a", "b")) -> str:
    """One flow under both sides (labelled by ``names``), side by side, as HTML."""
    a, b = flow.a, flow.b
    rows = [
        ("status", _status(flow.status_a), _status(flow.status_b)),
        ("action", flow.action_a, flow.action_b),
        ("local reply", _reply(a), _reply(b)),
        ("failure", _error(a), _error(b)),
    ]
    frame = pd.DataFrame(rows, columns=["", *names])
    parts = [
        f"<p><b>{e(flow_label(flow, names))}</b></p>",
        tables.styled(
            frame,
            table_class="wasmkit-compare-side",
            flow=flow.index,
            row_classes=[
                "wk-changed" if x != y else "wk-unchanged" for _, x, y in rows
            ],
        ),
    ]
    for side, message_a, message_b in (
        (
            "request upstream",
            a.result.request_after if a else None,
            b.result.request_after if b else None,
        ),
        (
            "response to the client",
            a.result.response_after if a else None,
            b.result.response_after if b else None,
        ),
    ):
        table, shown, _ = tables.header_table(
            flow.index,
            message_a.headers if message_a is not None else None,
            message_b.headers if message_b is not None else None,
            labels=names,
        )
        parts.append(f"<p><b>{e(side)} headers</b></p>")
        same = f"<p>The same under {e(names[0])} and {e(names[1])}.</p>"
        parts.append(table if shown else same)
    parts.append("<p><b>bodies</b></p>")
    parts.append(
        tables.body_table(
            flow.index,
            [("request", flow.request_body), ("response", flow.response_body)],
            labels=names,
        )
    )
    return "\n".join(parts)
