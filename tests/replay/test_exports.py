"""Exports of a replay: the traffic after the filter as .flow and HAR, and HTML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.io import FlowReader

from tests.host.test_safety import TRAP_ON_BOOM
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat
from wasmkit.traffic import load_capture

ROOT = Path(__file__).resolve().parent.parent.parent
FLOW = ROOT / "samples" / "captures" / "api.flow"
DELETE = 3  # DELETE /api/items/1: the filter denies it
NO_RESPONSE = 12  # the flow to a closed port

# Adds x-replayed and drops user-agent on requests; denies DELETE with a 403;
# adds x-after (with HTML in its value), drops server and rewrites
# content-type on responses.
EDIT = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (drop (call $proxy_remove_header_map_value (i32.const 0)
           (global.get $s_ua) (global.get $s_ua_len)))
         (drop (call $proxy_get_header_map_value (i32.const 0)
           (global.get $s_m) (global.get $s_m_len) (i32.const 512) (i32.const 516)))
         (if (i32.eq (i32.load8_u (i32.load (i32.const 512))) (i32.const 68))
           (then
             (drop (call $proxy_send_local_response (i32.const 403)
               (i32.const 0) (i32.const 0) (global.get $s_no) (global.get $s_no_len)
               (i32.const 0) (i32.const 0) (i32.const -1)))
             (return (i32.const 1))))
         (i32.const 0))
       (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 2)
           (global.get $s_rk) (global.get $s_rk_len) (global.get $s_rv) (global.get $s_rv_len)))
         (drop (call $proxy_remove_header_map_value (i32.const 2)
           (global.get $s_srv) (global.get $s_srv_len)))
         (drop (call $proxy_replace_header_map_value (i32.const 2)
           (global.get $s_ct) (global.get $s_ct_len) (global.get $s_ctv) (global.get $s_ctv_len)))
         (i32.const 0))""",
    strings={
        "k": "x-replayed",
        "v": "yes",
        "ua": "user-agent",
        "m": ":method",
        "no": "denied",
        "rk": "x-after",
        "rv": '<b>"tag"&amp</b>',
        "srv": "server",
        "ct": "content-type",
        "ctv": "text/x-replayed",
    },
)


@pytest.fixture(scope="module")
def result():
    return replay(EDIT, FLOW)


def _read_flows(path: Path) -> list[http.HTTPFlow]:
    with open(path, "rb") as fo:
        return [f for f in FlowReader(fo).stream() if isinstance(f, http.HTTPFlow)]


def test_flow_export_is_the_traffic_after_the_filter(result, tmp_path):
    out = tmp_path / "after.flow"
    assert result.to_flow(out) == 17
    flows = _read_flows(out)
    original = list(load_capture(FLOW))
    assert len(flows) == 17
    first = flows[0]
    assert first.request.headers["x-replayed"] == "yes"
    assert "user-agent" not in first.request.headers
    assert first.request.pretty_url == original[0].request.url
    assert first.response is not None
    assert first.response.status_code == 200
    assert first.response.headers["x-after"] == '<b>"tag"&amp</b>'
    assert "server" not in first.response.headers
    assert first.response.headers["content-type"] == "text/x-replayed"
    assert first.response.content == original[0].response.body
    # Timestamps and addresses come from the capture.
    assert first.request.timestamp_start == original[0].request.timestamp_start
    assert first.client_conn.peername[1] == original[0].client_port
    # The denied DELETE: the client got the local reply, upstream was never asked.
    denied = flows[DELETE]
    assert denied.request.method == "DELETE"
    assert denied.response is not None and denied.response.status_code == 403
    assert denied.response.content == b"denied"
    assert denied.error is None
    # The flow with no upstream response keeps the capture's error, no stand-in.
    lost = flows[NO_RESPONSE]
    assert lost.response is None
    assert lost.error is not None and "Connect call failed" in lost.error.msg


def test_flow_export_reads_back_as_a_capture(result, tmp_path):
    out = tmp_path / "after.flow"
    result.to_flow(out)
    back = list(load_capture(out))
    assert len(back) == 17
    assert back[0].request.headers.get_all("x-replayed") == ["yes"]
    assert "user-agent" not in back[0].request.headers
    assert back[DELETE].response is not None and back[DELETE].response.status == 403
    assert back[NO_RESPONSE].request_only
    # Replaying the export again sees the filter's earlier work.
    again = replay(EDIT, out)
    assert len(again) == 17
    rows = again.summary_rows
    assert rows[0]["request_removed"] == 0  # user-agent was already gone


