"""Captured traffic through a real Envoy, as a ReplayResult."""

from __future__ import annotations

import pytest

import wasmkit
from wasmkit import envoy
from wasmkit.envoy.differ import EnvoyComparison
from wasmkit.replay import run
from wasmkit.replay.compare import compare_results
from wasmkit.replay.results import ReplayResult

from .conftest import ADD_HEADERS, API_FLOW, sample


@pytest.fixture(scope="module")
def replayed(add_headers, exchanges) -> ReplayResult:
    return add_headers.replay(exchanges)


def test_add_headers_reaches_the_upstream_and_the_client(replayed, exchanges):
    assert len(replayed) == len(exchanges) == 17
    for flow in replayed:
        r = flow.result
        assert r.error is None
        assert r.response_after is not None
        if flow.no_response:
            # The capture's upstream refused the connection, and so does
            # Envoy's: nothing arrives, the router says 503.
            assert r.response_after.status == 503
            assert r.response_after.body.endswith(
                b"reset reason: remote connection failure"
            )
            assert r.response_before is None and r.request_after is None
            # The filter forwarded it; the router answered.
            assert r.request_forwarded and r.local_reply is None
            continue
        assert r.request_after is not None, flow.index
        assert r.request_after.get(b"x-a") == b"1"
        assert r.response_after.get(b"x-b") == b"2"
        assert r.response_after.status == exchanges[flow.index].response.status
        assert r.request_forwarded and r.local_reply is None


def test_the_filter_sees_the_captured_request(replayed, exchanges):
    # request_before is the capture; the upstream got it with the filter's
    # header and what Envoy's connection manager and router add.
    for flow in replayed:
        before = exchanges[flow.index].to_request_message()
        assert flow.result.request_before.headers == before.headers
        if flow.no_response:
            # The upstream refused the connection: nothing reached it.
            assert flow.result.request_after is None
            continue
        after = dict(flow.result.request_after.headers)
        assert after[b":path"] == before.get(b":path")
        assert after[b":method"] == before.get(b":method")
        assert b"x-forwarded-proto" in after and b"x-request-id" in after
        assert flow.result.request_after.body == before.body


def test_bodies_come_back_as_captured(replayed, exchanges):
    by_index = {f.index: f for f in replayed}
    large = by_index[13].result.response_after
    assert large.body == exchanges[13].response.body
    assert len(large.body) == 1 << 20
    binary = by_index[14].result
    assert binary.request_after.body == exchanges[14].request.body
    assert binary.response_after.body == exchanges[14].response.body
    chunked = by_index[7].result.response_after
    assert chunked.body == exchanges[7].response.body
    assert chunked.get(b"transfer-encoding") == b"chunked"
    head_less = by_index[3].result.response_after
    assert head_less.status == 204 and head_less.body == b""


def test_repeated_headers_keep_their_order(replayed):
    cookies = next(f for f in replayed if f.index == 15).result
    dup = [v for k, v in cookies.request_after.headers if k == b"x-dup"]
    assert dup == [b"first", b"second"]
    set_cookie = [v for k, v in cookies.response_after.headers if k == b"set-cookie"]
    assert len(set_cookie) == 2


def test_logs_are_collected_per_exchange(replayed, add_headers):
    for flow in replayed:
        messages = [log.message for log in flow.result.logs]
        assert any("added 1 request headers" in m for m in messages), messages
        # Also on the router's 503 for the flow without an upstream.
        assert sum("added 1 response headers" in m for m in messages) == 1
    # Start-up lines (canary and worker VMs) are not any exchange's.
    said = [log.message for log in add_headers.startup_logs]
    assert said
    for flow in replayed:
        assert not any("configur" in log.message for log in flow.result.logs)


def test_the_result_works_with_the_tables_and_compare(replayed, add_headers):
    rows = replayed.summary_rows
    assert [r["action"] for r in rows].count("forwarded") == 16
    assert {r["response_added"] for r in rows if r["action"] == "forwarded"} >= {2}
    assert replayed.records()[0]["request"]["headers"]["after"]
    local = run.replay(
        add_headers._filter,
        API_FLOW,
        root_id="add_headers",
        config=ADD_HEADERS,
        progress=False,
    )
    # wasmkit.compare of a wasmkit and an Envoy replay is the comparison
    # with Envoy; the plain two-replay comparison stays available.
    assert isinstance(wasmkit.compare(local, replayed), EnvoyComparison)
    comparison = compare_results(local, replayed)
    assert len(comparison) == 17
    first = comparison.flows[0]
    # wasmkit models what Envoy's connection manager adds before the filter
    # (x-forwarded-proto, x-request-id): at most the router's own header,
    # which wasmkit keeps in upstream_request, is left over.
    added = {c.name for c in first.request_headers if c.change == "added"}
    assert added <= {"x-envoy-expected-rq-timeout-ms"}
    assert (
        local.flows[0].result.upstream_request.get(b"x-envoy-expected-rq-timeout-ms")
        == b"15000"
    )


def test_replay_starts_and_stops_envoy(tmp_path):
    before = set(envoy.running_pids())
    path = sample("add_headers", "rust")
    result = envoy.replay(
        path,
        API_FLOW,
        root_id="add_headers",
        config=ADD_HEADERS,
        filter_expr="~u /api/",
        limit=2,
    )
    assert [f.index for f in result] == [0, 1]
    assert result.filter == str(path)
    assert set(envoy.running_pids()) == before
    result.to_json(tmp_path / "out.json")
    result.to_har(tmp_path / "out.har")
    assert (tmp_path / "out.har").stat().st_size > 0
