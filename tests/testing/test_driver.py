"""The callback-level driver on real modules: WAT filters and the built samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmkit.abi.constants import StreamType
from wasmkit.host import FilterVm, Limits, PluginConfig
from wasmkit.testing import Driver, HeaderMap, filter_wat, headers

SAMPLES = Path(__file__).resolve().parents[2] / "build" / "samples"

# Helpers every WAT filter below may call: log a header of a map (or "missing"),
# log a buffer, log the status message of the last call.
HELPERS = """
(func $log_header (param $map i32) (param $k i32) (param $kl i32)
  (if (i32.eqz (call $proxy_get_header_map_value (local.get $map) (local.get $k)
                 (local.get $kl) (i32.const 512) (i32.const 516)))
    (then (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512))
                  (i32.load (i32.const 516)))))
    (else (drop (call $proxy_log (i32.const 3) (global.get $s_missing)
                  (global.get $s_missing_len))))))
(func $log_buffer (param $type i32)
  (drop (call $proxy_get_buffer_bytes (local.get $type) (i32.const 0)
          (i32.const 0x7fffffff) (i32.const 512) (i32.const 516)))
  (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512))
          (i32.load (i32.const 516)))))
(func $log_status
  (drop (call $proxy_get_status (i32.const 520) (i32.const 512) (i32.const 516)))
  (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512))
          (i32.load (i32.const 516)))))
"""

STRINGS = {
    "missing": "missing",
    "user": "x-user",
    "added": "x-added",
    "yes": "yes",
    "status": ":status",
    "trailer": "x-checksum",
    "sum": "abc",
    "prefix": ">>",
    "denied": "denied",
    "details": "no access",
    "counter": "ticks",
    "seven": "seven",
    "grpc_key": "grpc-encoding",
}

HTTP = filter_wat(
    HELPERS
    + """
(global $counter (mut i32) (i32.const 0))
(func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
  (call $log_header (i32.const 0) (global.get $s_user) (global.get $s_user_len))
  (drop (call $proxy_add_header_map_value (i32.const 0)
         (global.get $s_added) (global.get $s_added_len)
         (global.get $s_yes) (global.get $s_yes_len)))
  (if (i32.eqz (local.get $eos))
    (then (return (i32.const 1))))
  (i32.const 0))
(func (export "proxy_on_request_body") (param $id i32) (param $size i32) (param $eos i32) (result i32)
  (call $log_buffer (i32.const 0))
  (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0)
          (global.get $s_prefix) (global.get $s_prefix_len)))
  (if (i32.eqz (local.get $eos))
    (then (return (i32.const 1))))
  (i32.const 7))
(func (export "proxy_on_request_trailers") (param $id i32) (param $n i32) (result i32)
  (drop (call $proxy_replace_header_map_value (i32.const 1)
         (global.get $s_trailer) (global.get $s_trailer_len)
         (global.get $s_sum) (global.get $s_sum_len)))
  (i32.const 0))
