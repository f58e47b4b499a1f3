"""Ticks, HTTP callouts, shared data, queues and metrics on real WAT filters."""

from __future__ import annotations

from wasmkit.abi import pairs
from wasmkit.host import FilterVm, PluginConfig, load, request, response
from wasmkit.host.callouts import CalloutReply
from wasmkit.host.shared import SharedState
from wasmkit.testing import filter_wat

TICKER = filter_wat(
    """
    (global $ticks (mut i32) (i32.const 0))
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 100)))
      (i32.const 1))
    (func (export "proxy_on_tick") (param i32)
      (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
      (drop (call $proxy_log (i32.const 2) (global.get $s_t) (global.get $s_t_len)))
      ;; after three ticks, stop the ticker
      (if (i32.eq (global.get $ticks) (i32.const 3))
        (then (drop (call $proxy_set_tick_period_milliseconds (i32.const 0))))))
    """,
    strings={"t": "tick"},
)


def test_ticks_follow_the_virtual_clock():
    vm = FilterVm(TICKER)
    vm.add_plugin(PluginConfig())
    start = vm.clock.now_ns()
    vm.advance(99)
    assert [r.message for r in vm.logs] == []
    vm.advance(1)
    assert [r.message for r in vm.logs] == ["tick"]
    vm.advance(1000)
    assert [r.message for r in vm.logs] == ["tick", "tick", "tick"]
    ticks = [t for t in vm.trace if t.name == "proxy_on_tick"]
    assert [t.context_id for t in ticks] == [1, 1, 1]
    assert vm.clock.now_ns() - start == 1_100_000_000


# Asks the "auth" cluster before letting a request through: Pause, then in the
# callout response continue (200) or deny with 403.
AUTH = filter_wat(
    """
    (global $stream (mut i32) (i32.const 0))
    (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
      (local $status i32)
      (global.set $stream (local.get $ctx))
      (local.set $status (call $proxy_http_call
        (global.get $s_cluster) (global.get $s_cluster_len)
        (global.get $s_hdrs) (global.get $s_hdrs_len)
        (global.get $s_body) (global.get $s_body_len)
        (i32.const 0) (i32.const 0)
        (global.get $timeout) (i32.const 600)))
      (i32.store (i32.const 604) (local.get $status))
      (if (local.get $status) (then (return (i32.const 0))))
      (i32.const 1))
    (global $timeout (mut i32) (i32.const 1000))
    (func (export "set_timeout") (param i32) (global.set $timeout (local.get 0)))
    (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32)
          (param $nh i32) (param $body i32) (param $nt i32)
      (drop (call $proxy_set_effective_context (global.get $stream)))
      (if (i32.eqz (local.get $nh))
        (then (call $deny) (return)))
      (drop (call $proxy_get_header_map_value (i32.const 6)
        (global.get $s_status) (global.get $s_status_len) (i32.const 608) (i32.const 612)))
      (drop (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (local.get $body)
        (i32.const 616) (i32.const 620)))
      (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 616)) (i32.load (i32.const 620))))
      (if (i32.eq (i32.load8_u (i32.load (i32.const 608))) (i32.const 50))  ;; "2xx"
        (then (drop (call $proxy_continue_stream (i32.const 0))))
        (else (call $deny))))
    (func $deny
      (drop (call $proxy_send_local_response (i32.const 403)
        (i32.const 0) (i32.const 0) (global.get $s_no) (global.get $s_no_len)
        (i32.const 0) (i32.const 0) (i32.const -1))))
    """,
    strings={
        "cluster": "auth",
        "hdrs": pairs.encode(
            [
                (b":method", b"GET"),
                (b":path", b"/check"),
                (b":authority", b"auth.local"),
            ]
        ),
        "body": "who?",
        "status": ":status",
        "no": "denied",
    },
)


