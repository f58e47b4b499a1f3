"""The HTTP stream lifecycle with Envoy's semantics, on real WAT filters."""

from __future__ import annotations

from wasmkit.abi.constants import StreamType
from wasmkit.host import ConnectionManager, load, request, response
from wasmkit.testing import filter_wat

NOOP_LOG = """
(func (export "proxy_on_log") (param i32))
(func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
(func (export "proxy_on_delete") (param i32))
"""


def names(result, kind="callback"):
    return [t.name for t in result.trace if t.kind == kind]


def calls(result, name):
    return [t for t in result.trace if t.name == name]


def test_header_names_are_lower_cased_and_changes_forwarded():
    wat = filter_wat(
        """
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_add_header_map_value (i32.const 0)
            (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
          (drop (call $proxy_remove_header_map_value (i32.const 0)
            (global.get $s_ua) (global.get $s_ua_len)))
          (i32.const 0))
        """,
        strings={"k": "X-Mixed-Case", "v": "1", "ua": "User-Agent"},
    )
    result = load(wat).run_http(
        request("GET", "http://h/", [("User-Agent", "curl"), ("Accept", "*/*")]),
        response(),
    )
    after = result.request_after.headers
    assert (b"x-mixed-case", b"1") in after
    assert all(k != b"user-agent" for k, _ in after)
    assert (b"accept", b"*/*") in result.request_before.headers
    assert (b"user-agent", b"curl") in result.request_before.headers


PAUSE_HEADERS = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
    """
    + NOOP_LOG
)


def test_pause_on_headers_without_resume_stalls():
    result = load(PAUSE_HEADERS).run_http(
        request("POST", "http://h/", body="abc"), response()
    )
    assert result.stalled == "request headers"
    assert not result.request_forwarded
    assert result.response_before is None and result.response_after is None
    # Body callbacks were not delivered while the headers were held.
    assert not calls(result, "proxy_on_request_body")
    assert names(result)[-3:] == ["proxy_on_log", "proxy_on_done", "proxy_on_delete"]


# Pauses the headers but continues the stream in the same callback: Envoy
# applies the continue after the callback returns.
CONTINUE_DEFERRED = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_continue_stream (i32.const 0)))
      (i32.const 1))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
    """
)


def test_deferred_continue_resumes_after_the_callback():
    result = load(CONTINUE_DEFERRED).run_http(
        request("POST", "http://h/", body="hello"), response(), chunk_size=2
    )
    assert result.stalled is None
    assert result.request_forwarded
    assert result.request_after.body == b"hello"
    assert result.response_after is not None


# Stream A pauses its headers; stream B's headers callback switches to A's
# context (id 2) and continues it. A's body was buffered meanwhile and is
# delivered to A's body callback in one piece.
CROSS_STREAM = filter_wat(
    """
    (global $first (mut i32) (i32.const 1))
    (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
      (if (global.get $first)
        (then (global.set $first (i32.const 0)) (return (i32.const 1))))
      (drop (call $proxy_set_effective_context (i32.const 2)))
      (drop (call $proxy_continue_stream (i32.const 0)))
      (i32.const 0))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
    """
)


def test_a_paused_stream_is_resumed_from_another_context():
    plugin = load(CROSS_STREAM)
    a = plugin.http_stream()
    a.send_message(
        StreamType.HTTP_REQUEST, request("POST", "http://h/a", body="0123456789"), 3
    )
    assert a.ctx is not None and a.ctx.request.stopped == "headers"
    assert not calls_in(plugin, "proxy_on_request_body")
    b = plugin.http_stream()
    b.send_message(StreamType.HTTP_REQUEST, request("GET", "http://h/b"))
    body_calls = calls_in(plugin, "proxy_on_request_body")
    assert [
        (c.context_id, c.args["body_size"], c.args["end_of_stream"]) for c in body_calls
    ] == [(2, 10, 1)]
    assert a.request_complete()
    result = a.finish()
    assert result.request_after.body == b"0123456789"
    assert result.stalled is None


def calls_in(plugin, name):
    return [t for t in plugin.vm.trace if t.name == name]


# Pause every body chunk before the end: the next call sees the whole buffered
# body; at the end it reads all of it and continues.
BUFFERING = filter_wat(
    """
    (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32)
          (result i32)
      (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
      (drop (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (local.get $size)
            (i32.const 512) (i32.const 516)))
      (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512)) (i32.load (i32.const 516))))
      (i32.const 0))
    """
)


