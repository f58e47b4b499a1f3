"""WAT probes that behave as the modules of Envoy's Wasm tests do.

Each mirrors one of ``test/extensions/filters/http/wasm/test_data`` (and
``network/wasm/test_data``), with the same log lines at the same levels, so
the tests of ``test_envoy_suite.py`` assert Envoy's expected logs verbatim:

* :data:`PANIC` (``test_panic_cpp`` / ``panic_rust``): every stream callback
  traps.
* :data:`CLOSE_STREAM` (``test_close_stream_cpp``): request headers close the
  request, response headers the response; both continue.
* :data:`ASYNC_CALL` (``test_async_call_cpp``): request headers call cluster
  ``cluster`` (``POST /``, authority ``foo``, body ``hello world``, trailer
  ``trail: cow``, 1 s): ``async_call rejected`` when the dispatch fails, else
  ``onRequestHeaders``; the reply logs ``:status -> <code>`` and the body
  (debug), a failed call ``async_call failed``. Request headers stop.
* :data:`HEADERS` (the ``headers`` part of ``test_cpp``): ``onRequestHeaders
  <id> headers`` (debug), ``header path <path>`` (info), ``onLog <id> <path>
  <status>`` and ``onDone <id>`` (warn), ``duration is <ns>`` (info) at log
  time when ``request.duration`` exists.
* :data:`SHARED_QUEUE` (``test_shared_queue_cpp``): the root registers
  ``my_shared_queue``; request headers enqueue ``data1`` (``onRequestHeaders
  enqueue Ok``); ``onQueueReady`` dequeues with a bad token first.
* :data:`TICK_RESUME` (``headers`` with ``server: envoy-wasm-pause``): request
  headers stop; the root's ``onTick`` resumes that stream and sets header
  ``server: envoy-wasm-continue``.
"""

from __future__ import annotations

from wasmkit.abi import pairs
from wasmkit.testing import filter_wat

TRACE, DEBUG, INFO, WARN, ERROR, CRITICAL = range(6)

# A line is built at 4096.. ($n long) and logged by $emit.
_LINE = """
(global $n (mut i32) (i32.const 0))
(func $start (global.set $n (i32.const 0)))
(func $str (param $p i32) (param $l i32)
  (memory.copy (i32.add (i32.const 4096) (global.get $n)) (local.get $p) (local.get $l))
  (global.set $n (i32.add (global.get $n) (local.get $l))))
(func $num (param $v i64)
  (local $i i32)
  (if (i64.eqz (local.get $v)) (then
    (i32.store8 (i32.add (i32.const 4096) (global.get $n)) (i32.const 48))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (return)))
  (block $d (loop $l
    (br_if $d (i64.eqz (local.get $v)))
    (i32.store8 (i32.add (i32.const 3072) (local.get $i))
      (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
    (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $l)))
  (block $e (loop $m
    (br_if $e (i32.eqz (local.get $i)))
    (local.set $i (i32.sub (local.get $i) (i32.const 1)))
    (i32.store8 (i32.add (i32.const 4096) (global.get $n))
      (i32.load8_u (i32.add (i32.const 3072) (local.get $i))))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (br $m))))
;; appends a header's value (nothing when absent)
(func $header (param $map i32) (param $k i32) (param $kl i32)
  (if (i32.eqz (call $proxy_get_header_map_value (local.get $map) (local.get $k)
                 (local.get $kl) (i32.const 512) (i32.const 516)))
    (then (call $str (i32.load (i32.const 512)) (i32.load (i32.const 516))))))
(func $emit (param $level i32)
  (drop (call $proxy_log (local.get $level) (i32.const 4096) (global.get $n))))
"""


def _s(name: str) -> str:
    return f"(call $str (global.get $s_{name}) (global.get $s_{name}_len))"


def _say(level: int, *parts: str) -> str:
    return "(call $start) " + " ".join(parts) + f" (call $emit (i32.const {level}))"


_CREATE = '(func (export "proxy_on_context_create") (param i32 i32))\n'

PANIC = filter_wat(
    _CREATE
    + "\n".join(
        f'(func (export "proxy_on_{name}") {params} (result i32) unreachable)'
        for name, params in [
            ("request_headers", "(param i32 i32 i32)"),
            ("request_body", "(param i32 i32 i32)"),
            ("request_trailers", "(param i32 i32)"),
            ("response_headers", "(param i32 i32 i32)"),
            ("response_body", "(param i32 i32 i32)"),
            ("response_trailers", "(param i32 i32)"),
            ("new_connection", "(param i32)"),
            ("downstream_data", "(param i32 i32 i32)"),
            ("upstream_data", "(param i32 i32 i32)"),
        ]
    )
)

CLOSE_STREAM = filter_wat(
    _CREATE
    + """
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_close_stream (i32.const 0))) (i32.const 0))
(func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_close_stream (i32.const 1))) (i32.const 0))
"""
)

CALLOUT_HEADERS = [(b":method", b"POST"), (b":path", b"/"), (b":authority", b"foo")]