(func (export "proxy_on_response_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
  (call $log_header (i32.const 2) (global.get $s_status) (global.get $s_status_len))
  (if (i32.eqz (local.get $eos))
    (then
      (drop (call $proxy_send_local_response (i32.const 403)
              (global.get $s_details) (global.get $s_details_len)
              (global.get $s_denied) (global.get $s_denied_len)
              (i32.const 0) (i32.const 0) (i32.const -1)))))
  (i32.const 0))
(func (export "proxy_on_response_body") (param $id i32) (param $size i32) (param $eos i32) (result i32)
  (unreachable))
(func (export "proxy_on_log") (param $id i32)
  (call $log_header (i32.const 0) (global.get $s_user) (global.get $s_user_len))
  (drop (call $proxy_add_header_map_value (i32.const 0)
         (global.get $s_added) (global.get $s_added_len)
         (global.get $s_yes) (global.get $s_yes_len))))
(func (export "proxy_on_done") (param $id i32) (result i32) (i32.const 1))
(func (export "proxy_on_delete") (param $id i32))
""",
    strings=STRINGS,
)

ROOT = filter_wat(
    HELPERS
    + """
(global $ticks (mut i32) (i32.const 0))
(func (export "proxy_on_configure") (param $id i32) (param $size i32) (result i32)
  (drop (call $proxy_define_metric (i32.const 0) (global.get $s_counter)
          (global.get $s_counter_len) (i32.const 600)))
  (i32.const 1))
(func (export "proxy_on_tick") (param $id i32)
  (drop (call $proxy_increment_metric (i32.load (i32.const 600)) (i64.const 1))))
(func (export "proxy_on_queue_ready") (param $id i32) (param $queue i32)
  (if (i32.eq (local.get $queue) (i32.const 7))
    (then (drop (call $proxy_log (i32.const 2) (global.get $s_seven)
                  (global.get $s_seven_len))))))
(func (export "proxy_on_foreign_function") (param $id i32) (param $fn i32) (param $size i32)
  (call $log_buffer (i32.const 8)))
(func (export "proxy_on_http_call_response") (param $id i32) (param $token i32)
      (param $nh i32) (param $body i32) (param $nt i32)
  (if (i32.eqz (local.get $nh))
    (then (call $log_status) (return)))
  (call $log_header (i32.const 6) (global.get $s_status) (global.get $s_status_len))
  (call $log_buffer (i32.const 4)))
(func (export "proxy_on_grpc_receive_initial_metadata") (param $id i32) (param $token i32) (param $n i32)
  (call $log_header (i32.const 4) (global.get $s_grpc_key) (global.get $s_grpc_key_len)))
(func (export "proxy_on_grpc_receive") (param $id i32) (param $token i32) (param $size i32)
  (call $log_buffer (i32.const 5)))
(func (export "proxy_on_grpc_receive_trailing_metadata") (param $id i32) (param $token i32) (param $n i32)
  (call $log_header (i32.const 5) (global.get $s_grpc_key) (global.get $s_grpc_key_len)))
(func (export "proxy_on_grpc_close") (param $id i32) (param $token i32) (param $status i32)
  (call $log_status))
(func (export "proxy_on_done") (param $id i32) (result i32) (i32.const 0))
""",
    strings=STRINGS,
)

TCP = filter_wat(
    HELPERS
    + """
(func (export "proxy_on_new_connection") (param $id i32) (result i32) (i32.const 0))
(func (export "proxy_on_downstream_data") (param $id i32) (param $size i32) (param $eos i32) (result i32)
  (call $log_buffer (i32.const 2))
  (drop (call $proxy_set_buffer_bytes (i32.const 2) (i32.const 0) (i32.const 0)
          (global.get $s_prefix) (global.get $s_prefix_len)))
  (if (local.get $eos) (then (return (i32.const 0))))
  (i32.const 1))
(func (export "proxy_on_upstream_data") (param $id i32) (param $size i32) (param $eos i32) (result i32)
  (drop (call $proxy_close_stream (i32.const 2)))
  (i32.const 0))
(func (export "proxy_on_downstream_connection_close") (param $id i32) (param $peer i32)
  (drop (call $proxy_log (i32.const 2) (global.get $s_seven) (global.get $s_seven_len))))
(func (export "proxy_on_upstream_connection_close") (param $id i32) (param $peer i32))
(func (export "proxy_on_done") (param $id i32) (result i32) (i32.const 1))
(func (export "proxy_on_log") (param $id i32))
(func (export "proxy_on_delete") (param $id i32))
""",
    strings=STRINGS,
)


# -- HTTP stream callbacks ----------------------------------------------------------


def test_request_headers_on_a_fresh_context_and_the_envoy_action():
    with Driver(HTTP) as d:
        http = d.http()
        assert http.created.callback == "proxy_on_context_create"
        r = http.on_request_headers(
            {":path": "/", "X-User": "ann"}, end_of_stream=False
        )
        # The SDK's Pause, as Envoy converts it.
        assert r.value == 1
        assert r.action == "StopAllIterationAndWatermark"
        assert r.logs.info == ["ann"]
        assert http.request_headers == {":path": "/", "x-user": "ann", "x-added": "yes"}
        assert [t.name for t in r.host_calls()] == [
            "proxy_get_header_map_value",
            "proxy_log",
            "proxy_add_header_map_value",
        ]
        r = http.on_request_headers(end_of_stream=True)  # the same map again
        assert r.action == "Continue"
        assert http.request_headers.get_all("x-added") == ["yes", "yes"]


def test_allow_on_headers_stop_iteration_keeps_stop_iteration():
    vm = FilterVm(HTTP)
    plugin = vm.add_plugin(PluginConfig(allow_on_headers_stop_iteration=True))
    with vm, Driver(plugin) as d:
        r = d.http().on_request_headers({":path": "/"}, end_of_stream=False)
        assert r.action == "StopIteration"


def test_request_body_buffer_set_before_and_read_after():
    with Driver(HTTP) as d:
        http = d.http()
        r = http.on_request_body(b"hello", end_of_stream=False)
        assert r.logs.info == ["hello"]
        assert r.action == "StopIterationAndBuffer"
        assert http.request_body == b">>hello"
        http.request_body = b"whole"
        r = http.on_request_body(end_of_stream=True)
        # 7 is above StopIterationNoBuffer: Envoy caps it there.
        assert (r.value, r.action) == (7, "StopIterationNoBuffer")
        assert http.request_body == b">>whole"


def test_request_trailers():
    with Driver(HTTP) as d:
        http = d.http()
        r = http.on_request_trailers({"grpc-status": "0"})
        assert r.action == "Continue"
        assert http.request_trailers == {"grpc-status": "0", "x-checksum": "abc"}


def test_response_headers_without_a_request_and_a_local_reply():
    with Driver(HTTP) as d:
        http = d.http()
        assert http.request_headers is None
        r = http.on_response_headers({":status": "200"}, end_of_stream=True)
        assert (r.action, r.logs.info, r.local_reply) == ("Continue", ["200"], None)
        r = http.on_response_headers({":status": "201"}, end_of_stream=False)
        # A local reply stops iteration whatever the callback returned.
        assert (r.value, r.action) == (0, "StopAllIterationAndWatermark")
        assert r.local_reply is not None
        assert (r.local_reply.status, r.local_reply.body) == (403, b"denied")
        assert r.local_reply.details == "no_access"  # Envoy: whitespace as "_"
        assert http.local_reply is r.local_reply


def test_a_trap_fails_the_stream_as_envoy_does():
    with Driver(HTTP) as d:
        http = d.http()
        http.response_headers = {":status": "200"}
        r = http.on_response_body(b"data")
        assert not r.ok
        assert r.error is not None and r.error.kind == "trap"
        assert r.error.callback == "proxy_on_response_body"
        # fail_closed: CHECK_FAIL_HTTP stops iteration and answers 503.
        assert r.action == "StopIterationNoBuffer"
        assert r.local_reply is not None and r.local_reply.status == 503
        assert r.local_reply.details == "wasm_fail_stream"
        # The VM stays failed: later calls do not reach the filter.
        later = d.http()
        assert later.created.error is r.error
        r2 = later.on_request_headers({":path": "/"})
        assert r2.error is r.error and not r2.called
        assert r2.action == "StopAllIterationAndWatermark"


def test_deprecated_fail_open_continues():
    with Driver(HTTP, fail_open=True) as d:
        r = d.http().on_response_body(b"x")
        assert r.error is not None
        assert (r.action, r.local_reply) == ("Continue", None)


def test_on_log_alone_on_a_stream_the_filter_never_saw():
    with Driver(HTTP) as d:
        http = d.http()
        r = http.on_log()
        # Absent maps read as missing in the access log; writes are refused.
        assert r.logs.warn == ["missing"]
        assert [t.result for t in r.host_calls("add_header_map_value")] == [
            "BAD_ARGUMENT"
        ]
        http.request_headers = [(":path", "/"), ("x-user", "bob")]
        assert http.on_log().logs.info == ["bob"]
        assert http.request_headers == [(":path", "/"), ("x-user", "bob")]


def test_finish_runs_log_done_delete_in_envoy_order():
    with Driver(HTTP) as d:
        http = d.http()
        calls = http.finish()
        assert [c.callback for c in calls] == [
            "proxy_on_log",
            "proxy_on_done",
            "proxy_on_delete",
        ]
        assert calls[1].value == 1
        assert http.id not in d.vm.contexts


def test_sample_filters_on_a_fresh_context():
    config = '{"response": {"x-served-by": "wasmkit"}}'
    for lang, root_id in (("rust", ""), ("go", ""), ("assemblyscript", "add_headers")):
        path = SAMPLES / f"add_headers.{lang}.wasm"
        with Driver(path, config=config, root_id=root_id) as d:
            http = d.http()
            r = http.on_response_headers({":status": "200"})
            assert r.ok and r.action == "Continue", lang
            assert http.response_headers["x-served-by"] == "wasmkit", lang
    with Driver(SAMPLES / "add_headers.rust.wasm", config=config) as d:
        assert d.startup_logs.info == [
            "add_headers: configured 0 request and 1 response headers"
        ]
        r = d.http().on_response_headers({":status": "200"})
        assert r.logs.info == ["add_headers: added 1 response headers"]


def test_quotas_hold_in_driver_calls():
    body = filter_wat(
        """
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (local $i i32)
  (loop $again
    (drop (call $proxy_log (i32.const 2) (global.get $s_m) (global.get $s_m_len)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br_if $again (i32.lt_u (local.get $i) (i32.const 5))))
  (i32.const 0))
""",
        strings={"m": "line"},
    )
    with Driver(body, limits=Limits(log_records=2)) as d:
        r = d.http().on_request_headers({":path": "/"})
        assert r.logs.info == ["line", "line"]
        assert any("3" in n and "log" in n for n in r.notes), r.notes


def test_fuel_limit_stops_a_runaway_callback():
    spin = filter_wat(
        """
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (loop $forever (br $forever))
  (i32.const 0))
