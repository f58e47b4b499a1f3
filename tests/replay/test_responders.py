"""Callouts answered from the capture's own flows."""

from __future__ import annotations

from mitmproxy import io as mitm_io
from mitmproxy.test import tflow, tutils

from tests.host.test_events import AUTH
from wasmkit.replay.run import replay


def _flow(host: str, path: str, status: int, body: bytes):
    flow = tflow.tflow(
        req=tutils.treq(
            host=host, port=80, path=path.encode(), headers=((b"host", host.encode()),)
        ),
        resp=tutils.tresp(status_code=status, content=body),
    )
    flow.request.host = host
    return flow


def test_callouts_are_answered_by_matching_captured_flows(tmp_path):
    capture = tmp_path / "with-auth.flow"
    with capture.open("wb") as fh:
        writer = mitm_io.FlowWriter(fh)
        writer.add(_flow("app.local", "/orders", 200, b"orders"))
        writer.add(_flow("auth.local", "/check", 200, b"welcome"))
    result = replay(AUTH, capture, callouts_from_capture=True, clusters=["auth"])
    first = result.flows[0].result
    assert first.request_forwarded
    assert [r.message for r in first.logs] == ["welcome"]
    assert result.callouts[0].outcome == "response"
    assert result.callouts[0].authority == "auth.local"


def test_without_a_matching_flow_the_callout_times_out(tmp_path):
    capture = tmp_path / "no-auth.flow"
    with capture.open("wb") as fh:
        mitm_io.FlowWriter(fh).add(_flow("app.local", "/orders", 200, b"orders"))
    result = replay(AUTH, capture, callouts_from_capture=True, clusters=["auth"])
    assert result.callouts[0].outcome == "timeout"
    assert result.flows[0].result.response_after.status == 403
