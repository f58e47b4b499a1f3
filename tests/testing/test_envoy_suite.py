"""Envoy's own Wasm filter tests, ported onto the public wasmkit.testing API.

Each test names the Envoy test case it mirrors (``WasmHttpFilterTest.*`` in
``test/extensions/filters/http/wasm/wasm_filter_test.cc``,
``WasmNetworkFilterTest.*`` in ``test/extensions/filters/network/wasm/
wasm_filter_test.cc``, ``WasmCommonTest.*`` in ``test/extensions/common/wasm/
wasm_test.cc``) and asserts Envoy's expected outcome: the returned status as
Envoy converts it, the log lines (level and exact text), the local reply,
the connection's state. The probes (:mod:`tests.testing.envoy_probes`,
:mod:`tests.testing.tcp_probe`, the capability probe of
``tests/host/test_capabilities.py``) log what Envoy's test modules log.

The cases are those that need what only a callback-level driver gives: a
callback on a fresh context (the panic and close-stream tests), a dispatch
that fails for a known cluster, capability restriction, access-log-only
streams and incomplete requests at log time, ``on_tick`` / ``on_queue_ready``
called directly.
"""

from __future__ import annotations

import pytest

from tests.host.test_capabilities import CTX_LOG, RESTRICTION, STDOUT_LINE, VM_LOG
from tests.testing import envoy_probes as probes
from tests.testing.tcp_probe import probe as tcp_probe
from wasmkit.abi.constants import LogLevel, StreamType
from wasmkit.testing import DispatchFailure, Driver, InlineReply

TRACE = {"log_level": "trace"}
"""Envoy's tests see every level (the mock context's ``log_``)."""


# -- panics on a fresh context (WasmHttpFilterTest.PanicOn*) -------------------------

PANICS = [
    ("PanicOnRequestHeaders", "on_request_headers", "StopAllIterationAndWatermark"),
    ("PanicOnRequestBody", "on_request_body", "StopIterationNoBuffer"),
    ("PanicOnRequestTrailers", "on_request_trailers", "StopIteration"),
    ("PanicOnResponseHeaders", "on_response_headers", "StopAllIterationAndWatermark"),
    ("PanicOnResponseBody", "on_response_body", "StopIterationNoBuffer"),
    ("PanicOnResponseTrailers", "on_response_trailers", "StopIteration"),
]


@pytest.mark.parametrize(
    ("case", "callback", "status"), PANICS, ids=[p[0] for p in PANICS]
)
def test_http_panic_on_a_fresh_context(case, callback, status):
    # WasmHttpFilterTest.PanicOn*: filter().onCreate(), then the callback
    # alone (size 0, not the end): Envoy's CHECK_FAIL status, one 503 local
    # reply (wasm_fail_stream, gRPC Unavailable) although failStream runs for
    # both directions.
    with Driver(probes.PANIC, **TRACE) as d:
        http = d.http()
        eos = {} if "trailers" in callback else {"end_of_stream": False}
        r = getattr(http, callback)(**eos)
        assert r.action == status
        assert r.error is not None and r.error.kind == "trap"
        reply = http.local_reply
        assert reply is not None
        assert (reply.status, reply.body, reply.details, reply.grpc_status) == (
            503,
            b"",
            "wasm_fail_stream",
            14,
        )
        # The stream failed once: a later callback sends no second reply.
        again = http.on_response_headers({":status": "200"})
        assert again.local_reply is None and not again.called


# -- close stream on a fresh context (WasmHttpFilterTest.CloseRequest/Response) -------


@pytest.mark.parametrize(
    ("case", "callback", "stream"),
    [
        ("CloseRequest", "on_request_headers", StreamType.HTTP_REQUEST),
        ("CloseResponse", "on_response_headers", StreamType.HTTP_RESPONSE),
    ],
    ids=["CloseRequest", "CloseResponse"],
)
def test_http_close_stream_on_a_fresh_context(case, callback, stream):
    # Envoy: Continue, setResponseCodeDetails("wasm_close_stream"), and the
    # stream is reset.
    with Driver(probes.CLOSE_STREAM, **TRACE) as d:
        http = d.http()
        r = getattr(http, callback)(end_of_stream=False)
        assert r.action == "Continue"
        assert r.closed == [stream]
        assert http.reset
        assert http.stream_info.code_details == "wasm_close_stream"
        assert r.local_reply is None


# -- callouts to a known cluster (WasmHttpFilterTest.AsyncCall*) ----------------------