"""
    )
    with Driver(spin, limits=Limits(fuel=100_000)) as d:
        r = d.http().on_request_headers({":path": "/"})
        assert r.error is not None and r.error.kind == "timeout"
        assert r.action == "StopAllIterationAndWatermark"


# -- callouts through the auth_callout sample --------------------------------------------


AUTH = '{"cluster": "auth", "path": "/check"}'


@pytest.mark.parametrize("lang", ["rust", "go"])
def test_http_call_response_resumes_the_stream(lang):
    with Driver(
        SAMPLES / f"auth_callout.{lang}.wasm", config=AUTH, clusters=["auth"]
    ) as d:
        http = d.http()
        r = http.on_request_headers({":path": "/", ":authority": "a", ":method": "GET"})
        assert r.action == "StopAllIterationAndWatermark"
        [call] = r.callouts
        assert (call.cluster, call.path, call.timeout_ms) == ("auth", "/check", 5000)
        reply = d.root.on_http_call_response(call.token, {":status": "200"}, b"ok")
        assert reply.continued == [StreamType.HTTP_REQUEST]
        assert http.continued == [StreamType.HTTP_REQUEST]
        assert http.request_headers["x-auth-checked"] == "yes"
        assert "auth_callout: allowed" in reply.logs.info
        assert call.outcome == "response"


def test_http_call_denied_and_failed():
    path = SAMPLES / "auth_callout.rust.wasm"
    with Driver(path, config=AUTH, clusters=["auth"]) as d:
        http = d.http()
        token = http.on_request_headers({":path": "/"}).callouts[0].token
        r = d.root.on_http_call_response(token, {":status": "401"})
        assert http.local_reply is not None
        assert (http.local_reply.status, http.local_reply.body) == (
            403,
            b"denied by auth\n",
        )
        assert r.logs.info[-1] == "auth_callout: denied (status 401)"
        other = d.http()
        token = other.on_request_headers({":path": "/"}).callouts[0].token
        r = d.root.on_http_call_response(token, None)  # Envoy's failed call
        assert r.logs.info[-1] == "auth_callout: denied (no answer)"


def test_an_undeclared_cluster_is_refused():
    with Driver(SAMPLES / "auth_callout.rust.wasm", config=AUTH) as d:
        r = d.http().on_request_headers({":path": "/"})
        assert r.callouts == []
        assert r.local_reply is not None and r.local_reply.status == 503
        assert r.logs.warn == ["auth_callout: cannot call auth"]
        assert any("no such cluster" in n for n in r.notes)


def test_root_callout_reply_maps_and_failure_status():
    with Driver(ROOT) as d:
        r = d.root.on_http_call_response(4, {":status": "204"}, b"body")
        assert r.logs.info == ["204", "body"]
        r = d.root.on_http_call_response(8, None)
        assert r.logs.info == ["reset"]


# -- root callbacks ------------------------------------------------------------------


def test_tick_queue_foreign_function_and_metrics():
    with Driver(ROOT) as d:
        root = d.root
        assert root.on_tick().metrics == {"wasmcustom.ticks": 1}
        root.on_tick()
        assert d.metric("ticks") == 2
        assert root.on_queue_ready(7).logs.info == ["seven"]
        assert root.on_queue_ready(3).logs == []
        r = root.on_foreign_function(1, b"args")
        assert r.logs.info == ["args"]
        assert r.action is None


def test_grpc_callbacks():
    with Driver(ROOT) as d:
        root = d.root
        assert root.on_grpc_receive_initial_metadata(
            1, {"grpc-encoding": "gzip"}
        ).logs.info == ["gzip"]
        assert root.on_grpc_receive(1, b"\x00msg").logs.info == ["\x00msg"]
        r = root.on_grpc_receive_trailing_metadata(1, [])
        assert r.logs.warn == ["missing"]
        assert root.on_grpc_close(1, 14, "unavailable").logs.info == ["unavailable"]


def test_root_on_done_pending_and_on_configure_again():
    with Driver(ROOT) as d:
        r = d.root.on_done()
        assert r.value == 0 and d.root.ctx.done_pending
        assert d.root.on_configure("{}").value == 1
        assert d.root.on_delete().ok


# -- TCP ----------------------------------------------------------------------------


def test_downstream_data_without_new_connection():
    with Driver(TCP) as d:
        tcp = d.tcp()
        r = tcp.on_downstream_data(b"ping")
        assert (r.action, r.logs.info) == ("StopIteration", ["ping"])
        assert tcp.downstream_data == b">>ping"
        r = tcp.on_downstream_data(end_of_stream=True)
        assert r.action == "Continue"
        assert tcp.downstream_data == b">>>>ping"


def test_tcp_connection_callbacks():
    with Driver(TCP) as d:
        tcp = d.tcp()
        assert tcp.on_new_connection().action == "Continue"
        r = tcp.on_upstream_data(b"pong", end_of_stream=True)
        assert r.closed == [StreamType.DOWNSTREAM]
        assert tcp.upstream_data == b"pong"
        assert tcp.on_downstream_connection_close().logs.info == ["seven"]
        assert tcp.on_upstream_connection_close().ok
        assert [c.callback for c in tcp.finish()] == [
            "proxy_on_done",
            "proxy_on_log",
            "proxy_on_delete",
        ]


# -- views ------------------------------------------------------------------------


def test_header_map_view():
    items = [(b":path", b"/"), (b"set-cookie", b"a"), (b"set-cookie", b"b")]
    m = HeaderMap(items)
    assert m["Set-Cookie"] == "a" and m.get_all("set-cookie") == ["a", "b"]
    assert m != {":path": "/", "set-cookie": "a"}  # a repeat is not a mapping
    assert m == [(":path", "/"), ("set-cookie", "a"), ("set-cookie", "b")]
    m["x"] = "1"
    del m["set-cookie"]
    assert items == [(b":path", b"/"), (b"x", b"1")]
    assert "X" in m and list(m) == [":path", "x"]
    assert headers({"a": "1"}) == {"A": "1"}
    with pytest.raises(KeyError):
        m["nope"]


# The callbacks return their count or size argument: the test picks the value.
ECHO = filter_wat(
    """
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local.get 1))
(func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (local.get 1))
(func (export "proxy_on_response_trailers") (param i32 i32) (result i32) (local.get 1))
(func (export "proxy_on_request_metadata") (param i32 i32) (result i32) (local.get 1))
(func (export "proxy_on_response_metadata") (param i32 i32) (result i32) (local.get 1))
(func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 3))
"""
)


@pytest.mark.parametrize(
    ("count", "action"),
    [
        (0, "Continue"),
        (1, "StopAllIterationAndWatermark"),
        (2, "ContinueAndEndStream"),
        (3, "StopAllIterationAndBuffer"),
        (4, "StopAllIterationAndWatermark"),
        (9, "StopAllIterationAndWatermark"),
    ],
)
def test_header_statuses_as_envoy_converts_them(count, action):
    with Driver(ECHO) as d:
        fields = [(f"h{i}", "v") for i in range(count)]
        r = d.http().on_request_headers(fields)
        assert (r.value, r.action) == (count, action)


def test_body_trailer_metadata_and_tcp_statuses():
    with Driver(ECHO) as d:
        http = d.http()
        assert http.on_response_body(b"ab").action == "StopIterationAndWatermark"
        assert http.on_response_body(b"abc").action == "StopIterationNoBuffer"
        assert http.on_response_trailers([("a", "1")] * 3).action == "StopIteration"
        assert http.on_response_trailers([]).action == "Continue"
        # Envoy: metadata callbacks always continue.
        assert http.on_request_metadata(5).action == "Continue"
        assert http.on_response_metadata(1).action == "Continue"
        # Not exported: Envoy goes on.
        r = http.on_request_trailers({"x": "1"})
        assert (r.value, r.action, r.called) == (None, "Continue", False)
        assert d.tcp().on_new_connection().action == "StopIteration"


def test_vm_start_again_on_a_sample():
    with Driver(SAMPLES / "add_headers.rust.wasm") as d:
        r = d.root.on_vm_start()
        assert r.value == 1 and r.called
        assert r.context_id == d.root.id


def test_a_source_folder_is_built_through_the_cache():
    source = SAMPLES.parents[1] / "samples" / "filters" / "add_headers" / "go"
    with Driver(source, config='{"request": {"x-go": "yes"}}') as d:
        http = d.http()
        assert http.on_request_headers({":path": "/"}).action == "Continue"
        assert http.request_headers["x-go"] == "yes"


def test_fail_reload_reloads_for_a_new_context_after_the_backoff():
    with Driver(HTTP, failure_policy="fail_reload", reload_backoff_ms=100) as d:
        broken = d.http()
        first = broken.on_response_body(b"x")
        assert first.error is not None
        waiting = d.http()
        assert waiting.created.error is first.error  # within the backoff
        old_root = d.root.ctx
        d.advance(1_000)
        # Envoy reloads only an instance no stream uses any more.
        assert d.http().created.error is first.error
        for ctx in list(d.vm.streams.values()):
            ctx.on_delete()
        again = d.http()
        assert again.created.ok and d.vm.failed is None
        assert d.root.ctx is not old_root
        r = again.on_request_headers({":path": "/", "x-user": "cy"})
        assert (r.ok, r.logs.info) == (True, ["cy"])