def test_pause_on_body_buffers_and_next_call_sees_the_whole_body():
    result = load(BUFFERING).run_http(
        request("POST", "http://h/", body="abcdefghij"), response(), chunk_size=4
    )
    sizes = [
        (c.args["body_size"], c.args["end_of_stream"])
        for c in calls(result, "proxy_on_request_body")
    ]
    # Three pieces as they arrive, then the end in the empty frame Envoy's
    # HTTP/1 codec adds; the filter read the whole body at the end.
    assert sizes == [(4, 0), (8, 0), (10, 0), (10, 1)]
    assert [r.message for r in result.logs] == ["abcdefghij"]
    assert result.request_after.body == b"abcdefghij"
    assert result.stalled is None


def test_pause_at_end_of_body_stalls():
    wat = filter_wat(
        '(func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 1))'
    )
    result = load(wat).run_http(request("POST", "http://h/", body="xyz"), response())
    assert result.stalled == "request body"
    assert result.request_forwarded  # the headers went; the body is held
    assert result.request_after.body == b"xyz"
    assert result.response_before is None


REWRITE_BODY = filter_wat(
    """
    (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32)
          (result i32)
      (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
      (drop (call $proxy_set_buffer_bytes (i32.const 1) (i32.const 0) (local.get $size)
            (global.get $s_new) (global.get $s_new_len)))
      (drop (call $proxy_replace_header_map_value (i32.const 2)
            (global.get $s_cl) (global.get $s_cl_len) (global.get $s_n) (global.get $s_n_len)))
      (i32.const 0))
    """,
    strings={"new": "rewritten!", "cl": "content-length", "n": "10"},
)


def test_response_body_rewrite_in_chunks():
    result = load(REWRITE_BODY).run_http(
        request(),
        response(200, [("content-length", "12")], "original 123"),
        chunk_size=5,
    )
    assert result.response_before.body == b"original 123"
    assert result.response_after.body == b"rewritten!"
    # Headers were forwarded before the body callback changed content-length.
    assert (b"content-length", b"12") in result.response_after.headers


DENY = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_send_local_response (i32.const 403)
        (global.get $s_det) (global.get $s_det_len)
        (global.get $s_body) (global.get $s_body_len)
        (global.get $s_hdrs) (global.get $s_hdrs_len) (i32.const -1)))
      (i32.const 0))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 2)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
    """,
    strings={
        "det": "access denied",
        "body": "forbidden\n",
        # pairs: 1 pair, "x-deny" = "1"
        "hdrs": b"\x01\0\0\0\x06\0\0\0\x01\0\0\0x-deny\x001\x00",
        "k": "x-seen-by-response",
        "v": "yes",
    },
)


def test_local_reply_ends_request_path_and_runs_response_callbacks():
    upstream_calls = []

    def upstream(req):
        upstream_calls.append(req)
        return response(200)

    result = load(DENY).run_http(request("POST", "http://h/", body="payload"), upstream)
    assert upstream_calls == []
    assert not result.request_forwarded
    assert not calls(result, "proxy_on_request_body")
    reply = result.local_reply
    assert reply is not None and reply.status == 403
    assert reply.details == "access_denied"
    assert reply.grpc_status is None
    assert reply.callback == "proxy_on_request_headers"
    after = result.response_after
    assert after.status == 403
    assert after.body == b"forbidden\n"
    assert (b"x-deny", b"1") in after.headers
    assert (b"x-seen-by-response", b"yes") in after.headers
    body_calls = calls(result, "proxy_on_response_body")
    assert [(c.args["body_size"], c.args["end_of_stream"]) for c in body_calls] == [
        (10, 1)
    ]
    assert result.response_before is None


REPLACE_RESPONSE = filter_wat(
    """
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_send_local_response (i32.const 502)
        (i32.const 0) (i32.const 0) (global.get $s_b) (global.get $s_b_len)
        (i32.const 0) (i32.const 0) (i32.const 14)))
      (i32.const 0))
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
    """,
    strings={"b": "bad gateway"},
)


def test_local_reply_from_response_headers_replaces_the_response():
    result = load(REPLACE_RESPONSE).run_http(
        request(), response(200, [], "upstream body")
    )
    assert result.response_before.status == 200
    assert result.response_after.status == 502
    assert result.response_after.body == b"bad gateway"
    # A plain HTTP request: the gRPC status is not sent (Envoy sends it only
    # to gRPC callers).
    assert all(k != b"grpc-status" for k, _ in result.response_after.headers)
    assert result.local_reply.grpc_status == 14
    # The replaced response does not go through the filter again.
    assert len(calls(result, "proxy_on_response_headers")) == 1
    assert not calls(result, "proxy_on_response_body")


def test_close_stream_resets():
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $proxy_close_stream (i32.const 0))) (i32.const 0))"""
        + NOOP_LOG
    )
    result = load(wat).run_http(request(), response())
    assert result.reset
    assert result.response_after is None
    assert names(result)[-3:] == ["proxy_on_log", "proxy_on_done", "proxy_on_delete"]


