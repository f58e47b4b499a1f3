"""gRPC callouts on real WAT filters: unary calls, streams, tokens, timeouts."""

from __future__ import annotations

import pytest

from wasmkit.abi import pairs
from wasmkit.host import load, request, response
from wasmkit.host.grpc import (
    GrpcReply,
    GrpcRequest,
    GrpcStatus,
    as_reply,
    grpc_table_responder,
    parse_grpc_service,
)
from wasmkit.testing import filter_wat


def grpc_service(cluster: bytes, field: int = 1) -> bytes:
    """A serialized GrpcService naming an Envoy cluster (or a Google target)."""
    inner = b"\x0a" + bytes([len(cluster)]) + cluster
    return bytes([field << 3 | 2, len(inner)]) + inner


def callbacks(trace, prefix="proxy_on_grpc"):
    return [
        (t.name.removeprefix("proxy_on_grpc_"), *list(t.args.values())[1:])
        for t in trace
        if t.kind == "callback" and t.name.startswith(prefix)
    ]


def statuses(trace, name):
    return [t.result for t in trace if t.kind == "hostcall" and t.name == name]


def said(vm):
    return [r.message for r in vm.logs if r.source == "proxy_log"]


# Logs the value of "x-md" in gRPC map $map ("-" when it has none).
LOG_MD = """
(func $log_md (param $map i32)
  (if (call $proxy_get_header_map_value (local.get $map)
        (global.get $s_key) (global.get $s_key_len) (i32.const 628) (i32.const 632))
    (then (drop (call $proxy_log (i32.const 2) (global.get $s_none) (global.get $s_none_len))))
    (else (drop (call $proxy_log (i32.const 2)
      (i32.load (i32.const 628)) (i32.load (i32.const 632)))))))
(func (export "proxy_on_grpc_receive_initial_metadata") (param i32 i32 i32)
  (call $log_md (i32.const 4)))
(func (export "proxy_on_grpc_receive_trailing_metadata") (param i32 i32 i32)
  (call $log_md (i32.const 5)))
"""

STRINGS = {
    "service": "authz.v1.Authz",
    "method": "Check",
    "md": pairs.encode([(b"X-Token", b"abc")]),
    "msg": b"\x0a\x04ping",
    "key": "x-md",
    "none": "-",
    "no": "denied",
    "ping": "ping",
}


# Asks a gRPC service before letting a request through: Pause, continue when a
# message arrives, deny with 403 when the call closes with an error.
def authz(cluster: str | bytes = "grpc_auth", timeout_ms: int = 1000) -> str:
    return filter_wat(
        f"""
        (global $stream (mut i32) (i32.const 0))
        (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
          (local $status i32)
          (global.set $stream (local.get $ctx))
          (local.set $status (call $proxy_grpc_call
            (global.get $s_cluster) (global.get $s_cluster_len)
            (global.get $s_service) (global.get $s_service_len)
            (global.get $s_method) (global.get $s_method_len)
            (global.get $s_md) (global.get $s_md_len)
            (global.get $s_msg) (global.get $s_msg_len)
            (i32.const {timeout_ms}) (i32.const 600)))
          (i32.store (i32.const 604) (local.get $status))
          (if (local.get $status) (then (return (i32.const 0))))
          (i32.const 1))
        (func (export "proxy_on_grpc_receive") (param $root i32) (param $token i32) (param $size i32)
          (drop (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (local.get $size)
            (i32.const 608) (i32.const 612)))
          (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 608)) (i32.load (i32.const 612))))
          (drop (call $proxy_set_effective_context (global.get $stream)))
          (drop (call $proxy_continue_stream (i32.const 0))))
        (func (export "proxy_on_grpc_close") (param $root i32) (param $token i32) (param $status i32)
          (drop (call $proxy_get_status (i32.const 616) (i32.const 620) (i32.const 624)))
          (drop (call $proxy_log (i32.const 3) (i32.load (i32.const 620)) (i32.load (i32.const 624))))
          (drop (call $proxy_set_effective_context (global.get $stream)))
          (if (local.get $status)
            (then (drop (call $proxy_send_local_response (i32.const 403)
              (i32.const 0) (i32.const 0) (global.get $s_no) (global.get $s_no_len)
              (i32.const 0) (i32.const 0) (i32.const -1))))))
        {LOG_MD}
        """,
        strings={"cluster": cluster, **STRINGS},
    )