def test_callout_allows_the_request():
    plugin = load(AUTH, responder={"auth": {"status": 200, "body": "welcome"}})
    result = plugin.run_http(request("GET", "http://h/x"), response(200, [], "data"))
    assert result.error is None and result.stalled is None
    assert result.request_forwarded
    assert result.response_after.body == b"data"
    assert [r.message for r in result.logs] == ["welcome"]
    (call,) = plugin.vm.callouts
    assert (call.cluster, call.method, call.path, call.authority) == (
        "auth",
        "GET",
        "/check",
        "auth.local",
    )
    assert call.body == b"who?"
    assert call.timeout_ms == 1000
    assert call.outcome == "response" and call.response.status == 200
    assert (
        call.token == 4 and call.context_id == result.context_id and call.root_id == 1
    )
    names = [t.name for t in result.trace if t.kind == "callback"]
    assert names.index("proxy_on_request_headers") < names.index(
        "proxy_on_http_call_response"
    )


def test_callout_denies_with_a_local_reply():
    plugin = load(AUTH, responder={"auth /check": {"status": 401, "body": "nope"}})
    result = plugin.run_http(request(), response(200))
    assert not result.request_forwarded
    assert result.response_after.status == 403
    assert result.response_after.body == b"denied"
    assert result.local_reply.callback == "proxy_on_http_call_response"


def test_callout_latency_moves_the_clock():
    plugin = load(
        AUTH,
        responder=lambda call: CalloutReply(
            response(200, [], "late ok"), latency_ms=250
        ),
        clusters=["auth"],
    )
    start = plugin.vm.clock.now_ns()
    result = plugin.run_http(request(), response())
    assert result.request_forwarded
    assert plugin.vm.clock.now_ns() - start == 250_000_000
    assert plugin.vm.callouts[0].to_json()["latency_ms"] == 250.0


def test_callout_without_answer_times_out_with_504():
    plugin = load(AUTH, responder=lambda call: None, clusters=["auth"])
    result = plugin.run_http(request(), response())
    (call,) = plugin.vm.callouts
    assert call.outcome == "timeout" and call.response.status == 504
    assert result.response_after.status == 403  # the filter denies on non-2xx


def test_callout_failure_has_no_headers_and_a_status():
    plugin = load(AUTH, responder={"auth": {"fail": True}})
    result = plugin.run_http(request(), response())
    assert plugin.vm.callouts[0].outcome == "failure"
    assert result.response_after.status == 403
    assert plugin.root.last_status == (11, b"reset")


def test_unknown_cluster_is_bad_argument_and_the_request_goes_on():
    plugin = load(AUTH, responder={"other": {"status": 200}})
    result = plugin.run_http(request(), response(200))
    (call,) = [t for t in result.trace if t.name == "proxy_http_call"]
    assert call.result == "BAD_ARGUMENT"
    assert result.request_forwarded
    assert plugin.vm.callouts == []
    # Without any responder no cluster exists, as in Envoy without clusters.
    bare = load(AUTH).run_http(request(), response(200))
    assert [t.result for t in bare.trace if t.name == "proxy_http_call"] == [
        "BAD_ARGUMENT"
    ]


def test_callout_missing_pseudo_headers_is_bad_argument():
    bad = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $proxy_http_call (global.get $s_c) (global.get $s_c_len)
               (global.get $s_h) (global.get $s_h_len) (i32.const 0) (i32.const 0)
               (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 600)))
             (i32.const 0))""",
        strings={"c": "auth", "h": pairs.encode([(b":method", b"GET")])},
    )
    result = load(bad, responder={"auth": {}}).run_http(request(), response())
    assert [t.result for t in result.trace if t.name == "proxy_http_call"] == [
        "BAD_ARGUMENT"
    ]


SHARED = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      ;; get (value, cas), then write with that cas, then again with the stale cas
      (i32.store (i32.const 700) (call $proxy_get_shared_data
        (global.get $s_k) (global.get $s_k_len) (i32.const 600) (i32.const 604) (i32.const 608)))
      (i32.store (i32.const 704) (call $proxy_set_shared_data
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)
        (i32.load (i32.const 608))))
      (i32.store (i32.const 708) (call $proxy_set_shared_data
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)
        (i32.load (i32.const 608))))
      (i32.const 0))
    """,
    strings={"k": "counter", "v": "seen"},
)