def test_async_call():
    # WasmHttpFilterTest.AsyncCall: the request as sent, then the reply.
    with Driver(probes.ASYNC_CALL, clusters=["cluster"], **TRACE) as d:
        http = d.http()
        r = http.on_request_headers({":path": "/"}, end_of_stream=False)
        assert r.action == "StopAllIterationAndWatermark"
        assert r.logs.info == ["onRequestHeaders"]
        [call] = r.callouts
        assert call.cluster == "cluster"
        assert call.headers[:3] == probes.CALLOUT_HEADERS
        assert (call.body, call.trailers) == (b"hello world", [(b"trail", b"cow")])
        assert call.timeout_ms == 1000
        reply = d.root.on_http_call_response(call.token, {":status": "200"}, "response")
        assert reply.logs.info == [":status -> 200"]
        assert reply.logs.debug == ["response"]


@pytest.mark.parametrize(
    ("case", "answer", "outcome"),
    [
        ("AsyncCallBadCall", DispatchFailure(), "dispatch_failure"),
        ("AsyncCallBadCluster", InlineReply(), "inline_reply"),
    ],
    ids=["AsyncCallBadCall", "AsyncCallBadCluster"],
)
def test_async_call_fails_for_a_known_cluster(case, answer, outcome):
    # AsyncCallBadCall: the async client's send() returns null.
    # AsyncCallBadCluster: it answers 503 inline (no healthy upstream).
    # Either way proxy_http_call fails: "async_call rejected", still stopped.
    with Driver(
        probes.ASYNC_CALL, clusters=["cluster"], responder=lambda c: answer, **TRACE
    ) as d:
        r = d.http().on_request_headers({":path": "/bad"}, end_of_stream=False)
        assert r.logs.info == ["async_call rejected"]
        assert r.action == "StopAllIterationAndWatermark"
        [call] = r.callouts
        assert call.outcome == outcome
        d.advance(5_000)  # nothing is delivered later
        assert d.logs.info == ["async_call rejected"]


def test_async_call_failure():
    # WasmHttpFilterTest.AsyncCallFailure: the call is reset after dispatch.
    with Driver(probes.ASYNC_CALL, clusters=["cluster"], **TRACE) as d:
        r = d.http().on_request_headers({":path": "/"}, end_of_stream=False)
        assert r.logs.info == ["onRequestHeaders"]
        failed = d.root.on_http_call_response(r.callouts[0].token, None)
        assert failed.logs.info == ["async_call failed"]
        assert r.callouts[0].outcome == "failure"


def test_an_unknown_cluster_is_bad_argument_whatever_answers():
    # httpCall: getThreadLocalCluster() is null -> BadArgument, before any
    # dispatch (AsyncCallBadCall's cluster exists; this one does not).
    with Driver(probes.ASYNC_CALL, responder=lambda c: None, **TRACE) as d:
        r = d.http().on_request_headers({":path": "/"}, end_of_stream=False)
        assert r.logs.info == ["async_call rejected"]
        assert r.callouts == []
        assert [h.result for h in r.host_calls("http_call")] == ["BAD_ARGUMENT"]


# -- the access log (WasmHttpFilterTest.AccessLog*) ----------------------------------


def test_access_log():
    # WasmHttpFilterTest.AccessLog: request headers, then log() with the
    # request's, response's and trailers' maps, the request complete (30 ms).
    with Driver(probes.HEADERS, **TRACE) as d:
        http = d.http()
        r = http.on_request_headers({":path": "/"}, end_of_stream=False)
        assert r.logs.debug == ["onRequestHeaders 2 headers"]
        assert r.logs.info == ["header path /"]
        log = http.log(
            {":path": "/"}, {":status": "200"}, {}, complete=True, duration_ms=30
        )
        assert log.logs.warn == ["onLog 2 / 200"]
        assert log.logs.info == ["duration is 30000000"]
        assert http.on_done().logs.warn == ["onDone 2"]


def test_access_log_client_disconnected():
    # WasmHttpFilterTest.AccessLogClientDisconnected: no response headers.
    with Driver(probes.HEADERS, **TRACE) as d:
        http = d.http()
        http.on_request_headers({":path": "/"}, end_of_stream=False)
        log = http.log({":path": "/"}, complete=True, duration_ms=30)
        assert log.logs.warn == ["onLog 2 / "]
        assert http.on_done().logs.warn == ["onDone 2"]


def test_access_log_disabled_for_incomplete_stream():
    # WasmHttpFilterTest.AccessLogDisabledForIncompleteStream: requestComplete()
    # has no value: no onLog at all; onDone still comes.
    with Driver(probes.HEADERS, **TRACE) as d:
        http = d.http()
        http.on_request_headers({":path": "/"}, end_of_stream=False)
        log = http.log({":path": "/"}, complete=False)
        assert not log.called and log.logs == []
        assert http.on_done().logs.warn == ["onDone 2"]
        assert not any(m.startswith("onLog") for m in d.logs.messages)


