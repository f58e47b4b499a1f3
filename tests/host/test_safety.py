"""Hostile filters: traps, endless loops, memory bombs, garbage arguments."""

from __future__ import annotations

import time

import pytest

from wasmkit.errors import FilterLoadError, FilterTrapError
from wasmkit.host import FilterVm, Limits, PluginConfig, load, request, response
from wasmkit.testing import filter_wat

# Traps on requests whose path is /boom, passes others through.
TRAP_ON_BOOM = filter_wat(
    """
    (func $check (param $ctx i32)
      (drop (call $proxy_get_header_map_value (i32.const 0)
        (global.get $s_path) (global.get $s_path_len) (i32.const 512) (i32.const 516)))
      (if (i32.eq (i32.load (i32.const 516)) (i32.const 5))
        (then (call $explode))))
    (func $explode unreachable)
    (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
      (call $check (local.get $ctx))
      (i32.const 0))
    (func (export "proxy_on_log") (param i32))
    """,
    strings={"path": ":path"},
)


def test_trap_names_callback_context_and_backtrace_and_host_stays_usable():
    plugin = load(TRAP_ON_BOOM)
    bad = plugin.run_http(request("GET", "http://h/boom"), response())
    err = bad.error
    assert isinstance(err, FilterTrapError)
    assert err.kind == "trap"
    assert err.callback == "proxy_on_request_headers"
    assert err.context_id == 2
    assert err.trap_code == "UNREACHABLE"
    assert "unreachable" in str(err)
    assert err.wasm_backtrace[0].startswith("#0 explode")
    assert any("check" in frame for frame in err.wasm_backtrace)
    # Fail-closed: the client gets a 503, the upstream is never asked.
    assert bad.response_after.status == 503
    assert bad.response_before is None
    # Envoy keeps the VM failed: the next stream gets the 503 without the
    # filter being called.
    later = plugin.run_http(request("GET", "http://h/ok"), response(200))
    assert later.response_after.status == 503 and not later.request_forwarded
    assert [t for t in later.trace if t.kind == "callback"] == []
    assert "fail_closed answers 503 (wasm_fail_stream)" in str(later.error)
    # The host itself stays usable: fail_reload restarts the VM after its
    # backoff, and the next stream works.
    plugin = load(TRAP_ON_BOOM, failure_policy="fail_reload")
    assert plugin.run_http(request("GET", "http://h/boom"), response()).error
    plugin.vm.advance(1500)
    good = plugin.run_http(request("GET", "http://h/ok"), response(200))
    assert good.error is None
    assert good.response_after.status == 200
    assert [t.name for t in good.trace if t.kind == "callback"][-1] == "proxy_on_log"


def test_fail_open_lets_traffic_through():
    plugin = load(TRAP_ON_BOOM, fail_open=True)
    result = plugin.run_http(request("GET", "http://h/boom"), response(201, [], "x"))
    assert result.error is not None and result.error.kind == "trap"
    assert result.request_forwarded
    assert result.response_after.status == 201
    assert result.response_after.body == b"x"


OOB = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (i32.store (i32.const 0x7ffffff0) (i32.const 1)) (i32.const 0))"""
)


def test_out_of_bounds_access_is_a_trap():
    result = load(OOB).run_http(request(), response())
    assert result.error.kind == "trap"
    assert result.error.trap_code == "MEMORY_OUT_OF_BOUNDS"
    assert "out of bounds" in str(result.error)


LOOP = filter_wat(
    """(func $spin (loop $l (br $l)))
       (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (call $spin) (i32.const 0))"""
)


# Calls the host function "nap" three times, then spins when the path is /spin.
NAPS = filter_wat(
    """
    (func $nap (drop (call $proxy_call_foreign_function (global.get $s_n)
      (global.get $s_n_len) (i32.const 0) (i32.const 0) (i32.const 600) (i32.const 604))))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $nap) (call $nap) (call $nap)
      (drop (call $proxy_get_header_map_value (i32.const 0)
        (global.get $s_path) (global.get $s_path_len) (i32.const 512) (i32.const 516)))
      (if (i32.eq (i32.load (i32.const 516)) (i32.const 5))
        (then (loop $l (br $l))))
      (i32.const 0))
    """,
    strings={"n": "nap", "path": ":path"},
)


def test_time_limits_count_cpu_time_not_a_busy_machine():
    # Three host calls that wait 0.25 s each without using the CPU (as on a
    # machine busy with other work) do not use up a 400 ms limit; spinning
    # after them does, stopped by the epoch.
    plugin = load(NAPS, limits=Limits(timeout_ms=400), failure_policy="fail_reload")
    plugin.vm.register_foreign_function("nap", lambda data: time.sleep(0.25) or b"")
    start = time.monotonic()
    calm = plugin.run_http(request("GET", "http://h/ok"), response(200))
    assert calm.error is None, calm.error
    assert calm.response_after.status == 200
    assert time.monotonic() - start >= 0.75
    start = time.monotonic()
    spun = plugin.run_http(request("GET", "http://h/spin"), response(200))
    assert spun.error is not None and spun.error.kind == "timeout"
    assert "400 ms per callback" in str(spun.error)
    assert time.monotonic() - start < 5


def test_endless_loop_ends_in_bounded_time():
    plugin = load(LOOP, limits=Limits(timeout_ms=100))
    start = time.monotonic()
    result = plugin.run_http(request(), response())
    elapsed = time.monotonic() - start
    assert result.error.kind == "timeout"
    assert "100 ms" in str(result.error)
    assert result.error.callback == "proxy_on_request_headers"
    assert elapsed < 5
    again = plugin.run_http(request(), response())
    assert again.error.kind == "timeout"


def test_endless_loop_with_fuel_is_deterministic():
    plugin = load(LOOP, limits=Limits(fuel=100_000, timeout_ms=None))
    result = plugin.run_http(request(), response())
    assert result.error.kind == "timeout"
    assert result.error.trap_code == "OUT_OF_FUEL"
    assert "100000 instructions" in str(result.error)


def test_loop_in_startup_is_bounded():
    wat = filter_wat('(func (export "_initialize") (loop $l (br $l)))')
    with pytest.raises(FilterLoadError, match="start-up failed"):
        load(wat, limits=Limits(startup_timeout_ms=100))


BOMB = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (loop $grow
           (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
         unreachable)"""
)


