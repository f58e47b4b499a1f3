"""Envoy's connection manager and router around a real filter (the probe) in wasmtime.

Every expectation here was measured with Envoy 1.40 (the same probe runs
through real Envoy in tests/envoy/test_connection_manager.py).
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tests.host.probe import PROBE_WAT, view
from wasmkit.host import (
    Connection,
    ConnectionManager,
    UpstreamReset,
    load,
    request,
    response,
)
from wasmkit.host.connection_manager import (
    ENVOY_DEFAULTS,
    REFUSED_REASON,
    flow_request_id,
    reset_reason,
)
from wasmkit.replay.engine import FlowRunner, ReplayOptions
from wasmkit.traffic.model import Exchange, Headers, Request

UUID4 = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


@pytest.fixture(scope="module")
def probe():
    return load(PROBE_WAT)


def run(probe, req, resp=None, **knobs):
    cm = replace(ENVOY_DEFAULTS, **knobs)
    result = probe.run_http(
        req,
        resp or response(200, [("content-length", "2")], "ok"),
        connection_manager=cm,
    )
    assert result.error is None
    return result, view(log.message for log in result.logs)


def names(headers):
    return [k.decode() for k, _ in headers]


# -- (a) the request as the filter sees it -------------------------------------


def test_the_filter_sees_x_forwarded_proto_and_a_request_id(probe):
    result, seen = run(probe, request("GET", "http://h/x", [("accept", "*/*")]))
    assert seen.names("rqh") == [
        ":authority",
        ":path",
        ":method",
        ":scheme",
        "accept",
        "x-forwarded-proto",
        "x-request-id",
    ]
    assert seen.get("rqh", "x-forwarded-proto") == "http"
    assert UUID4.fullmatch(seen.get("rqh", "x-request-id").encode())
    # request_before is what the filter saw; the client's request is kept apart.
    assert result.request_before.headers == [
        (k.encode(), v.encode()) for k, v in seen.headers["rqh"]
    ]
    assert (
        result.client_request.headers
        == request("GET", "http://h/x", [("accept", "*/*")]).headers
    )
    assert result.request_after.headers == result.request_before.headers
    # The router adds the route timeout on the way upstream only.
    assert result.upstream_request.headers == [
        *result.request_before.headers,
        (b"x-envoy-expected-rq-timeout-ms", b"15000"),
    ]
    assert "request: added x-forwarded-proto: http" in result.host_changes


def test_an_https_flow_gets_x_forwarded_proto_https(probe):
    _, seen = run(probe, request("GET", "https://h/"))
    assert seen.get("rqh", "x-forwarded-proto") == "https"
    _, plain = run(probe, request("GET", "https://h/"), scheme="http")
    assert plain.get("rqh", "x-forwarded-proto") == "http"
    assert plain.get("rqh", ":scheme") == "http"


def test_a_client_x_forwarded_proto_is_kept_and_sets_the_scheme(probe):
    _, seen = run(probe, request("GET", "http://h/", [("x-forwarded-proto", "https")]))
    assert seen.get("rqh", "x-forwarded-proto") == "https"
    assert seen.get("rqh", ":scheme") == "https"


def test_request_ids_come_from_the_seed_and_a_client_id_is_kept():
    first = load(PROBE_WAT).run_http(request(), response())
    again = load(PROBE_WAT).run_http(request(), response())
    other = load(PROBE_WAT, seed=7).run_http(request(), response())
    rid = first.request_before.get(b"x-request-id")
    assert rid == again.request_before.get(b"x-request-id")
    assert rid != other.request_before.get(b"x-request-id")
    kept = load(PROBE_WAT).run_http(
        request("GET", "http://h/", [("x-request-id", "abc")]), response()
    )
    assert kept.request_before.get(b"x-request-id") == b"abc"
    # The replay engine draws one per flow: the same however a replay is cut.
    assert flow_request_id(0, 3) == flow_request_id(0, 3) != flow_request_id(0, 4)
    assert UUID4.fullmatch(flow_request_id(0, 3))


def test_generate_request_id_off(probe):
    _, seen = run(probe, request(), generate_request_id=False)
    assert "x-request-id" not in seen.names("rqh")


def test_hop_by_hop_request_headers_are_removed(probe):
    req = request(
        "GET",
        "http://h/",
        [
            ("Connection", "keep-alive, x-foo"),
            ("x-foo", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("x-bar", "2"),
        ],
    )
    result, seen = run(probe, req)
    assert seen.names("rqh")[4:] == ["te", "x-bar", "x-forwarded-proto", "x-request-id"]
    assert "request: removed x-foo (named by connection)" in result.host_changes
    assert "request: removed keep-alive (hop-by-hop)" in result.host_changes
    # te keeps "trailers" only; without it, it goes; upgrade goes unless configured.
    _, mixed = run(probe, request("GET", "http://h/", [("TE", "gzip, trailers")]))
    assert mixed.get("rqh", "te") == "trailers"
    _, gone = run(
        probe, request("GET", "http://h/", [("TE", "gzip"), ("Upgrade", "h2c")])
    )
    assert "te" not in gone.names("rqh") and "upgrade" not in gone.names("rqh")


def test_a_chunked_request_loses_transfer_encoding_and_is_chunked_upstream(probe):
    req = request("POST", "http://h/", [("Transfer-Encoding", "chunked")], body="hello")
    result, seen = run(probe, req)
    assert "transfer-encoding" not in seen.names("rqh")
    assert result.upstream_request.headers[-1] == (b"transfer-encoding", b"chunked")
    empty, _ = run(probe, request("POST", "http://h/"))
    assert empty.upstream_request.headers[-1] == (b"content-length", b"0")


def test_configured_upgrades_keep_connection_and_upgrade(probe):
    req = request(
        "GET", "http://h/", [("Connection", "Upgrade"), ("Upgrade", "websocket")]
    )
    _, plain = run(probe, req)
    assert "upgrade" not in plain.names("rqh")
    _, upgraded = run(probe, req, upgrade_types=("websocket",))
    assert upgraded.get("rqh", "upgrade") == "websocket"
    assert upgraded.get("rqh", "connection") == "Upgrade"


def test_expect_100_continue_is_answered_by_envoy(probe):
    req = request("POST", "http://h/", [("Expect", "100-continue")], body="abc")
    _, seen = run(probe, req)
    assert "expect" not in seen.names("rqh")
    _, kept = run(probe, req, proxy_100_continue=True)
    assert kept.get("rqh", "expect") == "100-continue"


def test_external_requests_lose_envoy_control_headers(probe):
    req = request(
        "GET",
        "http://h/",
        [
            ("x-forwarded-for", "10.0.0.1"),
            ("x-envoy-max-retries", "3"),
            ("x-envoy-expected-rq-timeout-ms", "7"),
            ("x-envoy-decorator-operation", "op"),
        ],
    )
    result, seen = run(probe, req)
    assert "x-envoy-max-retries" not in seen.names("rqh")
    assert "x-envoy-expected-rq-timeout-ms" not in seen.names("rqh")
    assert "x-envoy-internal" not in seen.names("rqh")  # no internal addresses
    assert seen.get("rqh", "x-envoy-decorator-operation") == "op"  # not an edge
    assert result.upstream_request.get(b"x-envoy-expected-rq-timeout-ms") == b"15000"


def test_use_remote_address_appends_to_x_forwarded_for(probe):
    conn = Connection(source_address="127.0.0.1")
    req = request(
        "GET",
        "http://h/",
        [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-request-id", "abc"),
            ("x-envoy-decorator-operation", "op"),
            ("x-forwarded-proto", "https"),
        ],
    )
    cm = replace(ENVOY_DEFAULTS, use_remote_address=True, local_address="192.0.2.2")
    result = probe.run_http(req, response(), connection=conn, connection_manager=cm)
    seen = view(log.message for log in result.logs)
    # A loopback peer: Envoy appends its own address; x-forwarded-proto is
    # overwritten; an edge request gets a new request id in place.
    assert seen.headers["rqh"][4:] == [
        ("x-forwarded-for", "1.2.3.4,192.0.2.2"),
        ("x-request-id", seen.get("rqh", "x-request-id")),
        ("x-forwarded-proto", "http"),
        ("x-envoy-external-address", "127.0.0.1"),
    ]
    assert seen.get("rqh", "x-request-id") != "abc"
    remote = probe.run_http(
        request("GET", "http://h/"),
        response(),
        connection=Connection(source_address="203.0.113.9"),
        connection_manager=cm,
    )
    assert remote.request_before.headers[4:6] == [
        (b"x-forwarded-for", b"203.0.113.9"),
        (b"x-forwarded-proto", b"http"),
    ]
    trusted = replace(cm, xff_num_trusted_hops=1, preserve_external_request_id=True)
    result = probe.run_http(
        req, response(), connection=conn, connection_manager=trusted
    )
    before = result.request_before
    assert before.get(b"x-request-id") == b"abc"
    assert before.get(b"x-forwarded-proto") == b"https"
    assert before.get(b"x-envoy-external-address") == b"1.2.3.4"
    assert before.get(b":scheme") == b"https"


# -- (c) and (d) the response ----------------------------------------------------


def test_the_response_path_and_the_client(probe):
    upstream = response(
        200,
        [
            ("Server", "up/1"),
            ("Content-Length", "2"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("x-up", "1"),
        ],
        "ok",
    )
    result, seen = run(probe, request(), upstream)
    # The filter sees the router's service time; keep-alive is gone, not connection.
    assert seen.names("rsh") == [
        ":status",
        "server",
        "content-length",
        "connection",
        "x-up",
        "x-envoy-upstream-service-time",
    ]
    assert seen.get("rsh", "x-envoy-upstream-service-time") == "0"
    assert result.response_before.headers == result.response_after.headers
    client = result.client_response
    assert names(client.headers) == [
        ":status",
        "server",
        "content-length",
        "x-up",
        "x-envoy-upstream-service-time",
        "date",
    ]
    assert client.get(b"server") == b"envoy" and client.body == b"ok"
    no_server, _ = run(probe, request(), response(200, [("content-length", "0")]))
    assert names(no_server.client_response.headers)[-2:] == ["date", "server"]
    dated, _ = run(
        probe, request(), response(200, [("date", "Wed, 25 Nov 2026 21:12:15 GMT")])
    )
    assert dated.client_response.get(b"date") == b"Wed, 25 Nov 2026 21:12:15 GMT"


def test_a_204_reaches_the_filter_without_content_length(probe):
    result, seen = run(
        probe,
        request("DELETE", "http://h/"),
        response(204, [("content-length", "0"), ("x-up", "1")]),
    )
    assert seen.names("rsh") == [":status", "x-up", "x-envoy-upstream-service-time"]
    assert seen.counts["rsh"] == ["n=3 eos=1"]
    assert "response: removed content-length (204)" in result.host_changes
    assert result.client_response.get(b"content-length") is None


def test_no_framing_is_added_to_a_304(probe):
    result, _ = run(probe, request(), response(304, [("etag", "x")]))
    assert result.client_response.get(b"content-length") is None
    assert result.client_response.get(b"transfer-encoding") is None
    empty, _ = run(probe, request(), response(200))
    assert empty.client_response.get(b"content-length") == b"0"
    # A HEAD response without content-length announces chunked, as its GET.
    head, _ = run(probe, request("HEAD", "http://h/"), response(503))
    assert head.client_response.headers[-1] == (b"transfer-encoding", b"chunked")
    assert head.client_response.body == b""


def test_a_chunked_response_keeps_transfer_encoding_for_the_filter_only(probe):
    result, seen = run(
        probe, request(), response(200, [("transfer-encoding", "chunked")], "world")
    )
    assert seen.get("rsh", "transfer-encoding") == "chunked"
    # The client's own framing: chunked, at the end.
    assert result.client_response.headers[-1] == (b"transfer-encoding", b"chunked")


def test_server_header_transformations(probe):
    upstream = response(200, [("server", "up/1"), ("content-length", "0")])
    keep, _ = run(
        probe, request(), upstream, server_header_transformation="APPEND_IF_ABSENT"
    )
    assert keep.client_response.get(b"server") == b"up/1"
    add, _ = run(
        probe, request(), response(), server_header_transformation="APPEND_IF_ABSENT"
    )
    assert add.client_response.get(b"server") == b"envoy"
    named, _ = run(probe, request(), upstream, server_name="edge")
    assert named.client_response.get(b"server") == b"edge"
    through, _ = run(
        probe, request(), response(), server_header_transformation="PASS_THROUGH"
    )
    assert through.client_response.get(b"server") is None
    with pytest.raises(ValueError, match="server_header_transformation"):
        ConnectionManager(server_header_transformation="REPLACE")  # type: ignore[arg-type]


def test_suppress_envoy_headers_and_no_route_timeout(probe):
    result, seen = run(probe, request(), suppress_envoy_headers=True)
    assert "x-envoy-upstream-service-time" not in seen.names("rsh")
    assert result.upstream_request.get(b"x-envoy-expected-rq-timeout-ms") is None
    untimed, _ = run(probe, request(), route_timeout_ms=0)
    assert untimed.upstream_request.get(b"x-envoy-expected-rq-timeout-ms") is None
    timed, _ = run(probe, request(), route_timeout_ms=2500)
    assert timed.upstream_request.get(b"x-envoy-expected-rq-timeout-ms") == b"2500"


def test_a_client_connection_close_is_answered_with_connection_close(probe):
    result, _ = run(probe, request("GET", "http://h/", [("Connection", "close")]))
    assert result.client_response.headers[-1] == (b"connection", b"close")


# -- local replies -----------------------------------------------------------------


def reply(status="403", body=None, ctype=False, method="GET", req_body=""):
    headers = [("x-probe-reply", status)]
    if body is not None:
        headers.append(("x-probe-reply-body", body))
    if ctype:
        headers.append(("x-probe-reply-ctype", "1"))
    return request(method, "http://h/", headers, body=req_body)


def test_local_reply_headers_come_after_the_filters(probe):
    result, seen = run(probe, reply(body="denied"))
    assert seen.headers["rsh"] == [
        (":status", "403"),
        ("x-probe", "yes"),
        ("x-second", "2"),
        ("content-length", "6"),
        ("content-type", "text/plain"),
    ]
    assert seen.counts["rsb"] == ["size=6 eos=1"]
    assert names(result.client_response.headers)[-2:] == ["date", "server"]
    _, typed = run(probe, reply(body="denied", ctype=True))
    assert typed.names("rsh") == [
        ":status",
        "x-probe",
        "x-second",
        "content-type",
        "content-length",
    ]
    assert typed.get("rsh", "content-type") == "text/probe"


def test_an_empty_local_reply_has_no_content_length_for_the_filter(probe):
    result, seen = run(probe, reply())
    assert seen.names("rsh") == [":status", "x-probe", "x-second"]
    assert seen.counts["rsh"] == ["n=3 eos=1"]
    # The client's framing adds it.
    assert names(result.client_response.headers)[-3:] == [
        "date",
        "server",
        "content-length",
    ]
    assert result.client_response.get(b"content-length") == b"0"


def test_a_local_reply_before_the_body_closes_the_connection(probe):
    result, _ = run(probe, reply(method="POST", req_body="hello"))
    assert names(result.client_response.headers)[-4:] == [
        "date",
        "server",
        "connection",
        "content-length",
    ]
    assert result.client_response.get(b"connection") == b"close"
    whole, _ = run(probe, reply())
    assert whole.client_response.get(b"connection") is None


def test_a_head_request_answered_locally_gets_content_length_but_no_body(probe):
    result, seen = run(probe, reply(body="denied", method="HEAD"))
    assert seen.get("rsh", "content-length") == "6"
    assert seen.counts["rsh"] == ["n=5 eos=1"]
    assert "rsb" not in seen.counts  # no body callback
    assert result.response_after.body == b"" and result.client_response.body == b""
    assert result.client_response.get(b"content-length") == b"6"


def test_a_204_local_reply_keeps_its_headers_but_the_client_gets_no_body(probe):
    result, seen = run(probe, reply(status="204", body="denied"))
    assert seen.get("rsh", "content-length") == "6"
    assert result.client_response.body == b""


# -- flows without a response ---------------------------------------------------------


def _exchange(error):
    return Exchange(
        0,
        Request("GET", "http", "u", 80, "/", headers=Headers([(b"Host", b"u")])),
        None,
        error=error,
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            "[Errno 111] Connect call failed ('127.0.0.1', 45191)",
            "remote connection failure",
        ),
        ("Server disconnected without sending a response.", "connection termination"),
        (None, "connection termination"),
    ],
)
def test_a_flow_without_a_response_gets_the_routers_503(error, reason):
    assert reset_reason(error) == reason
    flow = FlowRunner(load(PROBE_WAT), ReplayOptions()).run(_exchange(error))
    seen = view(log.message for log in flow.result.logs)
    body = f"upstream connect error or disconnect/reset before headers. reset reason: {reason}"
    assert seen.headers["rsh"] == [
        (":status", "503"),
        ("content-length", str(len(body))),
        ("content-type", "text/plain"),
    ]
    assert flow.no_response
    client = flow.result.client_response
    assert client.body == body.encode()
    assert names(client.headers) == [
        ":status",
        "content-length",
        "content-type",
        "date",
        "server",
    ]
    assert REFUSED_REASON == "remote connection failure"


# -- without a connection manager, and the trace --------------------------------------


def test_no_connection_manager_hands_the_filter_the_request_as_given(probe):
    req = request("GET", "http://h/", [("Connection", "keep-alive")])
    result = probe.run_http(req, response(), connection_manager=None)
    assert result.request_before.headers == req.headers
    assert result.client_request is None and result.upstream_request is None
    assert result.host_changes == []


def test_the_trace_marks_the_connection_managers_changes_as_the_hosts(probe):
    result, _ = run(probe, request("GET", "http://h/", [("Connection", "close")]))
    host = [t for t in result.trace if t.kind == "host"]
    assert [t.args["change"] for t in host] == result.host_changes
    kinds = [(t.kind, t.name) for t in result.trace if t.kind != "hostcall"]
    first_callback = kinds.index(("callback", "proxy_on_context_create"))
    assert all(k == "host" for k, _ in kinds[:first_callback])
    response_cb = kinds.index(("callback", "proxy_on_response_headers"))
    assert kinds[response_cb - 1] == ("host", "router")
    assert kinds[-1] == ("host", "connection_manager")


# -- buffer limits ------------------------------------------------------------------


def test_a_request_body_buffered_past_the_limit_gets_413():
    from tests.host.probe import BUFFERING_PROBE_WAT

    big = b"x" * (2 << 20)
    plugin = load(BUFFERING_PROBE_WAT)
    result = plugin.run_http(
        request("POST", "http://h/", [("content-length", str(len(big)))], body=big),
        response(200, [("content-length", "2")], "ok"),
        chunk_size=64 * 1024,
    )
    # The headers had gone on; the whole request never reached the upstream.
    assert result.request_forwarded and result.upstream_request is None
    seen = view(log.message for log in result.logs)
    # Envoy's own local reply, through the filter's response path.
    assert seen.headers["rsh"] == [
        (":status", "413"),
        ("content-length", "17"),
        ("content-type", "text/plain"),
    ]
    client = result.client_response
    assert client.body == b"Payload Too Large"
    assert client.get(b"connection") == b"close"
    assert result.local_reply is None  # not the filter's
    # Under the limit (or with a larger limit) the body goes through whole.
    roomy = replace(ENVOY_DEFAULTS, per_connection_buffer_limit_bytes=4 << 20)
    through = plugin.run_http(
        request("POST", "http://h/", body=big),
        response(),
        chunk_size=64 * 1024,
        connection_manager=roomy,
    )
    assert through.upstream_request.body == big


def test_a_response_body_buffered_past_the_limit_resets_the_stream():
    from tests.host.probe import BUFFERING_PROBE_WAT

    big = b"z" * (2 << 20)
    result = load(BUFFERING_PROBE_WAT).run_http(
        request(),
        response(200, [("content-length", str(len(big)))], big),
        chunk_size=64 * 1024,
    )
    # The response headers had gone to the client: Envoy resets.
    assert result.reset and result.client_response is None
    assert any("resets the stream" in note for note in result.notes)


def test_a_body_held_behind_paused_headers_counts_against_the_limit():
    hold = PROBE_WAT.replace(
        """(if (i32.eqz (call $req (global.get $s_reply) (global.get $s_reply_len)))
      (then (return (i32.const 0))))""",
        """(if (i32.eqz (call $req (global.get $s_reply) (global.get $s_reply_len)))
      (then (return (i32.const 1))))""",
    )
    assert hold != PROBE_WAT
    result = load(hold).run_http(
        request("POST", "http://h/", body=b"x" * (2 << 20)),
        response(),
        chunk_size=256 * 1024,
    )
    assert result.client_response.status == 413
    small = load(hold).run_http(
        request("POST", "http://h/", body=b"x" * 1000), response()
    )
    assert small.stalled == "request headers"


def test_a_grpc_request_gets_the_routers_503_trailers_only(probe):
    grpc = request(
        "POST", "http://h/pkg.Svc/Call", [("content-type", "application/grpc")]
    )
    result = probe.run_http(grpc, UpstreamReset(REFUSED_REASON))
    seen = view(log.message for log in result.logs)
    assert seen.headers["rsh"] == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "14"),
        (
            "grpc-message",
            "upstream connect error or disconnect/reset before headers. "
            "reset reason: remote connection failure",
        ),
    ]
    assert result.client_response.body == b""


# -- Envoy's HTTP/1 codec: the end of a body in its own frame -----------------


def _body_calls(result):
    return [
        log.message for log in result.logs if log.message.startswith(("rqb ", "rsb "))
    ]


def test_each_body_ends_in_an_empty_frame_as_envoys_http1_codec_sends(probe):
    post = request("POST", "http://h/x", [("content-length", "5")], "hello")
    resp = response(200, [("content-length", "2")], "ok")
    split, _ = run(probe, post, resp)
    assert _body_calls(split) == [
        "rqb size=5 eos=0",
        "rqb size=0 eos=1",
        "rsb size=2 eos=0",
        "rsb size=0 eos=1",
    ]
    assert split.upstream_request.body == b"hello"
    assert split.client_response.body == b"ok"
    # Off: one callback per body, with its end.
    whole, _ = run(probe, post, resp, http1_codec_end_frame=False)
    assert _body_calls(whole) == ["rqb size=5 eos=1", "rsb size=2 eos=1"]


def test_a_filter_holding_the_body_sees_it_whole_at_the_end_frame():
    from tests.host.probe import BUFFERING_PROBE_WAT

    post = request("POST", "http://h/x", [("content-length", "5")], "hello")
    result = load(BUFFERING_PROBE_WAT).run_http(
        post, response(200, [("content-length", "2")], "ok")
    )
    assert result.error is None
    assert _body_calls(result)[:2] == ["rqb size=5 eos=0", "rqb size=5 eos=1"]
    assert result.upstream_request.body == b"hello"