def test_shared_data_is_shared_across_vms_with_cas():
    shared = SharedState()
    a = load(SHARED, shared=shared, vm_id="one")
    b = load(SHARED, shared=shared, vm_id="one")
    other = load(SHARED, shared=shared, vm_id="two")
    first = a.run_http(request(), response())
    statuses = [t.result for t in first.trace if t.kind == "hostcall"]
    # Absent: the cas left at 0 makes both writes unconditional.
    assert statuses == ["NOT_FOUND", "OK", "OK"]
    second = b.run_http(request(), response())
    statuses = [t.result for t in second.trace if t.kind == "hostcall"]
    # Found with cas 2; first write with it succeeds, the repeat is stale.
    assert statuses == ["OK", "OK", "CAS_MISMATCH"]
    assert shared.get("one", b"counter") == (b"seen", 3)
    third = other.run_http(request(), response())
    assert next(t.result for t in third.trace if t.kind == "hostcall") == "NOT_FOUND"


RECEIVER = filter_wat(
    """
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_register_shared_queue (global.get $s_q) (global.get $s_q_len)
        (i32.const 600)))
      (i32.const 1))
    (func (export "proxy_on_queue_ready") (param $root i32) (param $id i32)
      (block $done (loop $more
        (br_if $done (call $proxy_dequeue_shared_queue (local.get $id)
          (i32.const 604) (i32.const 608)))
        (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 604)) (i32.load (i32.const 608))))
        (br $more))))
    """,
    strings={"q": "jobs"},
)

