"""Network-level features through real SDK filters: TCP (Go) and gRPC calls (Rust).

* ``tests/data/filters/tcp_echo/go``: a network filter built with the Go SDK
  (``scripts/build-go.sh``). It logs every callback, counts the bytes of both
  sides, holds client data until a newline (then lets it through), rewrites
  "ping" to "PING", closes the connection when the client says "quit" and
  prepends "[wasm] " to what the upstream sends back.
* ``tests/data/filters/grpc_client/rust``: an HTTP filter built with the Rust
  SDK, proxy-wasm 0.2.2 (``scripts/build-rust.sh``). It asks ``pkg.Echo/Say``
  on the upstream named by its configuration (cluster ``grpc`` by default)
  about every request, then resumes it with ``x-grpc-said`` or denies it.

Both are built once per session and handed out compiled.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from wasmkit.abi.constants import PeerType, StreamType
from wasmkit.host import CompiledModule, compile_module, load, request, response
from wasmkit.host.grpc import GrpcReply, GrpcRequest, GrpcStatus

ROOT = Path(__file__).resolve().parent.parent
FILTERS = ROOT / "tests" / "data" / "filters"

GO = pytest.mark.toolchain("go")
CARGO = pytest.mark.toolchain("cargo")


def _build(script: str, source: Path, target: Path, what: str) -> CompiledModule:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / script), str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"building the {what} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
        )
    return compile_module(target)


@pytest.fixture(scope="session")
def tcp_echo_wasm(tmp_path_factory) -> CompiledModule:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (Go >= 1.24 builds proxy-wasm filters)")
    out = tmp_path_factory.mktemp("sdk-network") / "tcp_echo.wasm"
    return _build("build-go.sh", FILTERS / "tcp_echo" / "go", out, "tcp_echo Go filter")


@pytest.fixture(scope="session")
def grpc_client_wasm(tmp_path_factory) -> CompiledModule:
    if not Path("/usr/bin/rustc").exists() or not Path("/usr/bin/cargo").exists():
        pytest.skip(
            "Debian's rustc/cargo are not installed (apt-get install rustc cargo "
            "libstd-rust-dev-wasm32 lld)"
        )
    out = tmp_path_factory.mktemp("sdk-network") / "grpc_client.wasm"
    return _build(
        "build-rust.sh",
        FILTERS / "grpc_client" / "rust",
        out,
        "grpc_client Rust filter",
    )


# -- helpers ---------------------------------------------------------------------


def messages(records, context_id: int | None = None) -> list[str]:
    return [
        r.message
        for r in records
        if r.source == "proxy_log" and context_id in (None, r.context_id)
    ]


def callbacks(trace) -> list[str]:
    # Allocations are the SDK's business, not the connection's.
    return [
        t.name
        for t in trace
        if t.kind == "callback" and t.name != "proxy_on_memory_allocate"
    ]


def hostcalls(trace, name: str) -> list[tuple[dict, str]]:
    return [
        (t.args, t.result) for t in trace if t.kind == "hostcall" and t.name == name
    ]


def data_args(trace, name: str) -> list[tuple[int, int]]:
    return [
        (t.args["data_size"], t.args["end_of_stream"])
        for t in trace
        if t.kind == "callback" and t.name == name
    ]


END = ["proxy_on_done", "proxy_on_log", "proxy_on_delete"]

# =================================================================================
# 1. Go SDK network filter
# =================================================================================


@GO
def test_go_tcp_echo_rewrites_both_directions_in_envoys_callback_order(tcp_echo_wasm):
    plugin = load(tcp_echo_wasm)
    asked: list[bytes] = []

    def echo(forwarded: bytes) -> list[bytes]:
        asked.append(forwarded)
        return [forwarded, b"bye\n"]

    result = plugin.run_tcp([b"ping\n"], echo)
    assert result.ok and result.stalled is None and result.notes == []
    # Client -> upstream: "ping" became "PING"; the upstream echoed it back.
    assert result.downstream_before == b"ping\n"
    assert result.downstream_after == b"PING\n"
    assert asked == [b"PING\n"]
    # Upstream -> client: every chunk got the prefix.
    assert result.upstream_before == b"PING\nbye\n"
    assert result.upstream_after == b"[wasm] PING\n[wasm] bye\n"
    assert result.closed_by == "client"
    assert result.downstream_close is PeerType.REMOTE
    assert result.upstream_close is PeerType.UNKNOWN  # synthesised from end_of_stream
    assert callbacks(result.trace) == [
        "proxy_on_context_create",
        "proxy_on_new_connection",
        "proxy_on_downstream_data",
        "proxy_on_upstream_data",
        "proxy_on_upstream_data",
        "proxy_on_upstream_connection_close",
        "proxy_on_downstream_connection_close",
        *END,
    ]
    assert data_args(result.trace, "proxy_on_upstream_data") == [(5, 0), (4, 1)]
    # The SDK's ReplaceDownstreamData is (start 0, size MaxInt32); its
    # PrependUpstreamData is (start 0, size 0): both forms Envoy supports.
    edits = [
        (a["buffer_type"], a["start"], a["size"], a["data"], status)
        for a, status in hostcalls(result.trace, "proxy_set_buffer_bytes")
    ]
    assert edits == [
        ("downstream_data", 0, 2**31 - 1, b"PING\n", "OK"),
        ("upstream_data", 0, 0, b"[wasm] ", "OK"),
        ("upstream_data", 0, 0, b"[wasm] ", "OK"),
    ]
    cid = result.context_id
    assert messages(result.logs) == [
        f"tcp: new connection #1 (context {cid})",
        "tcp: downstream data size=5 new=5 eos=false",
        "tcp: replaced ping with PING",
        "tcp: upstream data size=5 eos=false",
        "tcp: upstream data size=4 eos=true",
        "tcp: upstream closed (peer unknown)",
        "tcp: downstream closed (peer remote)",
        "tcp: done #1: client sent 5 bytes in 1 chunks, "
        "upstream sent 9 bytes in 2 chunks",
    ]
    assert {r.context_id for r in result.logs} == {cid}


@GO
def test_go_tcp_holds_client_data_until_a_newline(tcp_echo_wasm):
    plugin = load(tcp_echo_wasm)
    stream = plugin.tcp_stream()
    ctx = stream.ctx
    assert ctx is not None
    stream.downstream_data(b"hel")
    # Paused: the bytes stay at the filter, nothing went upstream.
    assert ctx.downstream.stopped
    assert bytes(ctx.downstream.buffer) == b"hel"
    assert bytes(ctx.downstream.forwarded) == b""
    stream.downstream_data(b"lo ping")
    assert ctx.downstream.stopped
    assert bytes(ctx.downstream.buffer) == b"hello ping"
    # The newline releases the whole line (rewritten) at once.
    stream.downstream_data(b"\n")
    assert not ctx.downstream.stopped
    assert bytes(ctx.downstream.forwarded) == b"hello PING\n"
    assert bytes(ctx.downstream.buffer) == b""
    # A complete line passes straight through.
    stream.downstream_data(b"next\n")
    assert bytes(ctx.downstream.forwarded) == b"hello PING\nnext\n"
    stream.upstream_data(b"ok\n", end_of_stream=True)
    result = stream.finish()
    assert result.ok and result.stalled is None
    assert result.downstream_before == b"hello ping\nnext\n"
    assert result.downstream_after == b"hello PING\nnext\n"
    assert result.upstream_after == b"[wasm] ok\n"
    # Envoy hands the filter the grown buffer while it pauses.
    assert data_args(result.trace, "proxy_on_downstream_data") == [
        (3, 0),
        (10, 0),
        (11, 0),
        (5, 0),
    ]
    logs = messages(result.logs)
    assert logs[1:10] == [
        "tcp: downstream data size=3 new=3 eos=false",
        "tcp: no newline yet: holding 3 bytes",
        "tcp: downstream data size=10 new=7 eos=false",
        "tcp: no newline yet: holding 10 bytes",
        "tcp: downstream data size=11 new=1 eos=false",
        "tcp: replaced ping with PING",
        "tcp: newline seen: releasing 11 bytes",
        "tcp: downstream data size=5 new=5 eos=false",
        "tcp: upstream data size=3 eos=true",
    ]
    assert logs[-1] == (
        "tcp: done #1: client sent 16 bytes in 4 chunks, "
        "upstream sent 3 bytes in 1 chunks"
    )


@GO
def test_go_tcp_end_of_stream_flushes_held_data(tcp_echo_wasm):
    result = load(tcp_echo_wasm).run_tcp(
        [b"no new", b"line ping"], b"fine", downstream_end=True
    )
    assert result.ok and result.stalled is None
    assert data_args(result.trace, "proxy_on_downstream_data") == [(6, 0), (15, 1)]
    assert result.downstream_after == b"no newline PING"
    assert result.upstream_after == b"[wasm] fine"
    assert "tcp: no newline yet: holding 6 bytes" in messages(result.logs)


@GO
def test_go_tcp_quit_closes_the_connection(tcp_echo_wasm):
    result = load(tcp_echo_wasm).run_tcp(
        [b"ping\n", b"qu", b"it\n", b"more\n"], b"never asked"
    )
    assert result.ok
    assert result.closed_by == "filter"
    assert result.filter_closed is StreamType.DOWNSTREAM
    assert result.downstream_close is PeerType.LOCAL
    # The line before went through; "quit" (held, then closed on) did not.
    assert result.downstream_after == b"PING\n"
    assert result.downstream_held == b"quit\n"
    assert result.downstream_before == b"ping\nquit\n"
    # The connection is gone: the upstream never answered, later data dropped.
    assert result.upstream_before == b""
    assert result.upstream_close is None
    assert result.notes == [
        "the filter closed the connection (DOWNSTREAM) in proxy_on_downstream_data",
        "5 downstream bytes after the connection closed: dropped",
    ]
    assert [
        (a["stream_type"], status)
        for a, status in hostcalls(result.trace, "proxy_close_stream")
    ] == [("downstream", "OK")]
    # The close comes after the callback that asked for it returned.
    assert callbacks(result.trace)[-6:] == [
        "proxy_on_downstream_data",
        "proxy_on_downstream_data",
        "proxy_on_downstream_connection_close",
        *END,
    ]
    assert messages(result.logs)[-4:] == [
        "tcp: downstream data size=5 new=3 eos=false",
        "tcp: the client said quit: closing the connection",
        "tcp: downstream closed (peer local)",
        "tcp: done #1: client sent 10 bytes in 3 chunks, "
        "upstream sent 0 bytes in 0 chunks",
    ]


@GO
def test_go_tcp_client_gone_while_data_is_held(tcp_echo_wasm):
    plugin = load(tcp_echo_wasm)
    result = plugin.run_tcp([b"partial"], b"never asked", wait_ms=50)
    assert result.ok
    assert result.stalled == "downstream data"
    assert result.downstream_held == b"partial"
    assert result.downstream_after == b"" and result.upstream_before == b""
    assert result.notes == [
        "the client data stayed paused: the upstream never answered"
    ]
    assert result.closed_by == "client"
    assert "proxy_on_upstream_data" not in callbacks(result.trace)
    assert messages(result.logs)[-2:] == [
        "tcp: downstream closed (peer remote)",
        "tcp: done #1: client sent 7 bytes in 1 chunks, "
        "upstream sent 0 bytes in 0 chunks",
    ]


@GO
def test_go_tcp_proxy_close_without_an_upstream_end(tcp_echo_wasm):
    result = load(tcp_echo_wasm).run_tcp(
        [b"hi\n"], [b"a", b"b"], upstream_end=False, close=PeerType.LOCAL
    )
    assert result.ok
    assert result.closed_by == "proxy"
    assert result.downstream_close is PeerType.LOCAL
    assert result.upstream_close is None
    assert data_args(result.trace, "proxy_on_upstream_data") == [(1, 0), (1, 0)]
    assert result.upstream_after == b"[wasm] a[wasm] b"
    logs = messages(result.logs)
    assert "tcp: downstream closed (peer local)" in logs
    assert not [m for m in logs if m.startswith("tcp: upstream closed")]
    assert callbacks(result.trace)[-4:] == [
        "proxy_on_downstream_connection_close",
        *END,
    ]


@GO
def test_go_tcp_interleaved_connections_keep_their_own_state(tcp_echo_wasm):
    plugin = load(tcp_echo_wasm)
    first = plugin.tcp_stream()
    second = plugin.tcp_stream()
    assert first.ctx is not None and second.ctx is not None
    assert first.ctx.id != second.ctx.id
    first.downstream_data(b"one ")
    second.downstream_data(b"two ping\n")
    first.downstream_data(b"ping\n")
    second.upstream_data(b"to two", end_of_stream=True)
    first.upstream_data(b"to one", end_of_stream=True)
    a = first.finish()
    b = second.finish()
    assert a.ok and b.ok
    assert (a.downstream_after, a.upstream_after) == (b"one PING\n", b"[wasm] to one")
    assert (b.downstream_after, b.upstream_after) == (b"two PING\n", b"[wasm] to two")
    # The logs of a connection carry its context id (results of interleaved
    # connections overlap in time, so filter by it).
    assert messages(a.logs, a.context_id)[-1] == (
        "tcp: done #1: client sent 9 bytes in 2 chunks, "
        "upstream sent 6 bytes in 1 chunks"
    )
    assert messages(b.logs, b.context_id)[-1] == (
        "tcp: done #2: client sent 9 bytes in 1 chunks, "
        "upstream sent 6 bytes in 1 chunks"
    )
    assert "tcp: no newline yet: holding 4 bytes" in messages(a.logs, a.context_id)
    assert "tcp: no newline yet: holding 4 bytes" not in messages(b.logs, b.context_id)


# =================================================================================
# 2. Rust SDK gRPC client filter
# =================================================================================


def said(result) -> bytes | None:
    values = [v for k, v in result.request_after.headers if k == b"x-grpc-said"]
    return values[-1] if values else None


def grpc_callbacks(trace) -> list[tuple]:
    return [
        (t.name.removeprefix("proxy_on_grpc_"), *list(t.args.values()))
        for t in trace
        if t.kind == "callback" and t.name.startswith("proxy_on_grpc")
    ]


def grpc_service(cluster: bytes, field: int = 1) -> bytes:
    """A serialized GrpcService: envoy_grpc (1) or google_grpc (2) naming ``cluster``."""
    inner = b"\x0a" + bytes([len(cluster)]) + cluster
    return bytes([field << 3 | 2, len(inner)]) + inner


@CARGO
def test_rust_grpc_ok_resumes_the_request_with_the_answer(grpc_client_wasm):
    seen: list[GrpcRequest] = []

    def responder(req: GrpcRequest) -> GrpcReply:
        seen.append(req)
        return GrpcReply((b"\x0a\x05hello",))

    plugin = load(grpc_client_wasm, grpc_responder=responder, clusters=["grpc"])
    result = plugin.run_http(
        request("GET", "http://h/x", [("x-say", "hi"), ("x-request-id", "r-1")]),
        response(200, [("k", "v")], "upstream body"),
    )
    assert result.error is None and result.local_reply is None
    assert result.request_forwarded
    assert said(result) == b"hello"
    assert result.response_after.status == 200
    assert result.response_after.body == b"upstream body"
    (req,) = seen
    assert (req.kind, req.cluster, req.path) == ("call", "grpc", "/pkg.Echo/Say")
    assert req.metadata == [(b"x-request-id", b"r-1"), (b"x-caller", b"grpc_client")]
    assert (req.message, req.end_stream, req.index) == (b"\x0a\x02hi", True, 0)
    (call,) = plugin.vm.events.grpc_calls
    assert call.token == req.token and call.token & 3 == 1  # a unary call's token
    assert call.context_id == result.context_id
    assert call.root_id == plugin.root.id
    assert (call.timeout_ms, call.outcome, call.status) == (500, "ok", 0)
    assert call.received == [b"\x0a\x05hello"]
    # Envoy's unary client: the answer goes to the root context, message only.
    assert grpc_callbacks(result.trace) == [("receive", plugin.root.id, call.token, 7)]
    names = callbacks(result.trace)
    assert names.index("proxy_on_request_headers") < names.index(
        "proxy_on_grpc_receive"
    )
    assert names.index("proxy_on_grpc_receive") < names.index(
        "proxy_on_response_headers"
    )
    # The SDK routes the answer to the HTTP context that made the call.
    assert hostcalls(result.trace, "proxy_set_effective_context") == [
        ({"context_id": result.context_id}, "OK")
    ]
    assert messages(result.logs) == [
        f'grpc: context {result.context_id} sent token {call.token} to "grpc": "hi"',
        f'grpc: call {call.token} answered after 0 ms: 7 bytes, said "hello"',
    ]


@CARGO
def test_rust_grpc_sends_the_path_and_takes_a_raw_answer_as_text(grpc_client_wasm):
    plugin = load(
        grpc_client_wasm,
        grpc_responder={"grpc pkg.Echo/Say": {"message": "plain text"}},
    )
    result = plugin.run_http(request("GET", "http://h/a/b?c=d"), response(204))
    assert result.request_forwarded
    assert said(result) == b"plain text"
    (call,) = plugin.vm.events.grpc_calls
    assert call.sent == [b"\x0a\x08/a/b?c=d"]
    # The request id Envoy's connection manager gave the request.
    rid = result.request_before.get(b"x-request-id")
    assert rid is not None and len(rid) == 36
    assert call.metadata == [(b"x-request-id", rid), (b"x-caller", b"grpc_client")]
    assert result.response_after.status == 204


@CARGO
@pytest.mark.parametrize(
    ("answer", "status", "text"),
    [
        ({"status": 7, "status_message": "nope"}, 7, "nope"),
        # Envoy's unary client: OK without a response message is INTERNAL.
        ({"status": 0}, GrpcStatus.INTERNAL, ""),
    ],
    ids=["permission denied", "ok without a message"],
)
def test_rust_grpc_error_status_denies_with_403(grpc_client_wasm, answer, status, text):
    plugin = load(grpc_client_wasm, grpc_responder={"grpc": answer})
    result = plugin.run_http(request("GET", "http://h/x"), response(200, [], "never"))
    assert result.error is None
    assert not result.request_forwarded and result.response_before is None
    assert result.response_after.status == 403
    assert (
        b"x-grpc-status",
        str(int(status)).encode(),
    ) in result.response_after.headers
    assert (
        result.response_after.body
        == f"denied: grpc status {int(status)}: {text}".encode()
    )
    assert result.local_reply.callback == "proxy_on_grpc_close"
    (call,) = plugin.vm.events.grpc_calls
    assert grpc_callbacks(result.trace) == [
        ("close", plugin.root.id, call.token, int(status))
    ]
    # get_grpc_status, inside the callback, reads the status and its message.
    assert [r for _, r in hostcalls(result.trace, "proxy_get_status")] == ["OK"]
    assert messages(result.logs)[-1] == (
        f"grpc: call {call.token} failed after 0 ms: status {int(status)} "
        f'(get_grpc_status: {int(status)} "{text}")'
    )
    assert (call.outcome, call.status) == ("error", status)


@CARGO
@pytest.mark.parametrize(
    "answer",
    [None, GrpcReply((b"\x0a\x04late",), latency_ms=800)],
    ids=["no answer", "too late"],
)
def test_rust_grpc_timeout_denies_after_500_ms(grpc_client_wasm, answer):
    plugin = load(grpc_client_wasm, grpc_responder=lambda req: answer, clusters=["grpc"])
    start = plugin.vm.clock.now_ns()
    result = plugin.run_http(request("GET", "http://h/x"), response())
    assert plugin.vm.clock.now_ns() - start == 500_000_000
    assert result.response_after.status == 403
    assert (b"x-grpc-status", b"4") in result.response_after.headers
    assert result.response_after.body == (
        b"denied: grpc status 4: upstream request timeout"
    )
    (call,) = plugin.vm.events.grpc_calls
    assert (call.outcome, call.status) == ("timeout", GrpcStatus.DEADLINE_EXCEEDED)
    assert call.received == []  # the late answer never reaches the filter
    assert grpc_callbacks(result.trace) == [("close", plugin.root.id, call.token, 4)]
    assert messages(result.logs)[-1] == (
        f"grpc: call {call.token} failed after 500 ms: status 4 "
        '(get_grpc_status: 4 "upstream request timeout")'
    )


@CARGO
def test_rust_grpc_latency_moves_the_virtual_clock(grpc_client_wasm):
    reply = GrpcReply((b"\x0a\x04slow",), latency_ms=40)
    plugin = load(grpc_client_wasm, grpc_responder={"grpc": reply})
    start = plugin.vm.clock.now_ns()
    result = plugin.run_http(request("GET", "http://h/x"), response())
    assert result.request_forwarded and said(result) == b"slow"
    assert plugin.vm.clock.now_ns() - start == 40_000_000
    (call,) = plugin.vm.events.grpc_calls
    assert call.to_json()["latency_ms"] == 40.0
    # The filter's own clock (proxy_get_current_time_nanoseconds) agrees.
    assert messages(result.logs)[-1] == (
        f'grpc: call {call.token} answered after 40 ms: 6 bytes, said "slow"'
    )


@CARGO
def test_rust_grpc_concurrent_calls_are_answered_in_latency_order(grpc_client_wasm):
    def responder(req: GrpcRequest) -> GrpcReply:
        latency = {b"\x0a\x04slow": 100, b"\x0a\x04fast": 30}[req.message]
        return GrpcReply((req.message,), latency_ms=latency)

    plugin = load(grpc_client_wasm, grpc_responder=responder, clusters=["grpc"])
    slow = plugin.http_stream()
    slow.send_message(
        StreamType.HTTP_REQUEST, request("GET", "http://h/1", [("x-say", "slow")])
    )
    fast = plugin.http_stream()
    fast.send_message(
        StreamType.HTTP_REQUEST, request("GET", "http://h/2", [("x-say", "fast")])
    )
    assert not slow.request_complete() and not fast.request_complete()
    plugin.vm.advance(30)
    assert fast.request_complete() and not slow.request_complete()
    plugin.vm.advance(70)
    assert slow.request_complete()
    for stream in (slow, fast):
        stream.send_message(StreamType.HTTP_RESPONSE, response(200, [], "ok"))
    a, b = slow.finish(), fast.finish()
    assert (said(a), said(b)) == (b"slow", b"fast")
    tokens = [c.token for c in plugin.vm.events.grpc_calls]
    assert len(set(tokens)) == 2
    assert [c.context_id for c in plugin.vm.events.grpc_calls] == [
        a.context_id,
        b.context_id,
    ]


@CARGO
def test_rust_grpc_answer_for_a_finished_stream_is_dropped_by_the_sdk(grpc_client_wasm):
    reply = GrpcReply((b"\x0a\x04late",), latency_ms=100)
    plugin = load(grpc_client_wasm, grpc_responder={"grpc": reply})
    stream = plugin.http_stream()
    stream.send_message(StreamType.HTTP_REQUEST, request("GET", "http://h/x"))
    gone = stream.finish()
    assert gone.stalled == "request headers"
    # The call belongs to the root context, so it outlives the stream; the SDK
    # finds no HTTP context for it any more and drops the answer.
    plugin.vm.advance(100)
    (call,) = plugin.vm.events.grpc_calls
    assert call.outcome == "ok" and call.received == [b"\x0a\x04late"]
    assert plugin.vm.failed is None
    assert not [m for m in messages(plugin.vm.logs) if "answered" in m]
    # The plugin still serves new requests.
    again = plugin.run_http(request("GET", "http://h/y"), response())
    assert again.error is None and said(again) == b"late"


@CARGO
@pytest.mark.parametrize(
    ("responder", "config", "status", "reason"),
    [
        # Envoy: not a GrpcService and no cluster of that name.
        ({"other": "x"}, b"", "PARSE_FAILURE", b"ParseFailure"),
        (None, b"", "PARSE_FAILURE", b"ParseFailure"),
        ({"grpc": "x"}, b"nowhere", "PARSE_FAILURE", b"ParseFailure"),
        # A GrpcService naming an unknown cluster: Envoy skips the cluster
        # check, then cannot start the request.
        (
            {"grpc": "x"},
            grpc_service(b"elsewhere"),
            "INTERNAL_FAILURE",
            b"InternalFailure",
        ),
    ],
    ids=["table without it", "no responder", "configured name", "grpc service"],
)
def test_rust_grpc_unknown_upstream_is_answered_with_a_503(
    grpc_client_wasm, responder, config, status, reason
):
    plugin = load(grpc_client_wasm, grpc_responder=responder, config=config)
    result = plugin.run_http(request("GET", "http://h/x"), response(200, [], "never"))
    # proxy-wasm 0.2.2 returns these two as Err(Status): no panic.
    assert result.error is None
    assert [r for _, r in hostcalls(result.trace, "proxy_grpc_call")] == [status]
    assert plugin.vm.events.grpc_calls == []
    assert not result.request_forwarded
    assert result.response_after.status == 503
    assert (b"x-grpc-error", reason) in result.response_after.headers
    assert result.response_after.body == b"grpc service unavailable"
    assert result.local_reply.callback == "proxy_on_request_headers"
    assert messages(result.logs)[-1].endswith(reason.decode())


@CARGO
def test_rust_grpc_upstream_given_as_a_grpc_service(grpc_client_wasm):
    plugin = load(
        grpc_client_wasm,
        grpc_responder={"grpc": "\x0a\x04sure", "dns:///echo:443": "direct"},
        config=grpc_service(b"grpc"),
    )
    result = plugin.run_http(request("GET", "http://h/x"), response())
    assert said(result) == b"sure"
    assert plugin.vm.events.grpc_calls[0].cluster == "grpc"
    google = load(
        grpc_client_wasm,
        grpc_responder={"dns:///echo:443": "direct"},
        config=grpc_service(b"dns:///echo:443", field=2),
    )
    result = google.run_http(request("GET", "http://h/x"), response())
    assert said(result) == b"direct"


@CARGO
def test_rust_grpc_other_dispatch_statuses_panic_in_the_sdk(grpc_client_wasm):
    # A GrpcService without a target: the host answers BAD_ARGUMENT (modern
    # Envoy, when it cannot make a client). proxy-wasm 0.2.2 maps only
    # ParseFailure and InternalFailure to Err and panics on anything else.
    plugin = load(grpc_client_wasm, grpc_responder={"grpc": "x"}, config=b"\x1a\x00")
    result = plugin.run_http(request("GET", "http://h/x"), response())
    assert [r for _, r in hostcalls(result.trace, "proxy_grpc_call")] == [
        "BAD_ARGUMENT"
    ]
    err = result.error
    assert err is not None and err.kind == "trap"
    assert err.callback == "proxy_on_request_headers"
    assert "panicked at 'unexpected status: 2'" in str(err)
    assert any(
        "proxy_wasm::hostcalls::dispatch_grpc_call" in f for f in err.wasm_backtrace
    )
    # Fail-closed: the client gets a 503, the upstream is never asked.
    assert not result.request_forwarded
    assert result.response_after.status == 503
    assert plugin.vm.events.grpc_calls == []


@CARGO
@pytest.mark.parametrize("grpc_request", [False, True], ids=["plain", "grpc"])
def test_rust_grpc_panic_reply_follows_envoys_local_reply_rules(
    grpc_client_wasm, grpc_request
):
    plugin = load(grpc_client_wasm, grpc_responder={"grpc": "x"}, config=b"\x1a\x00")
    headers = [("content-type", "application/grpc")] if grpc_request else []
    result = plugin.run_http(request("POST", "http://h/pkg.S/M", headers), response())
    assert result.error is not None
    reply = result.response_after
    if grpc_request:
        assert reply.status == 200
        assert (b"content-type", b"application/grpc") in reply.headers
        assert (b"grpc-status", b"14") in reply.headers
    else:
        assert reply.status == 503
        assert not [k for k, _ in reply.headers if k == b"grpc-status"]
