"""Replay results as pandas DataFrames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from wasmkit.replay.results import ReplayResult

SUMMARY_COLUMNS = [
    "index", "method", "host", "path", "status_before", "status_after", "action",
    "request_added", "request_removed", "request_changed", "response_added",
    "response_removed", "response_changed", "body_changed", "local_reply", "logs",
    "host_calls", "us", "error", "reason",
]  # fmt: skip
_NULLABLE_INTS = ("status_before", "status_after", "local_reply")
HEADER_COLUMNS = ["flow", "side", "name", "before", "after", "change"]
BODY_COLUMNS = ["flow", "side", "kind", "size_before", "size_after", "diff"]


def summary(result: ReplayResult) -> pd.DataFrame:
    """One row per flow; statuses as nullable integers (``Int64``: ``<NA>``)."""
    return summary_frame(result.summary_rows)


def summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Summary rows as a frame with nullable integer statuses."""
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return frame.astype({name: "Int64" for name in _NULLABLE_INTS})


def header_diff(result: ReplayResult, *, unchanged: bool = False) -> pd.DataFrame:
    """One row per header field that changed (all with ``unchanged``)."""
    return pd.DataFrame(result.header_rows(unchanged=unchanged), columns=HEADER_COLUMNS)


def body_diff(result: ReplayResult) -> pd.DataFrame:
    """One row per changed body."""
    return pd.DataFrame(result.body_rows(), columns=BODY_COLUMNS)
