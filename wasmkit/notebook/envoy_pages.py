"""The explorer's Envoy parts: a comparison with a real Envoy, as HTML.

Given an :class:`~wasmkit.envoy.differ.EnvoyComparison` (``result.
against_envoy()`` or ``ReplayExplorer(result, envoy=comparison)``), the
explorer adds an ``envoy`` column to the summary (``agree`` / ``differs``),
the same word to each flow's label, an ``Envoy differs`` choice to the flow
list's toggle and an ``Envoy`` tab listing the selected flow's differing
fields. The CSS classes ``wasmkit-envoy`` and ``wasmkit-envoy-flow`` mark them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasmkit.notebook import tables
from wasmkit.notebook.tables import e

if TYPE_CHECKING:
    from wasmkit.envoy.differ import EnvoyComparison, ExchangeComparison

TAB = "Envoy"
"""Title of the selected flow's Envoy tab."""
SHOW = "Envoy differs"
"""The flow list's toggle choice for flows that differ from Envoy."""


def word(exchange: ExchangeComparison | None) -> str:
    """``agree``, ``differs`` or ``-`` (Envoy did not see the flow)."""
    if exchange is None:
        return "-"
    return "agree" if exchange.agrees else "differs"


def status(comparison: EnvoyComparison) -> str:
    """The status line's part: ``Envoy: 15 agree, 2 differ (5 fields)``."""
    counts = comparison.counts
    text = f"Envoy: {counts['agree']} agree, {counts['differ']} differ"
    if counts["unexplained"]:
        text += f" ({counts['unexplained']} fields)"
    return e(text)


def flow_page(comparison: EnvoyComparison, index: int) -> str:
    """The Envoy tab of flow ``index``: its differing fields and normalizations."""
    exchange = comparison.flow(index)
    if exchange is None:
        return '<p class="wasmkit-envoy-flow">Envoy did not replay this flow.</p>'
    used = ", ".join(exchange.normalized) or "none"
    head = (
        f'<p class="wasmkit-envoy-flow">Envoy {e(word(exchange))} · '
        f"normalized: {e(used)}</p>"
    )
    rows = [
        {"field": d.field, "wasmkit": d.wasmkit, "envoy": d.envoy}
        for d in exchange.differences
    ]
    return head + tables.records_table(
        rows,
        table_class="wasmkit-envoy",
        flow=index,
        columns=["field", "wasmkit", "envoy"],
        empty="wasmkit and Envoy agree on this flow.",
    )
