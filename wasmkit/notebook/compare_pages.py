"""The selected flow of the compare view: both sides side by side, as JSON.

Python decides what each pane shows, the front end (``static/compare.js``)
draws it. The Overview, header and log panes are Styler HTML tables (the
columns named by the comparison's names, rows where the sides differ tinted);
the bodies and failures are data the front end lays out with the explorer's
body views and backtrace list (their text set as text, never parsed as HTML).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from wasmkit.diff.compare import BodyChange
from wasmkit.host.message import HttpMessage
from wasmkit.notebook import flow_detail, tables
from wasmkit.notebook.tables import e
from wasmkit.replay.compare import FlowComparison
from wasmkit.replay.results import FlowResult

PANES = (
    "Overview", "Request headers", "Response headers", "Bodies", "Logs", "Error",
)  # fmt: skip
"""Titles of the selected flow's panes."""
FIELD_PANES = {
    "missing": "Overview",
    "status": "Overview",
    "action": "Overview",
    "local reply": "Overview",
    "request headers": "Request headers",
    "response headers": "Response headers",
    "request body": "Bodies",
    "response body": "Bodies",
    "error": "Error",
}
"""The pane that shows each field of :data:`wasmkit.replay.compare.FIELDS`."""


def host(flow: FlowComparison) -> str:
    """The request's authority."""
    either = flow.a or flow.b
    assert either is not None
    raw = either.result.request_before.get(b":authority") or b""
    return raw.decode("utf-8", "replace")


def shown(value: int | None) -> str:
    """A status, ``-`` for none."""
    return "-" if value is None else str(value)


def flow_label(
    flow: FlowComparison, names: tuple[str, str] = ("a", "b"), *, fields: bool = True
) -> str:
    """A flow in words, the sides by their names.

    ``#3  POST host/login  old 200 forwarded | new 403 local reply  differs:
    status, action, local reply`` (without the ``differs:`` part if not
    ``fields``).
    """
    text = (
        f"#{flow.index}  {flow.method} {host(flow)}{flow.path}  "
        f"{names[0]} {shown(flow.status_a)} {flow.action_a} | "
        f"{names[1]} {shown(flow.status_b)} {flow.action_b}"
    )
    differs = flow.fields if fields else []
    return text + (f"  differs: {', '.join(differs)}" if differs else "")


def _reply(flow: FlowResult | None) -> str:
    reply = flow.result.local_reply if flow is not None else None
    if reply is None:
        return "none"
    return f"{reply.status}" + (f" ({reply.details})" if reply.details else "")


def _error(flow: FlowResult | None) -> str:
    error = flow.result.error if flow is not None else None
    return "none" if error is None else f"{error.kind} in {error.callback}: {error}"


def _fields(message: HttpMessage | None) -> str:
    if message is None:
        return "none"
    n = len(message.headers)
    return f"{n} field" if n == 1 else f"{n} fields"


def _body(message: HttpMessage | None, change: BodyChange | None) -> str:
    if message is None:
        return "none"
    kind = f" ({change.kind})" if change is not None else ""
    return f"{len(message.body or b''):,} bytes{kind}"


def _log_pairs(flow: FlowResult | None) -> list[tuple[str, str]]:
    if flow is None:
        return []
    return [(log.level.label, log.message) for log in flow.result.logs]


def logs_differ(flow: FlowComparison) -> bool:
    """The two sides logged different records (levels and messages)."""
    return _log_pairs(flow.a) != _log_pairs(flow.b)


def overview(flow: FlowComparison, names: tuple[str, str]) -> str:
    """Status, action, local reply, failure, headers, bodies and logs per side."""
    a, b = flow.a, flow.b
    fields = set(flow.fields)

    def req(x: FlowResult | None) -> HttpMessage | None:
        return x.result.request_after if x is not None else None

    def resp(x: FlowResult | None) -> HttpMessage | None:
        return x.result.response_after if x is not None else None

    rows = [
        ("status", shown(flow.status_a), shown(flow.status_b), "status"),
        ("action", flow.action_a, flow.action_b, "action"),
        ("local reply", _reply(a), _reply(b), "local reply"),
        ("failure", _error(a), _error(b), "error"),
        ("request headers", _fields(req(a)), _fields(req(b)), "request headers"),
        ("response headers", _fields(resp(a)), _fields(resp(b)), "response headers"),
        (
            "request body",
            _body(req(a), flow.request_body),
            _body(req(b), flow.request_body),
            "request body",
        ),
        (
            "response body",
            _body(resp(a), flow.response_body),
            _body(resp(b), flow.response_body),
            "response body",
        ),
        (
            "logs",
            f"{len(_log_pairs(a))} records",
            f"{len(_log_pairs(b))} records",
            "logs",
        ),
    ]
    differing = fields | ({"logs"} if logs_differ(flow) else set())
    frame = pd.DataFrame([r[:3] for r in rows], columns=["", *names])
    return tables.styled(
        frame,
        table_class="wasmkit-compare-side",
        flow=flow.index,
        row_classes=[
            "wk-changed" if field in differing else "wk-unchanged" for *_, field in rows
        ],
    )