def test_access_log_create():
    # WasmHttpFilterTest.AccessLogCreate: log() on a stream the filter never
    # saw: the context is created first, then onLog sees the log's maps.
    with Driver(probes.HEADERS, **TRACE) as d:
        http = d.http(create=False)
        log = http.log(
            {":path": "/"}, {":status": "200"}, {}, complete=True, duration_ms=30
        )
        assert http.created is not None and http.created.called
        assert log.logs.warn == ["onLog 2 / 200"]
        assert http.on_done().logs.warn == ["onDone 2"]
        assert not any(m.startswith("onRequestHeaders") for m in d.logs.messages)


def test_request_duration_at_log_time():
    # WasmHttpFilterTest.Metadata: requestComplete() is 15 ms, so
    # request.duration reads 15000000 (ns) in onLog.
    with Driver(probes.HEADERS, **TRACE) as d:
        http = d.http()
        http.on_request_headers({":path": "/"}, end_of_stream=False)
        http.set_stream_info(complete=True, duration_ms=15)
        assert http.log().logs.info == ["duration is 15000000"]


# -- on_tick and on_queue_ready called directly ----------------------------------------


def test_on_tick_resumes_a_paused_stream():
    # WasmHttpFilterTest.HeadersStopAndContinue: the request stops; the
    # root's onTick(0) continues it and the header changes.
    with Driver(probes.TICK_RESUME, **TRACE) as d:
        http = d.http()
        r = http.on_request_headers({":path": "/", "server": "envoy-wasm-pause"})
        assert r.action == "StopAllIterationAndWatermark"
        tick = d.root.on_tick()
        assert tick.continued == [StreamType.HTTP_REQUEST]
        assert http.continued == [StreamType.HTTP_REQUEST]
        assert http.request_headers["server"] == "envoy-wasm-continue"


def test_shared_queue():
    # WasmHttpFilterTest.SharedQueue: enqueueing calls onQueueReady at once;
    # the test then calls it again with the queue's token (resolveQueueForTest).
    with Driver(probes.SHARED_QUEUE, **TRACE) as d:
        r = d.http().on_request_headers({":path": "/"})
        assert r.action == "Continue"
        token = d.root.queue_token("my_shared_queue")
        d.root.on_queue_ready(token)
        logs = d.logs
        assert logs.warn.count("onQueueReady bad token not found") == 2
        assert logs.warn.count("onQueueReady extra data not found") == 2
        assert logs.info.count("onQueueReady") == 2
        assert logs.debug == ["data data1 Ok"]
        assert "onRequestHeaders enqueue Ok" in logs.warn
        with pytest.raises(KeyError, match="no shared queue 'bad_shared_queue'"):
            d.root.queue_token("bad_shared_queue")


# -- capability restriction (WasmCommonTest.* and WasmNetworkFilterTest.Restrict*) ---


