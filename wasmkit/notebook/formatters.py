"""How replay results become widgets in a live kernel, without the core knowing.

:func:`register` adds a mime-bundle formatter for
:class:`~wasmkit.replay.results.ReplayResult` and
:class:`~wasmkit.replay.compare.Comparison` to an IPython shell. In a live
kernel the bundle holds the widget view (the explorer, the compare view) and
the static HTML summary and text, so saved notebooks and static exports still
show the summary; outside a kernel the formatter steps aside and the objects'
``_repr_html_`` is used.
"""

from __future__ import annotations

from typing import Any

from wasmkit.progress import in_notebook
from wasmkit.replay.compare import Comparison
from wasmkit.replay.results import ReplayResult

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
"""The mime type of a widget view."""

TYPES = (
    ("wasmkit.replay.results", "ReplayResult"),
    ("wasmkit.replay.compare", "Comparison"),
)
"""The types shown as widgets, by module and name (as ``import wasmkit`` in a
kernel registers them)."""


def widget(obj: ReplayResult | Comparison) -> Any:
    """The explorer of a replay, or the compare view of a comparison."""
    if isinstance(obj, Comparison):
        from wasmkit.notebook.compare_view import CompareView

        return CompareView(obj)
    if isinstance(obj, ReplayResult):
        from wasmkit.notebook.explorer import ReplayExplorer

        return ReplayExplorer(obj)
    raise TypeError(f"no widget for {type(obj).__name__}")


def text(obj: ReplayResult | Comparison) -> str:
    """A one-line plain-text summary."""
    if isinstance(obj, ReplayResult):
        from wasmkit.notebook.explorer import short_name

        totals = obj.totals  # the counts every view shows
        return (
            f"<ReplayResult {short_name(obj.filter)!r}: {totals.flows} flows, "
            f"{totals.describe()}>"
        )
    from wasmkit.notebook.explorer import short_name

    return (
        f"<Comparison {short_name(obj.a.filter)!r} vs {short_name(obj.b.filter)!r}: "
        f"{len(obj.flows)} flows, {len(obj.differing)} differ>"
    )


def bundle(obj: ReplayResult | Comparison) -> dict[str, Any]:
    """The mime bundle: widget view, static HTML summary and text."""
    view = widget(obj)._repr_mimebundle_()
    # An anywidget answers (data, metadata); an ipywidget the data alone.
    data = dict(view[0] if isinstance(view, tuple) else view)
    data["text/html"] = obj._repr_html_()
    data["text/plain"] = text(obj)
    return data


def show_in_kernel(obj: Any) -> dict[str, Any] | None:
    """The formatter: :func:`bundle` in a live kernel, else ``None``.

    Widgets need a kernel to talk to; elsewhere the HTML formatter answers.
    """
    return bundle(obj) if in_notebook() else None


def register(shell: Any) -> None:
    """Show replay results and comparisons as widgets in ``shell``."""
    formatter = shell.display_formatter.mimebundle_formatter
    formatter.for_type(ReplayResult, show_in_kernel)
    formatter.for_type(Comparison, show_in_kernel)


def unregister(shell: Any) -> None:
    """Undo :func:`register`."""
    formatter = shell.display_formatter.mimebundle_formatter
    for cls in (ReplayResult, Comparison):
        formatter.type_printers.pop(cls, None)
    for key in TYPES:
        formatter.deferred_printers.pop(key, None)
