"""The local servers and the wire helpers, without Envoy."""

from __future__ import annotations

import io
import socket

import pytest

import wasmkit.envoy
from wasmkit.envoy import CalloutServer, UpstreamServer, _http1, bootstrap
from wasmkit.envoy.collector import parse_line
from wasmkit.envoy.config import WasmFilterConfig
from wasmkit.envoy.sender import request_bytes
from wasmkit.host.callouts import table_responder
from wasmkit.traffic import Headers, Request, Response


def test_all_is_sorted():
    assert wasmkit.envoy.__all__ == sorted(wasmkit.envoy.__all__)
    for name in wasmkit.envoy.__all__:
        assert hasattr(wasmkit.envoy, name)


def test_chunked_bodies_and_trailers_roundtrip():
    raw = _http1.encode(
        b"POST /x HTTP/1.1",
        [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")],
        b"hello",
        [(b"x-t", b"1")],
    )
    wire = _http1.read_request(io.BytesIO(raw))
    assert wire is not None
    assert (wire.body, wire.trailers, wire.chunked) == (
        b"hello",
        [(b"x-t", b"1")],
        True,
    )
    message = _http1.request_message(wire, b"http")
    assert message.headers[:4] == [
        (b":authority", b"h"),
        (b":path", b"/x"),
        (b":method", b"POST"),
        (b":scheme", b"http"),
    ]


def test_responses_without_framing_run_to_the_close():
    raw = b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nall of it"
    wire = _http1.read_response(io.BytesIO(raw), b"GET")
    assert wire.body == b"all of it" and wire.fields == [(b"X-A", b"1")]
    head = _http1.read_response(io.BytesIO(b"HTTP/1.1 200 OK\r\n\r\n"), b"HEAD")
    assert head.body == b""


def test_requests_go_out_as_captured():
    request = Request(
        "POST",
        "http",
        "example.com",
        80,
        "/p?q=1",
        headers=Headers([(b"X-Dup", b"a"), (b"x-dup", b"b")]),
        body=b"abc",
    )
    raw = request_bytes(request)
    assert raw.startswith(b"POST /p?q=1 HTTP/1.1\r\nHost: example.com\r\n")
    assert b"X-Dup: a\r\nx-dup: b\r\ncontent-length: 3\r\n\r\nabc" in raw


def test_the_upstream_answers_by_order_and_records():
    captured = Response(
        201, "Created", headers=Headers([(b"Content-Length", b"2")]), body=b"ok"
    )
    with UpstreamServer() as upstream:
        upstream.expect(7, captured)
        with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
            sock.sendall(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
            wire = _http1.read_response(sock.makefile("rb"), b"GET")
        assert wire.start[1] == b"201" and wire.body == b"ok"
        assert wire.fields == [(b"Content-Length", b"2")]
        (got,) = upstream.received(7)
        assert got.start == (b"GET", b"/a", b"HTTP/1.1")


def test_a_flow_without_response_is_answered_by_a_close():
    with UpstreamServer() as upstream:
        upstream.expect(0, None)
        with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            with pytest.raises(_http1.WireError):
                _http1.read_response(sock.makefile("rb"), b"GET")


def test_callout_server_answers_from_a_table():
    seen = []
    table = table_responder({"auth /check": {"status": 204}, "auth": {"fail": True}})
    with CalloutServer("auth", table, seen.append) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /check HTTP/1.1\r\nHost: auth\r\n\r\n")
            wire = _http1.read_response(sock.makefile("rb"), b"GET")
        assert wire.start[1] == b"204"
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /other HTTP/1.1\r\nHost: auth\r\n\r\n")
            assert sock.makefile("rb").read() == b""
    assert [(c.path, c.outcome) for c in seen] == [
        ("/check", "response"),
        ("/other", "failure"),
    ]


def test_the_bootstrap_names_the_filter_and_clusters(tmp_path):
    wasm = WasmFilterConfig(
        tmp_path / "f.wasm",
        root_id="r",
        configuration=b"\xff",
        failure_policy="fail_open",
    )
    config = bootstrap(wasm, upstream_port=1, callout_ports={"auth": 2})
    text = str(config)
    assert "envoy.wasm.runtime.v8" in text and "FAIL_OPEN" in text
    assert "google.protobuf.BytesValue" in text  # not UTF-8
    names = [c["name"] for c in config["static_resources"]["clusters"]]
    assert names == ["wasmkit_upstream", "auth"]
    with pytest.raises(ValueError):
        bootstrap(wasm, upstream_port=1, callout_ports={"wasmkit_upstream": 2})


def test_log_lines_parse():
    line = parse_line(3, "@wk|warning|wasm|wasm log a b c: it\\nbroke\n")
    assert (line.level.label, line.logger, line.message) == (
        "warn",
        "wasm",
        "wasm log a b c: it\nbroke",
    )
    assert parse_line(0, "raw crash text").level is None


def test_escaped_bytes_come_back_as_the_host_decodes_them():
    # --log-format-escaped writes bytes outside printable ASCII as octal
    # (absl::CEscape); the message is those bytes decoded as UTF-8 with
    # replacement, as wasmkit decodes a filter's log message.
    raw = b'bin: \xc2\xbf\x00\x7f\xff \\ "q" tab\tend'
    escaped = "".join(
        {"\\": "\\\\", '"': '\\"', "\t": "\\t"}.get(chr(b), chr(b))
        if 0x20 <= b < 0x7F or b == 0x09
        else f"\\{b:03o}"
        for b in raw
    )
    line = parse_line(0, f"@wk|info|wasm|wasm log a b c: {escaped}\n")
    assert line.message == "wasm log a b c: " + raw.decode("utf-8", "replace")