def test_memory_bomb_hits_the_cap():
    plugin = load(BOMB, limits=Limits(memory_bytes=8 * 1024 * 1024))
    result = plugin.run_http(request(), response())
    assert result.error.kind == "memory"
    assert "8388608 byte limit" in str(result.error)
    assert plugin.run_http(request(), response()).error.kind == "memory"


def test_memory_bomb_in_one_step_with_oom_message():
    # One huge allocation fails; the guest reports it on stderr, then aborts.
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (if (i32.eq (memory.grow (i32.const 30000)) (i32.const -1))
               (then
                 (i32.store (i32.const 600) (global.get $s_msg))
                 (i32.store (i32.const 604) (global.get $s_msg_len))
                 (drop (call $wasi_fd_write (i32.const 2) (i32.const 600) (i32.const 1)
                                            (i32.const 608)))
                 (call $wasi_proc_exit (i32.const 1))))
             (i32.const 0))""",
        strings={"msg": "memory allocation of 1966080000 bytes failed\n"},
        wasi=True,
    )
    result = load(wat, limits=Limits(memory_bytes=64 * 1024 * 1024)).run_http(
        request(), response()
    )
    assert result.error.kind == "memory"
    assert [r.message for r in result.logs] == [
        "memory allocation of 1966080000 bytes failed"
    ]


def test_guest_exit_during_start_is_a_load_error():
    wat = filter_wat(
        '(func (export "_start") (call $wasi_proc_exit (i32.const 3)))', wasi=True
    )
    with pytest.raises(FilterLoadError, match=r"proc_exit\(3\)"):
        load(wat)


def test_trap_in_root_start_is_reported_with_context():
    wat = filter_wat(
        '(func (export "proxy_on_configure") (param i32 i32) (result i32) unreachable)'
    )
    vm = FilterVm(wat)
    with pytest.raises(FilterTrapError) as info:
        vm.add_plugin(PluginConfig(root_id="r"))
    assert info.value.callback == "proxy_on_configure"
    assert info.value.context_id == 1


# Calls host functions with garbage: every call must come back with a status.
GARBAGE = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_log (i32.const 9) (i32.const 0) (i32.const 0)))
      (drop (call $proxy_log (i32.const 2) (i32.const -16) (i32.const 64)))
      (drop (call $proxy_get_header_map_pairs (i32.const 99) (i32.const 512) (i32.const 516)))
      (drop (call $proxy_get_header_map_pairs (i32.const 0) (i32.const -4) (i32.const 516)))
      (drop (call $proxy_add_header_map_value (i32.const 0)
        (i32.const 0x7fffffff) (i32.const 10) (i32.const 0) (i32.const 0)))
      (drop (call $proxy_get_buffer_bytes (i32.const 42) (i32.const 0) (i32.const 1)
        (i32.const 512) (i32.const 516)))
      (drop (call $proxy_get_property (i32.const 1024) (i32.const -1) (i32.const 512)
        (i32.const 516)))
      (drop (call $proxy_continue_stream (i32.const 77)))
      (drop (call $proxy_send_local_response (i32.const 200) (i32.const -8) (i32.const 16)
        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
      (drop (call $proxy_set_effective_context (i32.const 12345)))
      (drop (call $proxy_get_current_time_nanoseconds (i32.const -2)))
      (i32.const 0))
    """
)