ALLOW = GrpcReply(
    (b"allowed",),
    initial_metadata=[(b"x-md", b"hello")],
    trailing_metadata=[(b"x-md", b"bye")],
)


def test_unary_call_delivers_the_response_message_as_envoy_does():
    seen: list[GrpcRequest] = []

    def responder(req):
        seen.append(req)
        return ALLOW

    plugin = load(authz(), grpc_responder=responder, clusters=["grpc_auth"])
    result = plugin.run_http(request(), response(200, [], "data"))
    assert result.error is None and result.request_forwarded
    assert result.response_after.body == b"data"
    (req,) = seen
    assert (req.cluster, req.path, req.kind, req.token) == (
        "grpc_auth",
        "/authz.v1.Authz/Check",
        "call",
        5,
    )
    assert req.metadata == [(b"x-token", b"abc")]
    assert (req.message, req.end_stream, req.index) == (b"\x0a\x04ping", True, 0)
    # Envoy's unary client: the message and nothing else (no metadata, no close).
    assert callbacks(result.trace) == [("receive", 5, 7)]
    assert [r.message for r in result.logs] == ["allowed"]
    (call,) = plugin.vm.events.grpc_calls
    assert call.to_json() == {
        "token": 5,
        "kind": "call",
        "context_id": result.context_id,
        "cluster": "grpc_auth",
        "service": "authz.v1.Authz",
        "method": "Check",
        "timeout_ms": 1000,
        "sent": 1,
        "received": 1,
        "status": 0,
        "status_message": "",
        "outcome": "ok",
        "latency_ms": 0.0,
    }
    assert call.root_id == plugin.root.id and call.received == [b"allowed"]


def test_unary_call_in_the_spec_profile_gets_metadata_and_a_close():
    plugin = load(authz(), grpc_responder={"grpc_auth": ALLOW}, profile="spec")
    result = plugin.run_http(request(), response())
    assert result.request_forwarded
    assert callbacks(result.trace) == [
        ("receive_initial_metadata", 5, 3),  # :status, content-type, x-md
        ("receive", 5, 7),
        ("receive_trailing_metadata", 5, 2),  # grpc-status, x-md
        ("close", 5, 0),
    ]
    assert [r.message for r in result.logs] == ["hello", "allowed", "bye", ""]


def test_error_status_closes_with_its_message():
    table = {"grpc_auth authz.v1.Authz/Check": {"status": 7, "status_message": "nope"}}
    plugin = load(authz(), grpc_responder=table)
    result = plugin.run_http(request(), response())
    assert callbacks(result.trace) == [("close", 5, 7)]
    assert statuses(result.trace, "proxy_get_status") == ["OK"]
    assert [r.message for r in result.logs] == ["nope"]
    assert result.response_after.status == 403
    assert result.local_reply.callback == "proxy_on_grpc_close"
    # Envoy clears the message after the callback; the code stays.
    assert plugin.root.last_status == (7, b"")
    call = plugin.vm.events.grpc_calls[0]
    assert (call.outcome, call.status, call.status_message) == ("error", 7, "nope")


def test_ok_without_a_message_is_internal_for_a_unary_call():
    plugin = load(authz(), grpc_responder={"grpc_auth": {"status": 0}})
    result = plugin.run_http(request(), response())
    assert callbacks(result.trace) == [("close", 5, GrpcStatus.INTERNAL)]
    assert result.response_after.status == 403


