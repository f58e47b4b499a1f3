"""Envoy's knobs on the driver: failing dispatches, access-log-only streams,
request completion at log time, and the stream's timing properties.

Real modules: the auth_callout samples and WAT filters written here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from wasmkit.abi.constants import WasmResult
from wasmkit.host import response
from wasmkit.host.properties import StreamInfo, flags_for_details, parse_flags
from wasmkit.testing import (
    RESPONSE_FLAGS,
    DispatchFailure,
    Driver,
    InlineReply,
    filter_wat,
    no_healthy_upstream,
)

SAMPLES = Path(__file__).resolve().parents[2] / "build" / "samples"
AUTH = '{"cluster": "auth", "path": "/check"}'
REQUEST = {":path": "/", ":authority": "a", ":method": "GET"}


# -- a callout dispatch that fails ------------------------------------------------


def _auth(lang: str, responder) -> Driver:
    return Driver(
        SAMPLES / f"auth_callout.{lang}.wasm",
        config=AUTH,
        root_id="auth_callout",
        clusters=["auth"],
        responder=responder,
    )


@pytest.mark.parametrize("lang", ["rust", "go", "assemblyscript"])
@pytest.mark.parametrize(
    "answer, outcome",
    [(DispatchFailure(), "dispatch_failure"), (InlineReply(), "inline_reply")],
)
def test_a_failing_dispatch_is_internal_failure_and_no_callback(lang, answer, outcome):
    # Envoy's AsyncCallBadCall (send() returns null) and AsyncCallBadCluster
    # (an inline 503, dropped): the filter's http_call fails at once.
    with _auth(lang, lambda call: answer) as d:
        http = d.http()
        r = http.on_request_headers(REQUEST)
        [status] = [t.result for t in r.host_calls("http_call")]
        assert status == WasmResult.INTERNAL_FAILURE.name
        [call] = r.callouts
        assert call.outcome == outcome
        assert call.cluster == "auth"
        # The filter treats it as a failed call: a local reply, no pause.
        assert r.local_reply is not None
        d.advance(60_000)
        assert not any(c.callback == "proxy_on_http_call_response" for c in d.calls)
        assert not any(t.name == "proxy_on_http_call_response" for t in d.vm.trace)
        if outcome == "inline_reply":
            assert call.response == no_healthy_upstream()


def test_the_failed_dispatch_uses_up_a_token():
    # Envoy's nextHttpCallId() runs before send(): the next call's token moves on.
    answers = iter([DispatchFailure(), response(200)])
    with _auth("rust", lambda call: next(answers)) as d:
        d.http().on_request_headers(REQUEST)
        r = d.http().on_request_headers(REQUEST)
        first, second = d.callouts
        assert first.outcome == "dispatch_failure"
        assert second.token > 0 and r.action == "StopAllIterationAndWatermark"
    with _auth("rust", lambda call: response(200)) as d:
        d.http().on_request_headers(REQUEST)
        d.http().on_request_headers(REQUEST)
        assert d.callouts[1].token == second.token
        assert d.callouts[0].token < second.token


def test_per_cluster_in_a_table():
    with Driver(
        SAMPLES / "auth_callout.rust.wasm",
        config=AUTH,
        responder={"auth": {"dispatch": "inline", "status": 503, "body": "down"}},
    ) as d:
        r = d.http().on_request_headers(REQUEST)
        [call] = r.callouts
        assert call.outcome == "inline_reply"
        assert call.response is not None and call.response.body == b"down"
    with Driver(
        SAMPLES / "auth_callout.rust.wasm",
        config=AUTH,
        responder={"auth": {"dispatch": "fail"}, "other": {"status": 200}},
    ) as d:
        assert d.http().on_request_headers(REQUEST).callouts[0].outcome == (
            "dispatch_failure"
        )
    with pytest.raises(ValueError, match="dispatch must be 'fail' or 'inline'"):
        Driver(
            SAMPLES / "auth_callout.rust.wasm",
            config=AUTH,
            responder={"auth": {"dispatch": "later"}},
        )


def test_an_unknown_cluster_stays_bad_argument_whatever_answers():
    with Driver(
        SAMPLES / "auth_callout.rust.wasm",
        config=AUTH,
        responder=lambda call: DispatchFailure(),
    ) as d:
        r = d.http().on_request_headers(REQUEST)
        [status] = [t.result for t in r.host_calls("http_call")]
        assert status == WasmResult.BAD_ARGUMENT.name
        assert r.callouts == []


# -- access-log-only streams and completion at log time ---------------------------

# Envoy's "headers" test filter, in WAT: logs at request headers, the path and
# status at log time (or "missing"), and on done; the context creation too.
LOGGER = filter_wat(
    """