SENDER = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_resolve_shared_queue (global.get $s_vm) (global.get $s_vm_len)
        (global.get $s_q) (global.get $s_q_len) (i32.const 600)))
      (drop (call $proxy_enqueue_shared_queue (i32.load (i32.const 600))
        (global.get $s_a) (global.get $s_a_len)))
      (drop (call $proxy_enqueue_shared_queue (i32.load (i32.const 600))
        (global.get $s_b) (global.get $s_b_len)))
      (i32.const 0))
    """,
    strings={"vm": "receiver", "q": "jobs", "a": "job-1", "b": "job-2"},
)


def test_queue_items_reach_the_receiving_vm():
    shared = SharedState()
    receiver = load(RECEIVER, shared=shared, vm_id="receiver")
    sender = load(SENDER, shared=shared, vm_id="sender")
    result = sender.run_http(request(), response())
    assert [t.result for t in result.trace if t.kind == "hostcall"] == [
        "OK",
        "OK",
        "OK",
    ]
    assert shared.queue_sizes() == {"receiver/jobs": 2}
    # The receiver's on_queue_ready runs when its VM gets time.
    receiver.vm.advance(0)
    assert [r.message for r in receiver.vm.logs] == ["job-1", "job-2"]
    assert shared.queue_sizes() == {"receiver/jobs": 0}


METRICS = filter_wat(
    """
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_define_metric (i32.const 0) (global.get $s_c) (global.get $s_c_len)
        (i32.const 600)))
      (drop (call $proxy_define_metric (i32.const 1) (global.get $s_g) (global.get $s_g_len)
        (i32.const 604)))
      (drop (call $proxy_define_metric (i32.const 2) (global.get $s_h) (global.get $s_h_len)
        (i32.const 608)))
      (i32.store (i32.const 700) (call $proxy_define_metric (i32.const 3)
        (global.get $s_h) (global.get $s_h_len) (i32.const 612)))
      (i32.const 1))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_increment_metric (i32.load (i32.const 600)) (i64.const 1)))
      (drop (call $proxy_increment_metric (i32.load (i32.const 600)) (i64.const -1)))
      (drop (call $proxy_increment_metric (i32.load (i32.const 604)) (i64.const -5)))
      (drop (call $proxy_record_metric (i32.load (i32.const 608)) (i64.const 42)))
      (drop (call $proxy_get_metric (i32.load (i32.const 600)) (i32.const 616)))
      (drop (call $proxy_get_metric (i32.load (i32.const 608)) (i32.const 616)))
      (i32.const 0))
    """,
    strings={"c": "requests", "g": "inflight", "h": "sizes"},
)


def test_metrics_defined_updated_and_read():
    plugin = load(METRICS)
    vm = plugin.vm
    ids = [vm.mem.read_u32(a) for a in (600, 604, 608)]
    assert ids == [4, 5, 6]  # per-type sequences; low two bits: the type
    assert vm.mem.read_u32(700) == 2  # BAD_ARGUMENT for an unknown type
    for _ in range(2):
        result = plugin.run_http(request(), response())
    statuses = [t.result for t in result.trace if t.kind == "hostcall"]
    assert statuses == ["OK", "BAD_ARGUMENT", "OK", "OK", "OK", "BAD_ARGUMENT"]
    assert vm.metrics.table() == [
        {
            "name": "wasmcustom.requests",
            "type": "counter",
            "value": 2,
            "count": None,
            "samples": None,
        },
        {
            "name": "wasmcustom.inflight",
            "type": "gauge",
            "value": -10,
            "count": None,
            "samples": None,
        },
        {
            "name": "wasmcustom.sizes",
            "type": "histogram",
            "value": None,
            "count": 2,
            "samples": [42, 42],
        },
    ]


def test_a_proxy_runs_several_vms_on_one_clock():
    from wasmkit.host import Proxy

    proxy = Proxy()
    receiver = proxy.add_vm(RECEIVER, vm_id="receiver")
    receiver.add_plugin(PluginConfig(root_id="r"))
    sender_vm = proxy.add_vm(SENDER, vm_id="sender")
    sender = sender_vm.add_plugin(PluginConfig(root_id="s"))
    ticker = proxy.add_vm(TICKER, vm_id="ticker")
    ticker.add_plugin(PluginConfig())
    # The receiver hears about the items right after the sender's callback.
    sender.run_http(request(), response())
    assert [r.message for r in receiver.logs] == ["job-1", "job-2"]
    proxy.advance(250)
    assert [r.message for r in ticker.logs] == ["tick", "tick"]
    assert receiver.clock is sender_vm.clock is ticker.clock
    assert receiver.clock.monotonic_ns() == 1_000_000_000 + 250_000_000
    proxy.close()


def test_first_write_with_a_cas_succeeds_as_in_cpp_host():
    state = SharedState()
    assert state.set("v", b"k", b"one", cas=12345).name == "OK"
    value, cas = state.get("v", b"k")
    assert value == b"one"
    assert state.set("v", b"k", b"two", cas=cas + 1).name == "CAS_MISMATCH"
    assert state.set("v", b"k", b"two", cas=cas).name == "OK"
    assert state.get("v", b"k")[0] == b"two"


# Calls cluster ``cluster`` with a POST /check and an 11-byte body; logs
# "http_call refused" when the host refuses, else, in the response callback,
# the response headers as "k;v;k;v;", then resumes the request.
def callout_logger(cluster: str = "auth") -> str:
    headers = pairs.encode(
        [(b":method", b"POST"), (b":path", b"/check"), (b":authority", b"auth")]
    )
    return filter_wat(
        """
        (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32)
          (result i32)
          (i32.store (i32.const 0x38010) (local.get $ctx))
          (if (i32.eqz (call $proxy_http_call
                (global.get $s_cluster) (global.get $s_cluster_len)
                (global.get $s_hdrs) (global.get $s_hdrs_len)
                (global.get $s_body) (global.get $s_body_len)
                (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 0x38020)))
            (then (return (i32.const 1))))
          (drop (call $proxy_log (i32.const 2) (global.get $s_bad) (global.get $s_bad_len)))
          (i32.const 0))
        (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
          (local $p i32) (local $size i32) (local $data i32) (local $i i32)
          (drop (call $proxy_get_header_map_pairs
            (i32.const 6) (i32.const 0x38000) (i32.const 0x38004)))
          (local.set $p (i32.load (i32.const 0x38000)))
          (local.set $data (i32.add (i32.add (local.get $p) (i32.const 4))
            (i32.mul (i32.load (local.get $p)) (i32.const 8))))
          (local.set $size (i32.sub (i32.load (i32.const 0x38004))
            (i32.sub (local.get $data) (local.get $p))))
          (block $done (loop $each
            (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
            (if (i32.eqz (i32.load8_u (i32.add (local.get $data) (local.get $i))))
              (then (i32.store8 (i32.add (local.get $data) (local.get $i))
                (i32.const 59))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $each)))
          (drop (call $proxy_log (i32.const 2) (local.get $data) (local.get $size)))
          (drop (call $proxy_set_effective_context (i32.load (i32.const 0x38010))))
          (drop (call $proxy_continue_stream (i32.const 0))))
        """,
        strings={
            "cluster": cluster,
            "hdrs": headers,
            "body": "hello world",
            "bad": "http_call refused",
        },
        memory_pages=4,
    )


AUTH_OK = {"auth": {"status": 200, "headers": {"x-from": "auth"}, "body": "ok"}}


def test_a_callout_is_sent_and_answered_as_envoys_async_client_does():
    plugin = load(callout_logger(), responder=AUTH_OK)
    result = plugin.run_http(request(), response())
    (call,) = result.callouts
    # A body gets content-length (Envoy's test AsyncCall: content-length: 11).
    assert call.headers == [
        (b":method", b"POST"),
        (b":path", b"/check"),
        (b":authority", b"auth"),
        (b"content-length", b"11"),
    ]
    # The filter reads what the responder sent and the router's
    # x-envoy-upstream-service-time (ms, virtual time: the latency).
    assert [log.message for log in result.logs] == [
        ":status;200;x-from;auth;x-envoy-upstream-service-time;0;"
    ]
    assert call.response.headers == [(b":status", b"200"), (b"x-from", b"auth")]
    late = {"auth": {"status": 200, "latency_ms": 37}}
    result = load(callout_logger(), responder=late).run_http(request(), response())
    assert [log.message for log in result.logs] == [
        ":status;200;x-envoy-upstream-service-time;37;"
    ]


def test_only_declared_clusters_exist_whatever_would_answer():
    def answer(call):
        return response(200, [("x-from", call.cluster)], "ok")

    # A function responder names no cluster: Envoy has none, BadArgument.
    refused = load(callout_logger(), responder=answer).run_http(request(), response())
    assert [log.message for log in refused.logs] == ["http_call refused"]
    assert refused.callouts == [] and refused.request_forwarded
    (note,) = [n for n in refused.notes if "cluster" in n]
    assert note.startswith("proxy_http_call to cluster 'auth': Envoy has no such")
    assert "clusters=['auth']" in note
    # Declared, it is answered; a table's keys and clusters= add up.
    plugin = load(callout_logger(), responder=answer, clusters=["auth"])
    assert plugin.run_http(request(), response()).callouts[0].outcome == "response"
    plugin = load(callout_logger("other"), responder=AUTH_OK, clusters=["other"])
    assert plugin.vm.events.clusters == {"auth", "other"}
    assert plugin.run_http(request(), response()).callouts[0].cluster == "other"
    # A table answers only its own keys.
    result = load(callout_logger("nowhere"), responder=AUTH_OK).run_http(
        request(), response()
    )
    assert [log.message for log in result.logs] == ["http_call refused"]