@pytest.mark.parametrize(
    "answer",
    [None, GrpcReply((b"late",), latency_ms=300)],
    ids=["no answer", "too late"],
)
def test_timeout_closes_with_deadline_exceeded(answer):
    plugin = load(
        authz(timeout_ms=250), grpc_responder=lambda req: answer, clusters=["grpc_auth"]
    )
    start = plugin.vm.clock.now_ns()
    result = plugin.run_http(request(), response())
    assert callbacks(result.trace) == [("close", 5, 4)]
    assert [r.message for r in result.logs] == ["upstream request timeout"]
    assert plugin.vm.clock.now_ns() - start == 250_000_000
    assert result.response_after.status == 403
    call = plugin.vm.events.grpc_calls[0]
    assert (call.outcome, call.status) == ("timeout", GrpcStatus.DEADLINE_EXCEEDED)
    assert call.to_json()["latency_ms"] == 250.0


def test_latency_moves_the_clock():
    reply = GrpcReply((b"ok",), latency_ms=40)
    plugin = load(authz(), grpc_responder={"grpc_auth": reply})
    start = plugin.vm.clock.now_ns()
    result = plugin.run_http(request(), response())
    assert result.request_forwarded
    assert plugin.vm.clock.now_ns() - start == 40_000_000


@pytest.mark.parametrize(
    ("upstream", "status", "cluster"),
    [
        ("nowhere", "PARSE_FAILURE", None),  # Envoy: neither a proto nor a cluster
        (grpc_service(b"grpc_auth"), "OK", "grpc_auth"),
        (grpc_service(b"elsewhere"), "INTERNAL_FAILURE", None),
        (grpc_service(b"dns:///auth:443", field=2), "OK", "dns:///auth:443"),
        (b"", "BAD_ARGUMENT", None),  # an empty GrpcService names no target
    ],
    ids=["unknown name", "proto", "proto unknown", "google", "empty"],
)
def test_upstream_is_a_cluster_name_or_a_grpc_service(upstream, status, cluster):
    table = {"grpc_auth": ALLOW, "dns:///auth:443": ALLOW}
    plugin = load(authz(upstream), grpc_responder=table)
    result = plugin.run_http(request(), response(200))
    assert statuses(result.trace, "proxy_grpc_call") == [status]
    assert result.request_forwarded  # allowed, or the filter goes on unchecked
    assert [c.cluster for c in plugin.vm.events.grpc_calls] == (
        [cluster] if cluster else []
    )


def test_a_bogus_grpc_service_is_no_cluster_even_with_a_function_responder():
    # Envoy's test "bogus grpc_service": the bytes do not parse as a
    # GrpcService and no cluster has that name, so ParseFailure, whatever
    # would answer; the same name declared is a cluster.
    plugin = load(authz(b"bogus grpc_service"), grpc_responder=lambda req: ALLOW)
    result = plugin.run_http(request(), response(200))
    assert statuses(result.trace, "proxy_grpc_call") == ["PARSE_FAILURE"]
    assert plugin.vm.events.grpc_calls == []
    assert any("cluster 'bogus grpc_service'" in n for n in result.notes)
    plugin = load(authz(), grpc_responder=lambda req: ALLOW, clusters=["grpc_auth"])
    result = plugin.run_http(request(), response(200))
    assert statuses(result.trace, "proxy_grpc_call") == ["OK"]


def test_without_any_responder_no_cluster_exists():
    result = load(authz()).run_http(request(), response())
    assert statuses(result.trace, "proxy_grpc_call") == ["PARSE_FAILURE"]


def test_http_callout_clusters_exist_for_grpc_too():
    plugin = load(authz(), responder={"grpc_auth": {"status": 200}})
    result = plugin.run_http(request(), response())
    assert statuses(result.trace, "proxy_grpc_call") == ["OK"]
    # Nobody answers: the call times out.
    assert plugin.vm.events.grpc_calls[0].outcome == "timeout"