def test_har_export_uses_mitmproxy_and_holds_the_after_traffic(result, tmp_path):
    out = tmp_path / "after.har"
    assert result.to_har(out) == 17
    doc = json.loads(out.read_text())
    assert doc["log"]["creator"]["name"] == "mitmproxy"
    entries = doc["log"]["entries"]
    assert len(entries) == 17
    names = {h["name"] for h in entries[0]["request"]["headers"]}
    assert "x-replayed" in names and "user-agent" not in names
    resp = {h["name"]: h["value"] for h in entries[0]["response"]["headers"]}
    assert resp["x-after"] == '<b>"tag"&amp</b>' and "server" not in resp
    assert entries[DELETE]["response"]["status"] == 403
    assert entries[NO_RESPONSE]["response"]["status"] == 0
    assert "Connect call failed" in entries[NO_RESPONSE]["response"]["_error"]
    back = list(load_capture(out))
    assert len(back) == 17
    assert back[DELETE].response is not None and back[DELETE].response.status == 403
    assert back[NO_RESPONSE].error is not None


def test_exports_carry_the_filter_error_on_failed_flows(tmp_path):
    trapped = replay(
        TRAP_ON_BOOM, FLOW, failure_policy="fail_reload", reload_backoff_ms=2
    )
    failed = {f.index for f in trapped.failed}
    assert failed
    trapped.to_flow(tmp_path / "t.flow")
    trapped.to_har(tmp_path / "t.har")
    flows = _read_flows(tmp_path / "t.flow")
    for i in failed:
        err = flows[i].error
        assert err is not None and "unreachable" in err.msg
        assert "proxy_on_request_headers" in err.msg
    assert all(flows[i].error is None for i in range(17) if i not in failed | {12})
    entries = json.loads((tmp_path / "t.har").read_text())["log"]["entries"]
    for i in failed:
        assert "unreachable" in entries[i]["response"]["_error"]


def test_html_report(result, tmp_path):
    out = tmp_path / "report.html"
    result.to_html(out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "17 flows" in text and "0 failed" in text
    for path in ("/api/items/1", "/gzip", "/cookies", "/secure"):
        assert path in text
    assert text.count('<details id="flow-') == 17
    assert '<tr class="added">' in text and '<tr class="removed">' in text
    assert '<tr class="changed">' in text
    assert "<td>added</td>" in text and "<td>removed</td>" in text
    assert "<td>changed</td>" in text and "text/x-replayed" in text
    assert "row-local-reply" in text and "Local reply <b>403</b>" in text
    # Header values are escaped, never markup.
    assert "&lt;b&gt;&quot;tag&quot;&amp;amp&lt;/b&gt;" in text
    assert '<b>"tag"' not in text
    assert "<script" not in text


def test_html_report_of_failures(tmp_path):
    trapped = replay(TRAP_ON_BOOM, FLOW)
    out = tmp_path / "t.html"
    trapped.to_html(out)
    text = out.read_text(encoding="utf-8")
    assert f"{len(trapped.failed)} failed" in text
    assert "row-failed" in text and "Filter failed (trap)" in text
    assert "#0 explode" in text
    # An inline WAT filter is named by its first line, not its whole text.
    assert "(import" not in text


def test_cli_replay_writes_all_three(tmp_path):
    wat = tmp_path / "edit.wat"
    wat.write_text(EDIT)
    flow, har, page = tmp_path / "x.flow", tmp_path / "x.har", tmp_path / "r.html"
    proc = subprocess.run(
        [
            sys.executable, "-m", "wasmkit.cli", "replay", str(wat), str(FLOW),
            "--out", str(flow), "--har", str(har), "--html", str(page),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(list(load_capture(flow))) == 17
    assert len(json.loads(har.read_text())["log"]["entries"]) == 17
    assert "x-replayed" in page.read_text(encoding="utf-8")


def test_replay_result_shows_its_summary_as_html():
    from wasmkit.replay.run import replay

    result = replay(EDIT, FLOW)
    html_text = result._repr_html_()
    assert html_text.count("<tr") == len(result) + 1
    assert "17 flows" in html_text and "<html" not in html_text
