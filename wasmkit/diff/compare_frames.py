"""Comparisons (two replays, or wasmkit and Envoy) as pandas DataFrames."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from wasmkit.envoy.differ import EnvoyComparison
    from wasmkit.replay.compare import Comparison


def comparison(result: Comparison, *, differing: bool = False) -> pd.DataFrame:
    """One row per flow (only the differing flows with ``differing``)."""
    from wasmkit.diff import frames
    from wasmkit.replay.compare import COLUMNS

    rows = [r for r in result.rows if r["differs"] or not differing]
    dtypes = dict.fromkeys(COLUMNS, "string") | {
        "index": "Int64",
        "status_a": "Int64",
        "status_b": "Int64",
        "differs": "boolean",
    }
    # Nullable dtypes and the coloured .style of every replay frame.
    return frames.nullable(pd.DataFrame(rows, columns=COLUMNS), dtypes)


def envoy_comparison(
    result: EnvoyComparison, *, differing: bool = False
) -> pd.DataFrame:
    """One row per exchange of a comparison with Envoy (only differing ones)."""
    from wasmkit.envoy.differ import COLUMNS

    rows = [r for r in result.rows if not r["agrees"] or not differing]
    return pd.DataFrame(rows, columns=COLUMNS)


def envoy_differences(result: EnvoyComparison) -> pd.DataFrame:
    """One row per unexplained difference: index, field, wasmkit, envoy."""
    rows = [
        {"index": d.index, "field": d.field, "wasmkit": d.wasmkit, "envoy": d.envoy}
        for d in result.unexplained
    ]
    return pd.DataFrame(rows, columns=["index", "field", "wasmkit", "envoy"])