# Streams and the token rules, driven from Python through exported helpers.
STREAMS = filter_wat(
    f"""
    (global $cancel_on_receive (mut i32) (i32.const 0))
    (func (export "open") (result i32)
      (call $proxy_grpc_stream (global.get $s_cluster) (global.get $s_cluster_len)
        (global.get $s_service) (global.get $s_service_len)
        (global.get $s_method) (global.get $s_method_len)
        (global.get $s_md) (global.get $s_md_len) (i32.const 600)))
    (func (export "unary") (result i32)
      (call $proxy_grpc_call (global.get $s_cluster) (global.get $s_cluster_len)
        (global.get $s_service) (global.get $s_service_len)
        (global.get $s_method) (global.get $s_method_len)
        (i32.const 0) (i32.const 0) (global.get $s_ping) (global.get $s_ping_len)
        (i32.const 0) (i32.const 600)))
    (func (export "send") (param $token i32) (param $end i32) (result i32)
      (call $proxy_grpc_send (local.get $token)
        (global.get $s_ping) (global.get $s_ping_len) (local.get $end)))
    (func (export "close") (param i32) (result i32) (call $proxy_grpc_close (local.get 0)))
    (func (export "cancel") (param i32) (result i32) (call $proxy_grpc_cancel (local.get 0)))
    (func (export "read_message") (result i32)
      (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (i32.const 10)
        (i32.const 608) (i32.const 612)))
    (func (export "cancel_on_receive") (global.set $cancel_on_receive (i32.const 1)))
    (func (export "proxy_on_grpc_receive") (param $root i32) (param $token i32) (param $size i32)
      (drop (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (local.get $size)
        (i32.const 608) (i32.const 612)))
      (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 608)) (i32.load (i32.const 612))))
      (if (global.get $cancel_on_receive)
        (then (drop (call $proxy_grpc_cancel (local.get $token))))))
    (func (export "proxy_on_grpc_close") (param $root i32) (param $token i32) (param $status i32)
      (drop (call $proxy_get_status (i32.const 616) (i32.const 620) (i32.const 624)))
      (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 620)) (i32.load (i32.const 624)))))
    {LOG_MD}
    """,
    strings={"cluster": "echo", **STRINGS},
)


def echo(req):
    """Answers each message with pong-N; on the half-close says bye and ends OK."""
    if req.message is None:
        return GrpcReply((b"bye",), status=0, trailing_metadata=[(b"x-md", b"done")])
    return GrpcReply(
        (b"pong-%d" % req.index,), initial_metadata=[(b"x-md", b"hi")], latency_ms=5
    )


def streams(responder=echo, **options):
    # A function responder: the cluster is declared, as in Envoy's config.
    plugin = load(STREAMS, grpc_responder=responder, clusters=["echo"], **options)
    vm, root = plugin.vm, plugin.root

    def call(name, *args):
        return vm.invoke(name, args, root)

    return vm, call


def test_stream_sends_receives_and_half_closes():
    seen = []
    vm, call = streams(lambda req: seen.append(req) or echo(req))
    assert call("open") == 0
    token = vm.mem.read_u32(600)
    assert token == 6
    assert call("send", token, 0) == 0
    assert call("send", token, 0) == 0
    vm.advance(5)
    assert callbacks(vm.trace) == [
        ("receive_initial_metadata", 6, 3),
        ("receive", 6, 6),
        ("receive", 6, 6),
    ]
    assert said(vm) == ["hi", "pong-0", "pong-1"]
    assert call("close", token) == 0  # half-close: answers still arrive
    vm.advance(0)
    assert callbacks(vm.trace)[3:] == [
        ("receive", 6, 3),
        ("receive_trailing_metadata", 6, 2),  # grpc-status, x-md
        ("close", 6, 0),
    ]
    assert said(vm)[3:] == ["bye", "done", ""]
    assert [(r.message, r.end_stream, r.index, r.kind) for r in seen] == [
        (b"ping", False, 0, "stream"),
        (b"ping", False, 1, "stream"),
        (None, True, 2, "stream"),
    ]
    (record,) = vm.events.grpc_calls
    assert record.sent == [b"ping", b"ping"]
    assert record.received == [b"pong-0", b"pong-1", b"bye"]
    assert (record.outcome, record.local_closed, record.remote_closed) == (
        "ok",
        True,
        True,
    )
    # Closed both ways: the token is gone.
    assert call("send", token, 0) == 1