def test_bad_arguments_get_abi_statuses_not_exceptions():
    result = load(GARBAGE).run_http(request(), response())
    assert result.error is None
    statuses = [(t.name, t.result) for t in result.trace if t.kind == "hostcall"]
    assert statuses == [
        ("proxy_log", "BAD_ARGUMENT"),
        ("proxy_log", "INVALID_MEMORY_ACCESS"),
        ("proxy_get_header_map_pairs", "BAD_ARGUMENT"),
        ("proxy_get_header_map_pairs", "INVALID_MEMORY_ACCESS"),
        ("proxy_add_header_map_value", "INVALID_MEMORY_ACCESS"),
        ("proxy_get_buffer_bytes", "BAD_ARGUMENT"),
        ("proxy_get_property", "INVALID_MEMORY_ACCESS"),
        ("proxy_continue_stream", "BAD_ARGUMENT"),
        ("proxy_send_local_response", "INVALID_MEMORY_ACCESS"),
        ("proxy_set_effective_context", "BAD_ARGUMENT"),
        ("proxy_get_current_time_nanoseconds", "INVALID_MEMORY_ACCESS"),
    ]
    assert result.response_after.status == 200


def test_allocator_returning_garbage_gives_invalid_memory_access():
    wat = filter_wat(
        """
        (func (export "malloc") (param i32) (result i32) (i32.const -100))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 512) (i32.const 516)))
          (i32.const 0))
        """,
        allocator=None,
    )
    result = load(wat).run_http(request(), response())
    assert result.error is None
    (call,) = [t for t in result.trace if t.name == "proxy_get_header_map_pairs"]
    assert call.result == "INVALID_MEMORY_ACCESS"


def test_streams_in_flight_fail_with_the_vm_and_reload_waits_for_them():
    from wasmkit.abi.constants import StreamType

    plugin = load(TRAP_ON_BOOM, failure_policy="fail_reload")
    calm = plugin.http_stream()
    calm.send_message(StreamType.HTTP_REQUEST, request("GET", "http://h/ok"))
    boom = plugin.http_stream()
    boom.send_message(StreamType.HTTP_REQUEST, request("GET", "http://h/boom"))
    failed = boom.finish()
    assert failed.error is not None and failed.error.kind == "trap"
    # Envoy checks the VM before each callback: the stream in flight gets the
    # 503 instead of its response, and its on_log never runs.
    plugin.vm.advance(1500)
    calm.send_message(StreamType.HTTP_RESPONSE, response(200, [], "fine"))
    result = calm.finish()
    assert "without calling the filter" in str(result.error)
    assert result.response_after.status == 503 and result.response_after.body == b""
    names = [
        t.name
        for t in result.trace
        if t.kind == "callback" and t.context_id == result.context_id
    ]
    assert names == ["proxy_on_request_headers", "malloc"]  # its on_log never ran
    # With no stream left on it, the next stream reloads the instance:
    # context ids restart at 2.
    after = plugin.run_http(request("GET", "http://h/ok"), response())
    assert after.error is None and after.context_id == 2
    assert any("reloaded for this stream" in n for n in after.notes)


# Counts down from the configuration's size times a million: seconds of work
# with a large configuration, none with an empty one.
SLOW_CONFIGURE = filter_wat(
    """(func (export "proxy_on_configure") (param i32 i32) (result i32)
         (local $n i64)
         (local.set $n (i64.mul (i64.extend_i32_u (local.get 1)) (i64.const 1000000)))
         (block $done (loop $l
           (br_if $done (i64.eqz (local.get $n)))
           (local.set $n (i64.sub (local.get $n) (i64.const 1)))
           (br $l)))
         (i32.const 1))
       (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (local $n i64)
         (local.set $n (i64.const 200000000))
         (block $done (loop $l
           (br_if $done (i64.eqz (local.get $n)))
           (local.set $n (i64.sub (local.get $n) (i64.const 1)))
           (br $l)))
         (i32.const 0))"""
)


def test_configure_has_the_start_up_limit_not_the_callback_limit():
    # Far past the 5 ms callback limit, well inside the start-up one.
    started = time.monotonic()
    plugin = load(
        SLOW_CONFIGURE,
        config=b"x" * 200,
        limits=Limits(timeout_ms=5, startup_timeout_ms=120_000),
    )
    assert time.monotonic() - started > 0.005
    configure = next(t for t in plugin.vm.trace if t.name == "proxy_on_configure")
    assert configure.result == 1
    # A stream callback doing the same work runs into the callback limit.
    result = plugin.run_http(request(), response())
    assert result.error is not None and result.error.kind == "timeout"
    assert "5 ms per callback" in str(result.error)
    assert "--timeout-ms" in str(result.error)


def test_default_start_up_limit_is_a_minute():
    assert Limits().startup_timeout_ms == 60_000
    assert Limits().timeout_ms == 10_000


def test_start_up_timeout_names_its_limit_and_how_to_raise_it():
    wat = filter_wat(
        """(func (export "proxy_on_configure") (param i32 i32) (result i32)
             (loop $l (br $l)) (i32.const 1))"""
    )
    with pytest.raises(FilterLoadError) as info:
        load(wat, config=b"{}", limits=Limits(startup_timeout_ms=50))
    text = str(info.value)
    assert "proxy_on_configure" in text
    assert "start-up limit of 50 ms" in text
    assert "--start-timeout-ms" in text
    assert info.value.__cause__.kind == "timeout"