(func $value (param $map i32) (param $k i32) (param $kl i32)
  (if (i32.eqz (call $proxy_get_header_map_value (local.get $map) (local.get $k)
                 (local.get $kl) (i32.const 512) (i32.const 516)))
    (then (drop (call $proxy_log (i32.const 3) (i32.load (i32.const 512))
                  (i32.load (i32.const 516)))))
    (else (drop (call $proxy_log (i32.const 3) (global.get $s_missing)
                  (global.get $s_missing_len))))))
(func (export "proxy_on_context_create") (param $id i32) (param $root i32)
  (if (local.get $root)
    (then (drop (call $proxy_log (i32.const 2) (global.get $s_created)
                  (global.get $s_created_len))))))
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_log (i32.const 2) (global.get $s_headers)
          (global.get $s_headers_len)))
  (i32.const 0))
(func (export "proxy_on_log") (param i32)
  (call $value (i32.const 0) (global.get $s_path) (global.get $s_path_len))
  (call $value (i32.const 1) (global.get $s_trailer) (global.get $s_trailer_len))
  (call $value (i32.const 2) (global.get $s_status) (global.get $s_status_len)))
(func (export "proxy_on_done") (param i32) (result i32)
  (drop (call $proxy_log (i32.const 3) (global.get $s_done) (global.get $s_done_len)))
  (i32.const 1))