TRAILERS = filter_wat(
    """
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
    (func (export "proxy_on_request_trailers") (param i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 1)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) (i32.const 0))
    """,
    strings={"k": "x-checksum", "v": "ok"},
)


def test_trailers_go_through_their_callbacks():
    req = request("POST", "http://h/", body="data", trailers=[("grpc-status", "0")])
    resp = response(200, [], "resp", trailers=[("grpc-status", "0")])
    # Envoy's HTTP/1 codec passes trailers on with enable_trailers only.
    trailers_on = ConnectionManager(enable_trailers=True)
    result = load(TRAILERS).run_http(req, resp, connection_manager=trailers_on)
    body = calls(result, "proxy_on_request_body")
    assert [c.args["end_of_stream"] for c in body] == [0]
    assert calls(result, "proxy_on_request_trailers")[0].args["num_trailers"] == 1
    assert result.request_after.trailers == [
        (b"grpc-status", b"0"),
        (b"x-checksum", b"ok"),
    ]
    assert calls(result, "proxy_on_response_trailers")
    assert result.response_after.trailers == [(b"grpc-status", b"0")]
    # By default they are dropped before the filter (measured with Envoy).
    dropped = load(TRAILERS).run_http(req, resp)
    assert not calls(dropped, "proxy_on_request_trailers")
    assert not calls(dropped, "proxy_on_response_trailers")
    # With its trailers dropped the body ends in the codec's empty frame.
    body = calls(dropped, "proxy_on_request_body")
    assert [(c.args["body_size"], c.args["end_of_stream"]) for c in body] == [
        (4, 0),
        (0, 1),
    ]
    assert dropped.request_before.trailers is None
    assert dropped.upstream_request.trailers is None
    assert dropped.client_response.trailers is None


def test_headers_only_request_has_end_of_stream():
    wat = filter_wat(
        '(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))'
    )
    result = load(wat).run_http(request(), response(204))
    (call,) = calls(result, "proxy_on_request_headers")
    assert call.args["end_of_stream"] == 1
    # The four pseudo-headers, and x-forwarded-proto and x-request-id from
    # Envoy's connection manager.
    assert call.args["num_headers"] == 6
    assert [k for k, _ in result.request_before.headers][4:] == [
        b"x-forwarded-proto",
        b"x-request-id",
    ]


def test_upstream_function_sees_the_forwarded_request():
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_replace_header_map_value (i32.const 0)
            (global.get $s_p) (global.get $s_p_len) (global.get $s_v) (global.get $s_v_len)))
          (i32.const 0))""",
        strings={"p": ":path", "v": "/rewritten"},
    )
    seen = []

    def upstream(req):
        seen.append(req.get(b":path"))
        return response(200, [], "ok")

    result = load(wat).run_http(request("GET", "http://h/original"), upstream)
    assert seen == [b"/rewritten"]
    assert result.response_after.body == b"ok"


def test_local_reply_to_a_grpc_request_is_trailers_only():
    grpc_req = request(
        "POST",
        "http://h/pkg.Svc/Call",
        [("content-type", "application/grpc")],
        body="x",
    )
    result = load(DENY).run_http(grpc_req, response(200))
    after = result.response_after
    assert after.status == 200
    assert (b"content-type", b"application/grpc") in after.headers
    assert (b"grpc-status", b"7") in after.headers  # 403 maps to PERMISSION_DENIED
    # Envoy percent-encodes the body into grpc-message (PercentEncoding::encode).
    assert (b"grpc-message", b"forbidden%0A") in after.headers
    assert after.body == b""
    replaced = load(REPLACE_RESPONSE).run_http(grpc_req, response(200, [], "upstream"))
    assert (b"grpc-status", b"14") in replaced.response_after.headers