ASYNC_CALL = filter_wat(
    _LINE
    + _CREATE
    + f"""
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (if (call $proxy_http_call (global.get $s_cluster) (global.get $s_cluster_len)
        (global.get $s_headers) (global.get $s_headers_len)
        (global.get $s_body) (global.get $s_body_len)
        (global.get $s_trailers) (global.get $s_trailers_len)
        (i32.const 1000) (i32.const 520))
    (then {_say(INFO, _s("rejected"))})
    (else {_say(INFO, _s("onrh"))}))
  (i32.const 1))
(func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
  (if (i32.eqz (local.get 2))
    (then {_say(INFO, _s("failed"))} (return)))
  {_say(INFO, _s("status"), _s("arrow"), "(call $header (i32.const 6) (global.get $s_status) (global.get $s_status_len))")}
  (drop (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (local.get 3)
          (i32.const 512) (i32.const 516)))
  {_say(DEBUG, "(call $str (i32.load (i32.const 512)) (i32.load (i32.const 516)))")})
""",
    strings={
        "cluster": "cluster",
        "headers": pairs.encode(CALLOUT_HEADERS),
        "body": "hello world",
        "trailers": pairs.encode([(b"trail", b"cow")]),
        "rejected": "async_call rejected",
        "onrh": "onRequestHeaders",
        "failed": "async_call failed",
        "status": ":status",
        "arrow": " -> ",
    },
)

HEADERS = filter_wat(
    _LINE
    + _CREATE
    + f"""
(func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
  {
        _say(
            DEBUG,
            _s("onrh"),
            "(call $num (i64.extend_i32_u (local.get $id)))",
            _s("headers"),
        )
    }
  {
        _say(
            INFO,
            _s("hpath"),
            "(call $header (i32.const 0) (global.get $s_path) (global.get $s_path_len))",
        )
    }
  (i32.const 0))
(func (export "proxy_on_log") (param $id i32)
  {
        _say(
            WARN,
            _s("onlog"),
            "(call $num (i64.extend_i32_u (local.get $id)))",
            _s("sp"),
            "(call $header (i32.const 0) (global.get $s_path) (global.get $s_path_len))",
            _s("sp"),
            "(call $header (i32.const 2) (global.get $s_status) (global.get $s_status_len))",
        )
    }
  (if (i32.eqz (call $proxy_get_property (global.get $s_dur) (global.get $s_dur_len)
                 (i32.const 512) (i32.const 516)))
    (then {
        _say(
            INFO, _s("durationis"), "(call $num (i64.load (i32.load (i32.const 512))))"
        )
    })))
(func (export "proxy_on_done") (param $id i32) (result i32)
  {_say(WARN, _s("ondone"), "(call $num (i64.extend_i32_u (local.get $id)))")}
  (i32.const 1))
""",
    strings={
        "onrh": "onRequestHeaders ",
        "headers": " headers",
        "hpath": "header path ",
        "path": ":path",
        "status": ":status",
        "onlog": "onLog ",
        "sp": " ",
        "ondone": "onDone ",
        "dur": "request\0duration",
        "durationis": "duration is ",
    },
)

SHARED_QUEUE = filter_wat(
    _LINE
    + _CREATE
    + f"""
(global $token (mut i32) (i32.const 0))
(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
  (drop (call $proxy_register_shared_queue (global.get $s_queue) (global.get $s_queue_len)
          (i32.const 520)))
  (global.set $token (i32.load (i32.const 520)))
  (i32.const 1))
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (if (i32.eqz (call $proxy_enqueue_shared_queue (global.get $token)
                 (global.get $s_data) (global.get $s_data_len)))
    (then {_say(WARN, _s("enqueued"))}))
  (i32.const 0))
(func (export "proxy_on_queue_ready") (param i32) (param $token i32)
  (if (i32.eq (call $proxy_dequeue_shared_queue (i32.const 9999999) (i32.const 512)
                (i32.const 516)) (i32.const 1))
    (then {_say(WARN, _s("badtoken"))}))
  (if (i32.eqz (call $proxy_dequeue_shared_queue (local.get $token) (i32.const 512)
                 (i32.const 516)))
    (then {_say(DEBUG, _s("datasp"), "(call $str (i32.load (i32.const 512)) (i32.load (i32.const 516)))", _s("ok"))}))
  (if (i32.eq (call $proxy_dequeue_shared_queue (local.get $token) (i32.const 512)
                (i32.const 516)) (i32.const 7))
    (then {_say(WARN, _s("extra"))}))
  {_say(INFO, _s("ready"))})
""",
    strings={
        "queue": "my_shared_queue",
        "data": "data1",
        "enqueued": "onRequestHeaders enqueue Ok",
        "badtoken": "onQueueReady bad token not found",
        "datasp": "data ",
        "ok": " Ok",
        "extra": "onQueueReady extra data not found",
        "ready": "onQueueReady",
    },
)

TICK_RESUME = filter_wat(
    _CREATE
    + """
(global $paused (mut i32) (i32.const 0))
(func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
  (global.set $paused (local.get $id))
  (i32.const 1))
(func (export "proxy_on_tick") (param i32)
  (if (global.get $paused) (then
    (drop (call $proxy_set_effective_context (global.get $paused)))
    (drop (call $proxy_replace_header_map_value (i32.const 0)
            (global.get $s_server) (global.get $s_server_len)
            (global.get $s_continue) (global.get $s_continue_len)))
    (drop (call $proxy_continue_stream (i32.const 0)))
    (global.set $paused (i32.const 0)))))
""",
    strings={"server": "server", "continue": "envoy-wasm-continue"},
)