""",
    strings={
        "missing": "missing",
        "created": "created",
        "headers": "onRequestHeaders",
        "path": ":path",
        "trailer": "x-trailer",
        "status": ":status",
        "done": "onDone",
    },
)


def test_access_log_on_a_stream_the_filter_never_saw():
    # Envoy's AccessLogCreate: log() on a context never created runs
    # proxy_on_context_create first, then proxy_on_log with the log's maps.
    with Driver(LOGGER) as d:
        http = d.http(create=False)
        assert http.created is None
        r = http.log({":path": "/"}, {":status": "200"}, {})
        assert r.called
        assert http.created is not None and http.created.logs.info == ["created"]
        assert r.logs.warn == ["/", "missing", "200"]
        assert http.request_headers is None  # the log's maps were for the log only
        assert http.on_done().logs.warn == ["onDone"]
        http.on_delete()


def test_access_log_sees_no_request_trailers():
    with Driver(LOGGER) as d:
        http = d.http()
        http.on_request_headers({":path": "/a"}, end_of_stream=False)
        http.request_trailers = {"x-trailer": "t"}
        r = http.log(response_headers={":status": "204"})
        assert r.logs.warn == ["/a", "missing", "204"]
        assert http.request_trailers == {"x-trailer": "t"}


def test_access_log_disabled_for_an_incomplete_stream():
    # Envoy's AccessLogDisabledForIncompleteStream.
    with Driver(LOGGER) as d:
        http = d.http()
        assert http.on_request_headers({":path": "/"}).logs.info == ["onRequestHeaders"]
        r = http.log({":path": "/"}, complete=False)
        assert not r.called and r.logs == []
        assert r.notes == [
            "Envoy calls no proxy_on_log: the request is not complete "
            "(an intermediate access log)"
        ]
        assert http.on_done().logs.warn == ["onDone"]
        assert [c.callback for c in http.calls] == [
            "proxy_on_context_create",
            "proxy_on_request_headers",
            "proxy_on_log",
            "proxy_on_done",
        ]
        assert not any(t.name == "proxy_on_log" for t in d.vm.trace)


# -- timing properties --------------------------------------------------------------

PROPERTIES = [
    "request.time",
    "request.duration",
    "response.code_details",
    "response.flags",
    "response.backend_latency",
]


def _property_reader(callback: str, params: str, result: str) -> str:
    gets = "\n".join(
        f"  (drop (call $proxy_get_property (global.get $s_p{i}) "
        f"(global.get $s_p{i}_len) (i32.const 512) (i32.const 516)))"
        for i in range(len(PROPERTIES))
    )
    ret = "(i32.const 0)" if result else ""
    return f'(func (export "{callback}") {params} {result}\n{gets}\n  {ret})'


TIMING = filter_wat(
    _property_reader("proxy_on_request_headers", "(param i32 i32 i32)", "(result i32)")
    + _property_reader("proxy_on_log", "(param i32)", ""),
    strings={
        f"p{i}": name.replace(".", "\0").encode() for i, name in enumerate(PROPERTIES)
    },
)


def _read(result) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, call in zip(PROPERTIES, result.host_calls("get_property"), strict=True):
        raw = call.args.get("returned")
        if raw is None:
            out[name] = None
        elif name == "response.code_details":
            out[name] = raw.decode()
        else:
            assert len(raw) == 8  # int64, as Envoy serializes CEL ints
            out[name] = struct.unpack("<q", raw)[0]
    return out


def test_timing_properties_as_envoy_encodes_them():
    info = StreamInfo(start_ns=1_522_796_769_123_000_000)
    with Driver(TIMING) as d:
        http = d.http(stream_info=info)
        during = _read(http.on_request_headers({":path": "/"}))
        # Envoy: no duration before the request completes; flags always there.
        assert during == {
            "request.time": 1_522_796_769_123_000_000,
            "request.duration": None,
            "response.code_details": None,
            "response.flags": 0,
            "response.backend_latency": None,
        }
        http.set_stream_info(
            duration_ms=15,
            code_details="upstream_reset_before_response_started{connection_failure}",
            backend_latency_ms=2.5,
        )
        at_log = _read(http.log(response_headers={":status": "503"}))
        assert at_log == {
            "request.time": 1_522_796_769_123_000_000,
            "request.duration": 15_000_000,
            "response.code_details": (
                "upstream_reset_before_response_started{connection_failure}"
            ),
            "response.flags": RESPONSE_FLAGS["UF"],
            "response.backend_latency": 2_500_000,
        }


def test_duration_on_the_virtual_clock_and_flags_by_name():
    with Driver(TIMING) as d:
        http = d.http()
        start = http.ctx.start_ns
        http.on_request_headers({":path": "/"})
        d.advance(40)
        http.response_headers = {":status": "200"}
        at_log = _read(http.on_log())
        assert at_log["request.time"] == start
        assert at_log["request.duration"] == 40_000_000
        assert at_log["response.code_details"] == "via_upstream"
        other = d.http()
        other.set_stream_info(response_flags="UT, UR", code_details="x")
        got = _read(other.log({":path": "/"}))
        assert got["response.flags"] == RESPONSE_FLAGS["UT"] | RESPONSE_FLAGS["UR"]
        with pytest.raises(ValueError, match="unknown response flag 'XX'"):
            other.set_stream_info(response_flags="XX")


def test_stream_info_from_an_exchange_and_for_the_next_stream():
    from wasmkit.traffic import load_capture

    root = Path(__file__).resolve().parents[2]
    capture = load_capture(root / "samples" / "captures" / "api.flow")
    try:
        exchange = next(iter(capture))
    finally:
        capture.close()
    info = StreamInfo.from_exchange(exchange)
    assert info.start_ns == round(exchange.timestamp * 1e9)
    assert info.duration_ns == round(
        (exchange.timestamp_end - exchange.timestamp) * 1e9
    )
    with Driver(TIMING) as d:
        d.vm.next_stream_info = info  # what a replay sets before a stream
        http = d.http()
        assert http.stream_info == info and d.vm.next_stream_info is None
        got = _read(http.log({":path": "/"}, {":status": "200"}))
        assert got["request.time"] == info.start_ns
        assert got["request.duration"] == info.duration_ns


def test_flags_from_details_and_names():
    assert flags_for_details("upstream_response_timeout") == RESPONSE_FLAGS["UT"]
    assert flags_for_details("via_upstream") == 0
    assert parse_flags("-") == 0
    assert parse_flags(5) == 5
