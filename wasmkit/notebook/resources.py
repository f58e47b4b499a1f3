"""The explorer's Resources view: what each flow cost, as series to plot.

The numbers are :meth:`wasmkit.replay.results.ReplayResult.resource_rows`
(the same as the columns of ``result.resources()``); this module thins them
to at most :data:`MAX_POINTS` points per series (the largest value of each
run of flows, so a spike is never averaged away), sums the time per callback
and says when the guest's memory looks like it leaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_POINTS = 600
"""Points per plotted series at most."""
LEAK_MIN_FLOWS = 8
"""Flows with a measured memory size before a leak is suspected."""
LEAK_MIN_STEPS = 3
"""Separate growths of the memory before a leak is suspected."""

SERIES = (
    ("us_filter", "µs in the filter", "µs"),
    ("host_calls", "host calls", "calls"),
    ("memory_bytes", "guest memory after the flow", "bytes"),
    ("fuel", "fuel", "units"),
)
"""The plotted series: key, title, unit."""


def _thin(
    flows: Sequence[int], values: Sequence[float | None]
) -> tuple[list[int], list[float | None]]:
    if len(values) <= MAX_POINTS:
        return list(flows), list(values)
    step = -(-len(values) // MAX_POINTS)
    xs, ys = [], []
    for start in range(0, len(values), step):
        chunk = [v for v in values[start : start + step] if v is not None]
        xs.append(flows[start])
        ys.append(max(chunk) if chunk else None)
    return xs, ys


def leak_hint(flows: Sequence[int], memory: Sequence[int | None]) -> str | None:
    """A warning when the guest's memory keeps growing across the flows.

    Linear memory never shrinks, so growth by itself is normal: an allocator
    grows to its working set and stays there. A filter whose memory grew in
    :data:`LEAK_MIN_STEPS` or more separate steps, in both halves of the
    replay, with the last growth in its final quarter, has not levelled off:
    the heap keeps memory it no longer uses (a TinyGo/Go heap that is never
    collected, a map that is never cleared). ``None``: no such pattern.
    """
    known = [(f, m) for f, m in zip(flows, memory, strict=True) if m is not None]
    if len(known) < LEAK_MIN_FLOWS:
        return None
    steps = [i for i in range(1, len(known)) if known[i][1] > known[i - 1][1]]
    half, last_quarter = len(known) // 2, len(known) * 3 // 4
    if (
        len(steps) < LEAK_MIN_STEPS
        or not any(i <= half for i in steps)
        or not any(i > half for i in steps)
        or steps[-1] < last_quarter
    ):
        return None
    first, last = known[0][1], known[-1][1]
    return (
        f"guest memory grew {len(steps)} times over {len(known)} flows, from "
        f"{first / 1024:,.0f} KiB to {last / 1024:,.0f} KiB, and was still "
        f"growing at flow #{known[steps[-1]][0]}: the filter may keep memory "
        "it no longer uses (a Go/TinyGo heap, a cache never cleared); replay "
        "more flows to see whether it levels off"
    )


def view(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The Resources tab's data: series to plot, per-callback totals, a hint."""
    flows = [row["flow"] for row in rows]
    series = []
    for key, title, unit in SERIES:
        values = [row.get(key) for row in rows]
        if all(v is None for v in values):
            continue
        xs, ys = _thin(flows, values)
        known = [v for v in values if v is not None]
        series.append(
            {
                "key": key,
                "title": title,
                "unit": unit,
                "flows": xs,
                "values": ys,
                "min": min(known),
                "max": max(known),
                "total": sum(known),
            }
        )
    callbacks: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("us_on") and value is not None:
                callbacks.setdefault(key.removeprefix("us_"), []).append(value)
    per_callback = [
        {
            "callback": name,
            "flows": len(values),
            "total_us": round(sum(values), 1),
            "mean_us": round(sum(values) / len(values), 1),
            "max_us": round(max(values), 1),
        }
        for name, values in sorted(callbacks.items(), key=lambda kv: -sum(kv[1]))
    ]
    return {
        "flows": len(rows),
        "series": series,
        "callbacks": per_callback,
        "leak": leak_hint(flows, [row.get("memory_bytes") for row in rows]),
    }
