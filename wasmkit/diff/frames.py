"""Replay results as pandas DataFrames, with nullable dtypes and a coloured ``.style``.

Every frame here is a :class:`ReplayFrame`: a DataFrame whose columns have
pandas' nullable dtypes (``Int64``, ``Float64``, ``boolean``, ``string``: a
missing value is ``<NA>``, never a float ``NaN``) and whose :attr:`~ReplayFrame.style`
colours the rows by what happened (added, removed, changed; failed, local
reply, modified) with translucent tints of JupyterLab's theme colours
(``--jp-success-color1``, ``--jp-error-color1``, ``--jp-warn-color1``,
``--jp-info-color1``) over the theme's own text colour, so the tables read in
light, dark and high-contrast themes. The Styler's HTML escapes every cell,
shows newlines as line breaks and carries the ``tex2jax_ignore
mathjax_ignore`` classes, so a ``$.id`` in a body diff is never typeset as
LaTeX; a frame shown in a notebook renders through the same Styler.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

    from wasmkit.replay.results import ReplayResult

SUMMARY_COLUMNS = [
    "index", "method", "host", "path", "status_before", "status_after", "action",
    "request_added", "request_removed", "request_changed", "response_added",
    "response_removed", "response_changed", "body_changed", "local_reply", "logs",
    "host_calls", "us", "error", "reason", "modified",
]  # fmt: skip
HEADER_COLUMNS = ["flow", "side", "name", "before", "after", "change"]
BODY_COLUMNS = ["flow", "side", "kind", "size_before", "size_after", "diff"]

NO_MATHJAX = "tex2jax_ignore mathjax_ignore"
"""Classes that keep MathJax (JupyterLab, ipywidgets) from typesetting a table."""

# Row tints: (JupyterLab variable, fallback colour, rgb of the fallback).
_TINTS = {
    "added": ("--jp-success-color1", "#388e3c", "56, 142, 60"),
    "removed": ("--jp-error-color1", "#d32f2f", "211, 47, 47"),
    "changed": ("--jp-warn-color1", "#f57c00", "245, 124, 0"),
    "failed": ("--jp-error-color1", "#d32f2f", "211, 47, 47"),
    "local-reply": ("--jp-info-color1", "#0288d1", "2, 136, 209"),
    "modified": ("--jp-warn-color1", "#f57c00", "245, 124, 0"),
}
_TINT_PERCENT = 22


def tint(kind: str) -> list[tuple[str, str]]:
    """CSS declarations of a row of ``kind`` (``added``, ``failed`` ...).

    A translucent background (an ``rgba`` fallback, then a ``color-mix`` of
    the theme's variable) and the theme's text colour: light text on a dark
    theme's dark tint, dark text on a light theme's light one.
    """
    variable, fallback, rgb = _TINTS[kind]
    share = _TINT_PERCENT / 100
    return [
        ("background-color", f"rgba({rgb}, {share})"),
        (
            "background-color",
            f"color-mix(in srgb, var({variable}, {fallback}) {_TINT_PERCENT}%, "
            "transparent)",
        ),
        ("color", "var(--jp-content-font-color1, inherit)"),
    ]


def css(declarations: Sequence[tuple[str, str]]) -> str:
    """Declarations as an inline ``style`` value."""
    return "; ".join(f"{prop}: {value}" for prop, value in declarations)


TABLE_STYLES: list[dict[str, Any]] = [
    {"selector": "", "props": [("border-collapse", "collapse"), ("margin", "4px 0")]},
    {
        "selector": "th, td",
        "props": [
            ("border", "1px solid var(--jp-border-color2, #ccc)"),
            ("padding", "2px 6px"),
            ("text-align", "left"),
            ("vertical-align", "top"),
            ("font-family", "var(--jp-code-font-family, ui-monospace, monospace)"),
            ("font-size", "12px"),
            ("white-space", "pre-wrap"),
            ("overflow-wrap", "break-word"),
            ("color", "var(--jp-content-font-color1, inherit)"),
        ],
    },
    {
        "selector": "th",
        "props": [
            ("background-color", "var(--jp-layout-color2, #f0f0f0)"),
            ("color", "var(--jp-ui-font-color1, inherit)"),
        ],
    },
    *({"selector": f"td.wk-{kind}", "props": tint(kind)} for kind in _TINTS),
]
"""The Styler's table styles: borders, code font, the row tints by class."""

_DIFF_LINES = (("+++", None), ("---", None), ("@@", None), ("+", "added"),
               ("-", "removed"), ("~", "changed"))  # fmt: skip


def cell_html(value: Any) -> str:
    """A cell: HTML-escaped, newlines as ``<br>``, missing values empty."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return html.escape(str(value)).replace("\n", "<br>")


def diff_html(text: Any) -> str:
    """A unified diff or JSON path list: a line per line, tinted by its kind."""
    if not isinstance(text, str):
        return cell_html(text)
    out = []
    for line in text.split("\n"):
        kind = next((k for p, k in _DIFF_LINES if line.startswith(p)), None)
        if kind is None:
            out.append(html.escape(line))
        else:
            out.append(f'<span style="{css(tint(kind))}">{html.escape(line)}</span>')
    return "<br>".join(out)


def styler(
    frame: pd.DataFrame,
    row_kinds: Sequence[str | None],
    *,
    table_class: str = "wasmkit-frame",
    formatters: dict[str, Callable[[Any], str]] | None = None,
    hide_index: bool = False,
    max_rows: int | None = None,
) -> Styler:
    """``frame`` as a Styler, MathJax kept out.

    Rows are tinted by ``row_kinds`` (a key of the tints, or ``None``); cells
    are escaped, with line breaks; ``formatters`` format some columns instead.
    """
    shown = frame if max_rows is None else frame.iloc[:max_rows]
    # pandas' own Styler: ReplayFrame.style is this function.
    style = pd.DataFrame.style.fget(shown)
    chosen = formatters or {}
    style.format({c: chosen.get(str(c), cell_html) for c in shown.columns})
    style.set_table_attributes(f'class="{table_class} {NO_MATHJAX}"')
    style.set_table_styles(TABLE_STYLES)
    if hide_index:
        style.hide(axis="index")
    kinds = list(row_kinds)[: len(shown)]
    if len(shown.columns) and any(kinds):
        classes = pd.DataFrame(
            [[f"wk-{k}" if k else ""] * len(shown.columns) for k in kinds],
            index=shown.index,
            columns=shown.columns,
        )
        style.set_td_classes(classes)
    return style


def _true(value: Any) -> bool:
    return value is not pd.NA and value is not None and bool(value)


class ReplayFrame(pd.DataFrame):  # type: ignore[misc]  # pandas is untyped here
    """A DataFrame of a replay with a coloured :attr:`style` (see the module).

    Slicing and filtering keep the type (and so the ``style``).
    """

    @property
    def _constructor(self) -> Callable[..., ReplayFrame]:
        return ReplayFrame

    def _formatters(self) -> dict[str, Callable[[Any], str]] | None:
        return {"diff": diff_html} if "diff" in self.columns else None

    def _row_kinds(self) -> list[str | None]:
        if "change" in self.columns:
            return [
                str(c) if c in ("added", "removed", "changed") else None
                for c in self["change"]
            ]
        if "action" in self.columns:
            kinds: list[str | None] = []
            modified = self["modified"] if "modified" in self.columns else None
            for i, action in enumerate(self["action"]):
                if action == "failed":
                    kinds.append("failed")
                elif action == "local reply":
                    kinds.append("local-reply")
                elif modified is not None and _true(modified.iloc[i]):
                    kinds.append("modified")
                else:
                    kinds.append(None)
            return kinds
        if "differs" in self.columns:
            return ["changed" if _true(d) else None for d in self["differs"]]
        if "diff" in self.columns:
            return ["changed"] * len(self)
        return [None] * len(self)

    @property
    def style(self) -> Styler:
        """The rows coloured by kind, cells escaped, newlines as line breaks."""
        formatters = self._formatters()
        return styler(self, self._row_kinds(), formatters=formatters)

    def _repr_html_(self) -> str | None:
        # In a notebook: the Styler (MathJax kept out), as many rows as pandas
        # would show.
        limit = pd.get_option("display.max_rows")
        formatters = self._formatters()
        html_text = styler(
            self, self._row_kinds(), formatters=formatters, max_rows=limit
        ).to_html()
        if limit is not None and len(self) > limit:
            html_text += f"<p>{limit:,} of {len(self):,} rows shown.</p>"
        return str(html_text)


_INT = "Int64"
_STR = "string"


def nullable(frame: pd.DataFrame, dtypes: dict[str, str]) -> ReplayFrame:
    """``frame`` with the given nullable dtypes, as a :class:`ReplayFrame`."""
    return ReplayFrame(frame.astype({c: t for c, t in dtypes.items() if c in frame}))


_SUMMARY_DTYPES = {
    "index": _INT, "method": _STR, "host": _STR, "path": _STR,
    "status_before": _INT, "status_after": _INT, "action": _STR,
    "request_added": _INT, "request_removed": _INT, "request_changed": _INT,
    "response_added": _INT, "response_removed": _INT, "response_changed": _INT,
    "body_changed": "boolean", "local_reply": _INT, "logs": _INT,
    "host_calls": _INT, "us": "Float64", "error": _STR, "reason": _STR,
    "modified": "boolean",
}  # fmt: skip
_HEADER_DTYPES = dict.fromkeys(HEADER_COLUMNS, _STR) | {"flow": _INT}
_BODY_DTYPES = {
    "flow": _INT, "side": _STR, "kind": _STR, "size_before": _INT,
    "size_after": _INT, "diff": _STR,
}  # fmt: skip


def summary(result: ReplayResult) -> ReplayFrame:
    """One row per flow, nullable dtypes (statuses ``Int64``: ``<NA>``)."""
    return summary_frame(result.summary_rows)


def summary_frame(rows: list[dict[str, Any]]) -> ReplayFrame:
    """Summary rows as a frame with nullable dtypes."""
    return nullable(pd.DataFrame(rows, columns=SUMMARY_COLUMNS), _SUMMARY_DTYPES)


def header_diff(result: ReplayResult, *, unchanged: bool = False) -> ReplayFrame:
    """One row per header field that changed (all with ``unchanged``)."""
    frame = pd.DataFrame(
        result.header_rows(unchanged=unchanged), columns=HEADER_COLUMNS
    )
    return nullable(frame, _HEADER_DTYPES)


def body_diff(result: ReplayResult) -> ReplayFrame:
    """One row per changed body."""
    return nullable(
        pd.DataFrame(result.body_rows(), columns=BODY_COLUMNS), _BODY_DTYPES
    )