def test_stream_answers_keep_their_order():
    vm, call = streams()  # pong-N after 5 ms, then bye at once on the half-close
    call("open")
    call("send", 6, 0)
    call("send", 6, 0)
    call("close", 6)
    vm.advance(4)
    assert callbacks(vm.trace) == []
    vm.advance(1)
    assert said(vm) == ["hi", "pong-0", "pong-1", "bye", "done", ""]
    assert vm.events.grpc_calls[0].to_json()["latency_ms"] == 5.0


def test_send_with_end_stream_half_closes():
    seen = []
    vm, call = streams(lambda req: seen.append(req))
    call("open")
    assert call("send", 6, 1) == 0
    assert call("close", 6) == 0  # already half-closed: nothing more is sent
    assert [(r.message, r.end_stream) for r in seen] == [(b"ping", True)]
    assert vm.events.grpc_calls[0].local_closed


def test_trailers_only_stream_end():
    reply = GrpcReply(status=5, status_message="no such thing")
    vm, call = streams(lambda req: reply)
    call("open")
    call("send", 6, 0)
    vm.advance(0)
    # Envoy: empty initial metadata, everything in the trailing metadata.
    assert callbacks(vm.trace) == [
        ("receive_initial_metadata", 6, 0),
        ("receive_trailing_metadata", 6, 4),
        ("close", 6, 5),
    ]
    assert said(vm) == ["-", "-", "no such thing"]
    assert vm.events.grpc_calls[0].outcome == "error"


def test_server_end_keeps_the_stream_until_the_filter_closes_it():
    vm, call = streams(lambda req: GrpcReply((b"only",), status=0))
    call("open")
    call("send", 6, 0)
    vm.advance(0)
    assert [c[0] for c in callbacks(vm.trace)][-1] == "close"
    # Envoy keeps the stream until the filter closes it; sends go nowhere.
    assert call("send", 6, 0) == 0
    assert call("close", 6) == 0
    assert call("close", 6) == 1


def test_cancel_stops_every_callback():
    vm, call = streams()
    call("open")
    call("send", 6, 0)  # the answer comes after 5 ms
    assert call("cancel", 6) == 0
    vm.advance(100)
    assert callbacks(vm.trace) == []
    assert vm.events.grpc_calls[0].outcome == "cancelled"
    assert call("cancel", 6) == 1
    assert call("send", 6, 0) == 1


def test_cancel_inside_a_callback_stops_the_rest():
    vm, call = streams(lambda req: GrpcReply((b"a", b"b", b"c"), status=0))
    call("cancel_on_receive")
    call("open")
    call("send", 6, 0)
    vm.advance(0)
    assert [c[0] for c in callbacks(vm.trace)] == [
        "receive_initial_metadata",
        "receive",
    ]
    assert statuses(vm.trace, "proxy_grpc_cancel") == ["OK"]
    assert said(vm) == ["-", "a"]


def test_close_cancels_a_unary_call():
    vm, call = streams(lambda req: GrpcReply((b"x",), latency_ms=10))
    assert call("unary") == 0
    assert vm.mem.read_u32(600) == 5
    assert call("close", 5) == 0
    vm.advance(50)
    assert callbacks(vm.trace) == []
    assert vm.events.grpc_calls[0].outcome == "cancelled"


