"""The same probe filter through wasmkit and through a real Envoy 1.40.

The probe (tests/host/probe.py) logs every header it sees on each path; each
test runs the same exchanges through wasmkit's connection manager model and
through Envoy, and asserts the same view of the request path, of what the
upstream received, of the response path and of what the client got. Only
values Envoy draws at random or from the wall clock (``x-request-id``,
``x-envoy-upstream-service-time``, ``date``) are compared by form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.host.probe import PROBE_WAT, View, view
from wasmkit.envoy import EnvoyRunner
from wasmkit.host import ConnectionManager, load
from wasmkit.host.message import HttpMessage
from wasmkit.replay.engine import FlowRunner, ReplayOptions
from wasmkit.replay.results import FlowResult
from wasmkit.traffic.model import Exchange, Headers, Request, Response

from .conftest import wat

# Envoy's defaults. (Envoy's listener in wasmkit.envoy is plain text; the
# runner hands a TLS flow's scheme to Envoy as x-forwarded-proto.)
CM = ConnectionManager()
UUID4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
_DRAWN = {
    "x-request-id": UUID4,
    "x-envoy-upstream-service-time": re.compile(r"\d+"),
    "date": re.compile(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT"),
}


@pytest.fixture(scope="module")
def probe_envoy() -> Iterator[EnvoyRunner]:
    with EnvoyRunner(wat(PROBE_WAT)) as runner:
        yield runner


def _value(name: str, value: str) -> str:
    pattern = _DRAWN.get(name)
    if pattern is None or (name == "x-request-id" and not UUID4.fullmatch(value)):
        return value  # a client's own request id is compared as it is
    assert pattern.fullmatch(value), (name, value)
    return f"<{name}>"


def _headers(pairs) -> list[tuple[str, str]]:
    out = []
    for k, v in pairs:
        name = k.decode() if isinstance(k, bytes) else k
        text = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
        out.append((name, _value(name, text)))
    return out


def _seen(v: View) -> dict[str, object]:
    # Header views exactly, and the body callbacks one by one: Envoy reads a
    # small body in one go, then its HTTP/1 codec ends it with an empty
    # end-of-stream frame of its own. A large body comes in as many pieces
    # as the socket reads gave (not deterministic): its total, and the end.
    out: dict[str, object] = {
        tag: _headers(pairs) for tag, pairs in v.headers.items() if tag[2] in "ht"
    }
    for tag in ("rqh", "rsh", "rqb", "rsb"):
        lines = v.counts.get(tag)
        if lines and tag[2] == "b":
            sizes = [int(line.split()[0][5:]) for line in lines]
            if sum(sizes) > SMALL_BODY:
                out[tag + " counts"] = (sum(sizes), lines[-1])
                continue
        out[tag + " counts"] = lines
    return out


# Bodies up to this size came in one read on loopback in every run of these
# tests (the 1 MiB flow of the sample capture comes in two or more).
SMALL_BODY = 16 * 1024


def _message(m: HttpMessage | None):
    if m is None:
        return None
    return (_headers(m.headers), m.body, m.trailers and _headers(m.trailers))


def _sides(flow: FlowResult, *, envoy: bool):
    r = flow.result
    seen = view(log.message for log in r.logs)
    if envoy:
        # What crossed the wire: the upstream's request, the client's response.
        return _seen(seen), _message(r.request_after), _message(r.response_after)
    return _seen(seen), _message(r.upstream_request), _message(r.client_response)


def same(runner: EnvoyRunner, exchanges, cm: ConnectionManager = CM):
    """Run ``exchanges`` through both; assert every side is the same."""
    local = FlowRunner(load(PROBE_WAT), ReplayOptions(connection_manager=cm))
    results = []
    for exchange in exchanges:
        ours = local.run(exchange)
        theirs = runner.run(exchange)
        a, b = _sides(ours, envoy=False), _sides(theirs, envoy=True)
        for what, x, y in zip(
            ("the filter's view", "upstream", "client"), a, b, strict=True
        ):
            assert x == y, f"flow {exchange.index}: {what} differs"
        results.append((ours, theirs))
    return results


def ex(i, method="GET", req=(), body=b"", status=200, resp=(), rbody=b"", error=None):
    headers = Headers(
        [(b"Host", b"upstream.test"), *((k.encode(), v.encode()) for k, v in req)]
    )
    response = None
    if error is None:
        response = Response(
            status,
            "OK",
            headers=Headers([(k.encode(), v.encode()) for k, v in resp]),
            body=rbody,
        )
    return Exchange(
        i,
        Request(method, "http", "upstream.test", 80, "/", headers=headers, body=body),
        response,
        error=error,
    )


def test_plain_flows(probe_envoy, exchanges):
    # Every flow of the sample capture: x-forwarded-proto and x-request-id on
    # the request path, x-envoy-expected-rq-timeout-ms upstream, the router's
    # x-envoy-upstream-service-time on the response path, server and date for
    # the client; the refused flow gets the router's 503.
    pairs = same(probe_envoy, exchanges)
    ours, _ = pairs[0]
    assert ours.result.request_before.get(b"x-forwarded-proto") == b"http"
    assert (
        ours.result.upstream_request.get(b"x-envoy-expected-rq-timeout-ms") == b"15000"
    )
    assert ours.result.client_response.get(b"server") == b"envoy"
    refused, theirs = pairs[12]
    assert refused.result.client_response.body.endswith(
        b"reset reason: remote connection failure"
    )
    assert theirs.result.response_after.get(b"content-length") == b"98"
    no_content, _ = pairs[3]
    assert no_content.result.response_before.status == 204
    secure, _ = pairs[16]
    assert exchanges[16].tls
    assert secure.result.request_before.get(b"x-forwarded-proto") == b"https"


def test_the_scheme_knob(probe_envoy, exchanges):
    # scheme="http": a TLS flow is seen as plain text, as Envoy's listener is.
    plain = replace(CM, scheme="http")
    with EnvoyRunner(wat(PROBE_WAT), connection_manager=plain) as runner:
        ((ours, _),) = same(runner, [exchanges[16]], plain)
    assert ours.result.request_before.get(b"x-forwarded-proto") == b"http"
    assert ours.result.request_before.get(b":scheme") == b"http"


def test_hop_by_hop_headers(probe_envoy):
    same(
        probe_envoy,
        [
            ex(
                0,
                req=(
                    ("Connection", "keep-alive, x-foo"),
                    ("x-foo", "1"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Connection", "keep-alive"),
                    ("TE", "trailers"),
                    ("x-bar", "2"),
                ),
                resp=(
                    ("Content-Length", "2"),
                    ("Connection", "keep-alive"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Connection", "x"),
                    ("x-up", "1"),
                ),
                rbody=b"ok",
            ),
            ex(1, req=(("TE", "gzip, trailers"),), resp=(("Content-Length", "0"),)),
            ex(
                2,
                req=(("TE", "gzip"), ("Upgrade", "h2c")),
                resp=(("Content-Length", "0"),),
            ),
            ex(
                3,
                method="POST",
                req=(("Transfer-Encoding", "chunked"),),
                body=b"hello",
                resp=(("Transfer-Encoding", "chunked"),),
                rbody=b"world",
            ),
            ex(4, req=(("Connection", "close"),), resp=(("Content-Length", "0"),)),
            ex(
                5,
                method="POST",
                req=(("Expect", "100-continue"), ("Content-Length", "3")),
                body=b"abc",
                resp=(("Content-Length", "0"),),
            ),
            ex(6, method="POST", resp=(("Content-Length", "0"),)),
            ex(
                7,
                req=(
                    ("x-request-id", "abc"),
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-proto", "https"),
                    ("x-envoy-expected-rq-timeout-ms", "7"),
                    ("x-envoy-max-retries", "3"),
                ),
                resp=(
                    ("Server", "up/1"),
                    ("Content-Length", "0"),
                    ("Date", "Wed, 25 Nov 2026 21:12:15 GMT"),
                ),
            ),
        ],
    )


def test_204_reaches_the_filter_without_content_length(probe_envoy):
    (ours, _), *_ = same(
        probe_envoy,
        [
            ex(
                0,
                method="DELETE",
                status=204,
                resp=(("Content-Length", "0"), ("x-up", "1")),
            ),
            ex(1, method="HEAD", resp=(("Content-Length", "10"),)),
            ex(
                2,
                method="HEAD",
                status=304,
                resp=(("Content-Length", "10"), ("ETag", "x")),
            ),
            # A 304 without content-length: the client gets no framing at all.
            ex(3, status=304, resp=(("ETag", "x"), ("Cache-Control", "max-age=60"))),
            # A HEAD response without content-length: chunked, as its GET.
            ex(4, method="HEAD", resp=(("x-up", "1"),)),
        ],
    )
    seen = view(log.message for log in ours.result.logs)
    assert seen.names("rsh") == [":status", "x-up", "x-envoy-upstream-service-time"]


def _reply(i, method="GET", status="403", body=None, ctype=False, req_body=b""):
    req = [("x-probe-reply", status)]
    if body is not None:
        req.append(("x-probe-reply-body", body))
    if ctype:
        req.append(("x-probe-reply-ctype", "1"))
    if req_body:
        req.append(("Content-Length", str(len(req_body))))
    return ex(
        i, method=method, req=req, body=req_body, error="no upstream: answered locally"
    )


def test_head_request_answered_by_a_local_reply(probe_envoy):
    ((ours, theirs),) = same(probe_envoy, [_reply(0, method="HEAD", body="denied")])
    assert theirs.result.response_after.get(b"content-length") == b"6"
    assert theirs.result.response_after.body == b""
    seen = view(log.message for log in ours.result.logs)
    assert seen.counts["rsh"] == ["n=5 eos=1"] and "rsb" not in seen.counts


def test_local_reply_header_order(probe_envoy):
    pairs = same(
        probe_envoy,
        [
            _reply(0, body="denied"),
            _reply(1),
            _reply(2, body="denied", ctype=True),
            _reply(3, method="POST", req_body=b"hello"),
            _reply(4, status="204", body="denied"),
        ],
    )
    first = view(log.message for log in pairs[0][0].result.logs)
    assert first.names("rsh") == [
        ":status",
        "x-probe",
        "x-second",
        "content-length",
        "content-type",
    ]
    unread = pairs[3][1].result.response_after
    assert unread.get(b"connection") == b"close"


def test_flows_without_a_response(probe_envoy):
    pairs = same(
        probe_envoy,
        [
            ex(0, error="[Errno 111] Connect call failed ('127.0.0.1', 45191)"),
            ex(1, error="Server disconnected without sending a response."),
            ex(
                2,
                method="POST",
                req=(("Content-Length", "3"),),
                body=b"abc",
                error="[Errno 111] Connect call failed",
            ),
        ],
    )
    refused = pairs[0][1].result.response_after
    assert refused.body == (
        b"upstream connect error or disconnect/reset before headers. "
        b"reset reason: remote connection failure"
    )
    closed = pairs[1][1].result.response_after
    assert closed.get(b"content-length") == b"95"
    assert closed.body.endswith(b"reset reason: connection termination")


KNOBS = [
    replace(CM, use_remote_address=True),
    replace(
        CM,
        use_remote_address=True,
        xff_num_trusted_hops=1,
        preserve_external_request_id=True,
        server_header_transformation="APPEND_IF_ABSENT",
    ),
    replace(
        CM,
        generate_request_id=False,
        suppress_envoy_headers=True,
        route_timeout_ms=0,
        server_header_transformation="PASS_THROUGH",
        server_name="probe",
    ),
    replace(CM, route_timeout_ms=2500, server_name="edge"),
]


@pytest.mark.parametrize("cm", KNOBS, ids=["remote", "trusted-hop", "quiet", "timeout"])
def test_knobs(cm):
    flows = [
        ex(
            0,
            req=(
                ("x-forwarded-for", "1.2.3.4"),
                ("x-request-id", "abc"),
                ("x-envoy-decorator-operation", "op"),
                ("x-forwarded-proto", "https"),
            ),
            resp=(("Server", "up/1"), ("Content-Length", "0")),
        ),
        ex(1, resp=(("Content-Length", "0"),)),
    ]
    with EnvoyRunner(wat(PROBE_WAT), connection_manager=cm) as runner:
        if cm.use_remote_address:
            # For a loopback client Envoy appends its own address (the host's
            # first non-loopback one) to x-forwarded-for: learn it.
            probe = runner.run(replace(flows[1], index=99)).result.request_after
            cm = replace(cm, local_address=probe.get(b"x-forwarded-for").decode())
        same(runner, flows, cm)


def test_bodies_buffered_past_the_buffer_limit():
    # Envoy's default per_connection_buffer_limit_bytes is 1 MiB: a request
    # body the filter holds past it gets Envoy's 413 (through the filter's
    # response path, connection: close); a response body past it, once the
    # headers went out, resets the stream.
    from tests.host.probe import BUFFERING_PROBE_WAT

    big = b"x" * (2 << 20)
    flows = [
        ex(
            0,
            method="POST",
            req=(("Content-Length", str(len(big))),),
            body=big,
            resp=(("Content-Length", "2"),),
            rbody=b"ok",
        ),
        ex(1, resp=(("Content-Length", str(len(big))),), rbody=big),
    ]
    local = FlowRunner(load(BUFFERING_PROBE_WAT), ReplayOptions(chunk_size=64 * 1024))
    with EnvoyRunner(wat(BUFFERING_PROBE_WAT)) as runner:
        theirs = [runner.run(x).result for x in flows]
    ours = [local.run(x).result for x in flows]
    a, b = (view(log.message for log in r.logs) for r in (ours[0], theirs[0]))
    assert _headers(a.headers["rsh"]) == _headers(b.headers["rsh"])
    assert _message(ours[0].client_response) == _message(theirs[0].response_after)
    assert theirs[0].response_after.status == 413
    assert ours[1].client_response is None and theirs[1].response_after is None
    assert ours[1].reset and theirs[1].reset


def test_grpc_local_replies_and_the_routers_grpc_503(probe_envoy):
    # Trailers-only: the filter's headers, then content-type, grpc-status and
    # the body as a percent-encoded grpc-message ('%' and '~' encoded).
    grpc = ("content-type", "application/grpc")
    pairs = same(
        probe_envoy,
        [
            ex(
                0,
                method="POST",
                req=(grpc, ("x-probe-reply", "403"), ("x-probe-reply-body", "a b%~z")),
                error="answered locally",
            ),
            ex(
                1,
                method="POST",
                req=(grpc, ("x-probe-reply", "503"), ("x-probe-reply-ctype", "1")),
                error="answered locally",
            ),
            ex(2, method="POST", req=(grpc,), error="[Errno 111] Connect call failed"),
        ],
    )
    denied = pairs[0][0].result.response_after
    assert denied.headers[3:] == [
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"7"),
        (b"grpc-message", b"a b%25%7Ez"),
    ]
    router = pairs[2][1].result.response_after
    assert router.status == 200 and router.get(b"grpc-status") == b"14"


@pytest.mark.parametrize("enable_trailers", [False, True], ids=["default", "enabled"])
def test_http1_trailers(enable_trailers):
    # Envoy's HTTP/1 codec drops trailers unless enable_trailers is set.
    cm = replace(CM, enable_trailers=enable_trailers)
    request_ = Request(
        "POST",
        "http",
        "upstream.test",
        80,
        "/",
        headers=Headers(
            [(b"Host", b"upstream.test"), (b"Transfer-Encoding", b"chunked")]
        ),
        body=b"hello",
        trailers=Headers([(b"x-rt", b"1")]),
    )
    response_ = Response(
        200,
        "OK",
        headers=Headers([(b"Transfer-Encoding", b"chunked")]),
        body=b"world",
        trailers=Headers([(b"x-st", b"2")]),
    )
    with EnvoyRunner(wat(PROBE_WAT), connection_manager=cm) as runner:
        ((ours, _),) = same(runner, [Exchange(0, request_, response_)], cm)
    seen = view(log.message for log in ours.result.logs)
    if enable_trailers:
        assert seen.headers["rqt"] == [("x-rt", "1")]
        assert seen.headers["rst"] == [("x-st", "2")]
    else:
        assert "rqt" not in seen.headers and "rst" not in seen.headers
