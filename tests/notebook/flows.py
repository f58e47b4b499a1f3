"""Large captures for the explorer's tests, made with mitmproxy's own classes."""

from __future__ import annotations

from pathlib import Path

from mitmproxy import http, io
from mitmproxy.test import tflow

PATHS = ("/api/items/1", "/form", "/missing", "/api/items", "/v1/things/7")
"""Request paths in turn (MIXED traps on 5-byte ones, answers 8-byte ones)."""


def write_flows(path: Path, n: int) -> None:
    """Write ``n`` HTTP flows with JSON responses to ``path`` (a ``.flow`` file)."""
    with path.open("wb") as fp:
        writer = io.FlowWriter(fp)
        for i in range(n):
            flow = tflow.tflow(resp=True)
            method = "POST" if i % 3 == 0 else "GET"
            flow.request = http.Request.make(
                method,
                f"http://example.test{PATHS[i % len(PATHS)]}?n={i}",
                b'{"q": %d}' % i if method == "POST" else b"",
                {"content-type": "application/json", "user-agent": "bulk/1"},
            )
            flow.request.path = PATHS[i % len(PATHS)]
            flow.response = http.Response.make(
                200 + (i % 2) * 1, b'{"id": %d, "ok": true}' % i,
                {"content-type": "application/json", "date": "Mon, 01 Jan 2024"},
            )  # fmt: skip
            flow.request.timestamp_start = 1_700_000_000 + i * 0.01
            flow.request.timestamp_end = flow.request.timestamp_start + 0.001
            flow.response.timestamp_start = flow.request.timestamp_end + 0.002
            flow.response.timestamp_end = flow.response.timestamp_start + 0.001
            writer.add(flow)