def headers(flow: FlowComparison, names: tuple[str, str], side: str) -> str:
    """The header diff a → b of the upstream request or the client's response.

    ``added``: only under b; ``removed``: only under a.
    """

    def message(x: FlowResult | None) -> HttpMessage | None:
        if x is None:
            return None
        r = x.result
        return r.request_after if side == "request" else r.response_after

    ma, mb = message(flow.a), message(flow.b)
    table, rows, hidden = tables.header_table(
        flow.index,
        ma.headers if ma is not None else None,
        mb.headers if mb is not None else None,
        labels=names,
    )
    what = "request upstream" if side == "request" else "response to the client"
    notes = []
    for name, m in zip(names, (ma, mb), strict=True):
        if m is None:
            notes.append(f"{name}: no {what}")
    if not rows:
        notes.append(f"The same under {names[0]} and {names[1]}.")
    if hidden:
        notes.append(f"{hidden} fields the same on both sides (not listed)")
    head = f"<p><b>{e(what)} headers</b></p>"
    return tables.quiet(head + table + "".join(f"<p>{e(n)}</p>" for n in notes))


def logs(flow: FlowComparison, names: tuple[str, str]) -> str:
    """Each side's log records side by side; records only one side has tinted."""
    pairs = (_log_pairs(flow.a), _log_pairs(flow.b))
    counts = (Counter(pairs[0]), Counter(pairs[1]))
    parts = []
    for i, (name, records) in enumerate(zip(names, pairs, strict=True)):
        other = counts[1 - i]
        seen: Counter[tuple[str, str]] = Counter()
        classes = []
        for record in records:
            seen[record] += 1
            if seen[record] > other[record]:
                classes.append("wk-removed" if i == 0 else "wk-added")
            else:
                classes.append(tables.log_class(record[0]))
        table = tables.records_table(
            [{"level": level, "message": message} for level, message in records],
            table_class="wasmkit-logs",
            flow=flow.index,
            row_classes=classes,
            empty=f"{name} logged nothing for this flow.",
        )
        parts.append(
            '<div class="wk-side">'
            f'<div class="wk-side-title">{e(name)} · {len(records)} records</div>'
            f"{table}</div>"
        )
    return tables.quiet(f'<div class="wk-sides">{"".join(parts)}</div>')


def _view(message: HttpMessage | None) -> dict[str, Any] | None:
    if message is None:
        return None
    body = message.body or b""
    text = body[: flow_detail.TEXT_LIMIT].decode("utf-8", "replace")
    if len(body) > flow_detail.TEXT_LIMIT:
        text += f"\n… first {flow_detail.TEXT_LIMIT:,} of {len(body):,} bytes"
    return {
        "bytes": len(body),
        "text": text,
        "json": flow_detail.pretty_json(body),
        "hex": flow_detail.hexdump(body),
    }


def bodies(flow: FlowComparison) -> list[dict[str, Any]]:
    """Per side (request upstream, response to the client): the body a → b.

    The change, its diff and the text / JSON / hex views of both sides, as
    the explorer's body pane draws them (``before`` is a, ``after`` is b).
    """
    out = []
    for side, change in (
        ("request", flow.request_body),
        ("response", flow.response_body),
    ):
        if change is None:
            continue

        def message(x: FlowResult | None, side: str = side) -> HttpMessage | None:
            if x is None:
                return None
            r = x.result
            return r.request_after if side == "request" else r.response_after

        out.append(
            {
                "side": side,
                "kind": change.kind,
                "changed": change.changed,
                "diff": change.diff,
                "before": _view(message(flow.a)),
                "after": _view(message(flow.b)),
            }
        )
    return out


def marked(flow: FlowComparison) -> list[str]:
    """The panes that show a field where the sides differ."""
    panes = {FIELD_PANES[f] for f in flow.fields}
    if logs_differ(flow):
        panes.add("Logs")
    return [p for p in PANES if p in panes]


def detail(flow: FlowComparison, names: tuple[str, str]) -> dict[str, Any]:
    """Everything the compare view's flow panes show for ``flow``."""
    return {
        "index": flow.index,
        "title": flow_label(flow, names, fields=False),  # the fields: badges
        "fields": flow.fields,
        "names": list(names),
        "marked": marked(flow),
        "panes": {
            "Overview": overview(flow, names),
            "Request headers": headers(flow, names, "request"),
            "Response headers": headers(flow, names, "response"),
            "Logs": logs(flow, names),
        },
        "bodies": bodies(flow),
        "errors": [
            flow_detail.failure(x) if x is not None else None for x in (flow.a, flow.b)
        ],
    }