@pytest.mark.parametrize(
    ("case", "allowed", "filter_logs", "errors"),
    [
        ("RestrictCapabilities", ["proxy_get_status"], [], []),
        (
            "AllowOnVmStart",
            ["proxy_on_vm_start"],
            [],
            [
                "Attempted call to restricted proxy-wasm capability: proxy_log",
                "Attempted call to restricted WASI capability: fd_write",
            ],
        ),
        (
            "AllowLog",
            ["proxy_on_vm_start", "proxy_log"],
            [VM_LOG],
            ["Attempted call to restricted WASI capability: fd_write"],
        ),
        (
            "AllowWASI",
            ["proxy_on_vm_start", "fd_write"],
            [STDOUT_LINE.rstrip("\n")],
            ["Attempted call to restricted proxy-wasm capability: proxy_log"],
        ),
        (
            "AllowOnContextCreate",
            ["proxy_on_vm_start", "proxy_on_context_create", "proxy_log"],
            [CTX_LOG, VM_LOG],
            ["Attempted call to restricted WASI capability: fd_write"],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and v[0].isupper() else None,
)
def test_common_capability_restriction(case, allowed, filter_logs, errors):
    # WasmCommonTest.<case>: test_restriction_cpp's VM start under
    # allowed_capabilities.
    with Driver(RESTRICTION, allowed_capabilities=allowed, **TRACE) as d:
        startup = d.startup_logs
        assert [r.message for r in startup if r.source != "host"] == filter_logs
        assert [
            r.message
            for r in startup
            if r.source == "host" and r.level == LogLevel.ERROR
        ] == errors


NETWORK_BASE = ["proxy_on_context_create", "proxy_get_property"]


@pytest.mark.parametrize(
    ("case", "extra", "tags", "status"),
    [
        (
            "RestrictOnNewConnection",
            ["proxy_log", "proxy_on_new_connection"],
            ["new"],
            "Continue",
        ),
        (
            "RestrictOnDownstreamConnectionClose",
            ["proxy_log", "proxy_on_downstream_connection_close"],
            ["dclose 1"],
            "Continue",
        ),
        (
            "RestrictLog",
            ["proxy_on_new_connection", "proxy_on_downstream_connection_close"],
            [],
            "Continue",
        ),
    ],
    ids=[
        "RestrictOnNewConnection",
        "RestrictOnDownstreamConnectionClose",
        "RestrictLog",
    ],
)
def test_network_capability_restriction(case, extra, tags, status):
    # WasmNetworkFilterTest.<case> (the C++ module: a failed proxy_log is
    # ignored, so onNewConnection continues): only the allowed callbacks
    # run, and only an allowed proxy_log logs.
    with Driver(tcp_probe(), allowed_capabilities=NETWORK_BASE + extra, **TRACE) as d:
        tcp = d.tcp()
        assert tcp.on_new_connection().action == status
        tcp.on_event("local_close")  # connection_.close(FlushWrite)
        tcp.on_event("local_close")  # Noop.
        tcp.finish()  # testClose(): the end ran already
        said = [m for m in d.logs.info if "=" not in m and "missing" not in m]
        assert said == tags
        restricted = {
            r.message.rsplit(": ", 1)[1]
            for r in d.logs
            if r.source == "host" and r.level == LogLevel.ERROR
        }
        assert restricted <= {"proxy_log"}
        assert ("proxy_log" in restricted) == ("proxy_log" not in extra)


# -- the network filter (WasmNetworkFilterTest.*) -----------------------------------


def test_network_happy_path():
    # WasmNetworkFilterTest.HappyPath: data both ways, the upstream's end
    # (onUpstreamConnectionClose 2 0), the downstream close (2 1), a second
    # close and testClose() do nothing more.
    with Driver(tcp_probe(), **TRACE) as d:
        tcp = d.tcp()
        assert tcp.on_new_connection().action == "Continue"
        assert tcp.on_data(b"Fake").action == "Continue"
        assert tcp.on_write(b"Done", end_stream=True).action == "Continue"
        tcp.on_event("local_close")
        assert tcp.on_event("local_close") == []
        assert tcp.finish() == []
        said = [m for m in d.logs.info if "=" not in m and "missing" not in m]
        assert said == [
            "new", "down 0", "up 1", "uclose 0", "dclose 1", "done", "log", "delete",
        ]  # fmt: skip


def test_network_close_stream_without_a_context():
    # WasmNetworkFilterTest.CloseStream: no context yet, so a close event,
    # upstream and client data do nothing; after onNewConnection a remote
    # close is heard (onDownstreamConnectionClose 2 2); an unknown event does
    # nothing.
    with Driver(tcp_probe(), **TRACE) as d:
        tcp = d.tcp(create=False)
        assert tcp.on_event("remote_close") == []
        assert tcp.on_write(b"Done", end_stream=True).action == "Continue"
        assert tcp.on_data(b"Fake").action == "Continue"
        assert d.logs == []
        assert tcp.on_new_connection().action == "Continue"
        assert tcp.on_event("connected") == []
        tcp.on_event("remote_close")
        said = [m for m in d.logs.info if "=" not in m and "missing" not in m]
        assert said[:2] == ["new", "dclose 2"]


@pytest.mark.parametrize(
    ("case", "entry"),
    [
        ("PanicOnNewConnection", "on_new_connection"),
        ("PanicOnDownstreamData", "on_data"),
        ("PanicOnUpstreamData", "on_write"),
    ],
    ids=["PanicOnNewConnection", "PanicOnDownstreamData", "PanicOnUpstreamData"],
)
def test_network_panic(case, entry):
    # WasmNetworkFilterTest.PanicOn*: StopIteration, the connection closed
    # (onCreate without onNewConnection for the data cases).
    with Driver(probes.PANIC, **TRACE) as d:
        tcp = d.tcp()
        args = () if entry == "on_new_connection" else (b"Fake",)
        r = getattr(tcp, entry)(*args)
        assert r.action == "StopIteration" and r.error is not None
        assert tcp.connection_closed


@pytest.mark.parametrize(
    ("case", "stream", "details"),
    [
        ("CloseDownstream", StreamType.DOWNSTREAM, "wasm_downstream_close"),
        ("CloseUpstream", StreamType.UPSTREAM, "wasm_upstream_close"),
    ],
    ids=["CloseDownstream", "CloseUpstream"],
)
def test_network_close_stream(case, stream, details):
    # WasmNetworkFilterTest.CloseDownstream / CloseUpstream: the callback
    # continues; Envoy closes the connection (FlushWrite) with the details.
    # (Envoy's test closes data from either side; this probe closes from
    # upstream data, which is what it implements.)
    with Driver(tcp_probe(close=stream), **TRACE) as d:
        tcp = d.tcp()
        r = tcp.on_write(b"Fake")
        assert r.action == "Continue"
        assert tcp.connection_closed and tcp.close_details == details