def test_token_classes_and_wrong_tokens():
    vm, call = streams()
    assert call("unary") == 0
    call_token = vm.mem.read_u32(600)
    assert call("open") == 0
    first_stream = vm.mem.read_u32(600)
    assert call("open") == 0
    second_stream = vm.mem.read_u32(600)
    assert call("unary") == 0
    second_call = vm.mem.read_u32(600)
    assert (call_token, second_call) == (5, 9)
    assert (first_stream, second_stream) == (6, 10)
    assert {t % 4 for t in (call_token, second_call)} == {1}
    assert {t % 4 for t in (first_stream, second_stream)} == {2}
    assert call("send", call_token, 0) == 2  # BAD_ARGUMENT: not a stream
    assert call("send", 4, 0) == 2  # an HTTP callout token
    assert call("send", 14, 0) == 1  # NOT_FOUND: a stream token never given
    assert call("close", 3) == 2
    assert call("cancel", 3) == 2
    assert call("close", 13) == 1
    assert call("cancel", 18) == 1


def test_message_and_metadata_exist_only_during_their_callbacks():
    vm, call = streams()
    assert call("read_message") == 1  # NOT_FOUND
    assert vm.events.grpc_message is None
    assert vm.events.reply_map(4) is None and vm.events.reply_map(5) is None


def test_deliveries_of_a_restarted_vm_are_dropped():
    vm, call = streams()
    call("open")
    call("send", 6, 0)
    vm.reload()
    vm.advance(10)
    assert callbacks(vm.trace) == []
    assert vm.invoke("send", (6, 0), vm.plugins[0].root) == 1  # NOT_FOUND


# --- responders and the upstream argument ------------------------------------------


def test_table_answers_streams_and_their_half_close():
    table = grpc_table_responder(
        {"echo": {"message": "pong"}, "echo svc/Stop": {"status": 9, "latency_ms": 3}}
    )
    assert table.clusters == {"echo"}

    def req(method="M", message=b"x"):
        return GrpcRequest(6, "stream", "echo", "svc", method, [], message, False, 0)

    assert table(req()) == GrpcReply((b"pong",))
    assert table(req(message=None)) == GrpcReply(status=0)
    assert table(req("Stop", None)) == GrpcReply(status=9, latency_ms=3)
    assert table(GrpcRequest(5, "call", "other", "s", "m", [], b"", True, 0)) is None


def test_replies_from_dicts_bytes_and_strings():
    assert as_reply(b"raw") == GrpcReply((b"raw",))
    assert as_reply("text") == GrpcReply((b"text",))
    assert as_reply(
        {
            "messages": [b"a", {"json": 1}],
            "status": 3,
            "status_message": "bad",
            "initial_metadata": {"X-A": "1"},
            "trailing_metadata": [("x-b", b"2")],
            "latency_ms": 7,
        }
    ) == GrpcReply(
        (b"a", b'{"json": 1}'),
        3,
        "bad",
        ((b"x-a", b"1"),),
        ((b"x-b", b"2"),),
        7.0,
    )
    assert GrpcReply(["m"], initial_metadata=[("X-A", "1")]) == GrpcReply(
        (b"m",), initial_metadata=((b"x-a", b"1"),)
    )
    with pytest.raises(ValueError, match="status_msg"):
        as_reply({"status_msg": "typo"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (grpc_service(b"auth"), ("envoy", "auth")),
        (grpc_service(b"h:1", field=2), ("google", "h:1")),
        (b"", ("", "")),
        (b"grpc_auth", None),  # 'g' is wire type 7: not a message
        (b"auth", None),  # a fixed64 field cut short
        (b"abcdefghi", ("", "")),  # a name that parses as a message (as in Envoy)
        (b"\x0a\x02\x0a\x05", None),  # a nested length past the end
        (b"\x08\x01", None),  # envoy_grpc with the wrong wire type
        (grpc_service(b"\xff"), None),  # cluster_name is not UTF-8
        (grpc_service(b"x") + b"\x1a\x00", ("envoy", "x")),  # with a timeout
    ],
)
def test_parse_grpc_service(raw, expected):
    assert parse_grpc_service(raw) == expected
