"""Replay results as pandas DataFrames."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from wasmkit.replay.results import ReplayResult

SUMMARY_COLUMNS = [
    "index", "method", "host", "path", "status_before", "status_after", "action",
    "request_added", "request_removed", "request_changed", "response_added",
    "response_removed", "response_changed", "body_changed", "local_reply", "logs",
    "host_calls", "us", "error",
]  # fmt: skip
HEADER_COLUMNS = ["flow", "side", "name", "before", "after", "change"]
BODY_COLUMNS = ["flow", "side", "kind", "size_before", "size_after", "diff"]


def summary(result: ReplayResult) -> pd.DataFrame:
    """One row per flow."""
    return pd.DataFrame(result.summary_rows, columns=SUMMARY_COLUMNS)


def header_diff(result: ReplayResult, *, unchanged: bool = False) -> pd.DataFrame:
    """One row per header field that changed (all with ``unchanged``)."""
    return pd.DataFrame(result.header_rows(unchanged=unchanged), columns=HEADER_COLUMNS)


def body_diff(result: ReplayResult) -> pd.DataFrame:
    """One row per changed body."""
    return pd.DataFrame(result.body_rows(), columns=BODY_COLUMNS)
