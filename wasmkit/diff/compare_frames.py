"""A comparison of two replays as a pandas DataFrame."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from wasmkit.replay.compare import Comparison


def comparison(result: Comparison, *, differing: bool = False) -> pd.DataFrame:
    """One row per flow (only the differing flows with ``differing``)."""
    from wasmkit.replay.compare import COLUMNS

    rows = [r for r in result.rows if r["differs"] or not differing]
    return pd.DataFrame(rows, columns=COLUMNS)
