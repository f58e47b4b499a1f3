"""Every ``proxy_*`` host function, called by real WAT filters in wasmtime.

Filters call a host function, keep what it wrote in their memory (out-params
at the scratch area 512..1023) and often echo strings back with ``proxy_log``.
Tests check the effects (messages, logs, guest memory) and the status the
trace recorded for each call.
"""

from __future__ import annotations

import dataclasses
import random
import zlib

import pytest

from wasmkit.abi import pairs
from wasmkit.abi.constants import AbiVersion, LogLevel
from wasmkit.errors import FilterLoadError
from wasmkit.host import FilterVm, VirtualClock, load, request, response
from wasmkit.host.connection_manager import ENVOY_DEFAULTS, request_id
from wasmkit.testing import filter_wat

BAD_PTR = "(i32.const 0x7fff0000)"  # far past the 2-page (128 KiB) memory
HUGE = "(i32.const -1)"  # 0xFFFFFFFF as a length

# Logs the guest string whose pointer and size a copy-out left at $at, $at+4.
ECHO = """
(func $echo (param $at i32)
  (drop (call $proxy_log (i32.const 2) (i32.load (local.get $at))
    (i32.load (i32.add (local.get $at) (i32.const 4))))))
"""


def on_request_headers(code: str) -> str:
    return f"""
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      {code}
      (i32.const 0))
    """


def statuses(trace, name):
    return [t.result for t in trace if t.kind == "hostcall" and t.name == name]


def hostcalls(trace, name):
    return [t for t in trace if t.kind == "hostcall" and t.name == name]


def messages(result):
    return [r.message for r in result.logs if r.source == "proxy_log"]


def u32(vm, addr):
    return vm.mem.read_u32(addr)


def copied_out(vm, at=512):
    """What a copy-out gave the guest: the bytes at the pointer and size at ``at``."""
    return vm.mem.read(u32(vm, at), u32(vm, at + 4))


def with_imports(wat: str, *imports: str) -> str:
    """Add hand-written imports (filter_wat only imports ``$proxy_*`` functions)."""
    return wat.replace("(module", "(module\n  " + "\n  ".join(imports), 1)


# Each body in one frame carrying its end (as an HTTP/2 client sends a small
# body), so a body callback runs once: the buffer tests are about the host
# functions. Envoy's HTTP/1 frames (the default) are covered in test_stream.py
# and test_connection_manager.py, and against Envoy in tests/envoy/.
ONE_FRAME = dataclasses.replace(ENVOY_DEFAULTS, http1_codec_end_frame=False)


def http(
    body,
    strings=None,
    *,
    req=None,
    resp=None,
    abi=AbiVersion.V0_2_1,
    frames=ENVOY_DEFAULTS,
    **options,
):
    plugin = load(filter_wat(body, strings=strings, abi=abi), **options)
    result = plugin.run_http(
        req if req is not None else request(), resp, connection_manager=frames
    )
    return plugin.vm, result


# --- logging, time, contexts ---------------------------------------------------


def test_log_writes_records_at_each_level_and_rejects_level_6():
    body = on_request_headers(
        """
        (drop (call $proxy_log (i32.const 0) (global.get $s_t) (global.get $s_t_len)))
        (drop (call $proxy_log (i32.const 2) (global.get $s_i) (global.get $s_i_len)))
        (drop (call $proxy_log (i32.const 3) (global.get $s_w) (global.get $s_w_len)))
        (drop (call $proxy_log (i32.const 5) (global.get $s_c) (global.get $s_c_len)))
        (drop (call $proxy_log (i32.const 6) (global.get $s_i) (global.get $s_i_len)))
        """
    )
    strings = {"t": "trace", "i": "info ünï", "w": "warn", "c": "critical"}
    _, result = http(body, strings, log_level="trace")
    assert [(r.level, r.message, r.source) for r in result.logs] == [
        (LogLevel.TRACE, "trace", "proxy_log"),
        (LogLevel.INFO, "info ünï", "proxy_log"),
        (LogLevel.WARN, "warn", "proxy_log"),
        (LogLevel.CRITICAL, "critical", "proxy_log"),
    ]
    assert {r.context_id for r in result.logs} == {result.context_id}
    assert statuses(result.trace, "proxy_log") == ["OK"] * 4 + ["BAD_ARGUMENT"]
    assert hostcalls(result.trace, "proxy_log")[1].args == {
        "level": "info",
        "msg": "info ünï".encode(),
    }


def test_log_below_the_host_level_is_dropped_but_ok():
    body = on_request_headers(
        """
        (drop (call $proxy_log (i32.const 1) (global.get $s_d) (global.get $s_d_len)))
        (drop (call $proxy_log (i32.const 4) (global.get $s_e) (global.get $s_e_len)))
        """
    )
    _, result = http(body, {"d": "debug", "e": "error"}, log_level="warn")
    assert messages(result) == ["error"]
    assert statuses(result.trace, "proxy_log") == ["OK", "OK"]


@pytest.mark.parametrize("level", list(LogLevel))
def test_get_log_level_reports_the_host_level(level):
    body = on_request_headers(
        "(i32.store (i32.const 600) (call $proxy_get_log_level (i32.const 512)))"
    )
    vm, result = http(body, log_level=level)
    assert u32(vm, 512) == int(level)
    assert u32(vm, 600) == 0
    assert statuses(result.trace, "proxy_get_log_level") == ["OK"]


def test_get_log_level_is_not_linked_before_abi_0_2_1():
    wat = with_imports(
        filter_wat("", abi=AbiVersion.V0_2_0),
        '(import "env" "proxy_get_log_level" (func (param i32) (result i32)))',
    )
    with pytest.raises(FilterLoadError, match="proxy_get_log_level"):
        FilterVm(wat)


def test_current_time_reads_the_virtual_clock():
    start = 1_600_000_000_123_456_789
    clock = VirtualClock(start_ns=start)
    body = on_request_headers(
        "(drop (call $proxy_get_current_time_nanoseconds (i32.const 512)))"
    )
    plugin = load(filter_wat(body), clock=clock)
    first = plugin.run_http(request())
    assert plugin.vm.mem.read(512, 8) == start.to_bytes(8, "little")
    clock.advance(1.5)
    plugin.run_http(request())
    assert plugin.vm.mem.read(512, 8) == (start + 1_500_000).to_bytes(8, "little")
    assert statuses(first.trace, "proxy_get_current_time_nanoseconds") == ["OK"]


def test_tick_period_is_set_on_the_root_from_any_of_its_contexts():
    body = """
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 250)))
      (i32.const 1))
    """ + on_request_headers(
        "(drop (call $proxy_set_tick_period_milliseconds (i32.const 40)))"
    )
    plugin = load(filter_wat(body))
    assert plugin.root is not None and plugin.root.tick_period_ms == 250
    assert statuses(plugin.vm.trace, "proxy_set_tick_period_milliseconds") == ["OK"]
    result = plugin.run_http(request())
    assert plugin.root.tick_period_ms == 40
    assert statuses(result.trace, "proxy_set_tick_period_milliseconds") == ["OK"]


def test_tick_period_during_vm_start_up_is_ok():
    # Envoy: "always OK", also from the VM context that has no root yet.
    body = """
    (func (export "_initialize")
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 10))))
    """
    vm = FilterVm(filter_wat(body))
    assert statuses(vm.trace, "proxy_set_tick_period_milliseconds") == ["OK"]


def test_set_effective_context_switches_until_the_callback_returns():
    set_prop = """
      (drop (call $proxy_set_property (global.get $s_k) (global.get $s_k_len)
        (global.get $s_v) (global.get $s_v_len)))
    """
    body = f"""
    (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
      {set_prop}
      (drop (call $proxy_set_effective_context (i32.const 1)))
      {set_prop}
      (drop (call $proxy_set_effective_context (i32.const 99)))
      {set_prop}
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      {set_prop}
      (i32.const 0))
    """
    _, result = http(body, {"k": "key", "v": "value"})
    assert statuses(result.trace, "proxy_set_effective_context") == [
        "OK",
        "BAD_ARGUMENT",
    ]
    calls = hostcalls(result.trace, "proxy_set_property")
    # The root (id 1) has no stream to keep properties on; an unknown id
    # leaves the effective context alone; the next callback is back on the
    # stream.
    assert [(c.context_id, c.result) for c in calls] == [
        (2, "OK"),
        (1, "NOT_FOUND"),
        (1, "NOT_FOUND"),
        (2, "OK"),
    ]


def test_done_finishes_a_root_that_returned_false_from_on_done():
    body = """
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_done)) (i32.const 1))
    (func (export "proxy_on_done") (param i32) (result i32) (i32.const 0))
    (func (export "proxy_on_tick") (param i32) (drop (call $proxy_done)))
    (func (export "proxy_on_delete") (param i32))
    """
    vm = FilterVm(filter_wat(body))
    plugin = vm.add_plugin()
    root = plugin.root
    assert root is not None
    plugin.shutdown()  # on_done answers false: the root waits for proxy_done()
    assert root.done_pending
    vm.invoke("proxy_on_tick", (root.id,), root)
    vm.invoke("proxy_on_tick", (root.id,), root)
    assert statuses(vm.trace, "proxy_done") == ["NOT_FOUND", "OK", "NOT_FOUND"]
    assert not root.done_pending
    callbacks = [(t.name, t.context_id) for t in vm.trace if t.kind == "callback"]
    assert callbacks[-4:] == [
        ("proxy_on_done", root.id),
        ("proxy_on_tick", root.id),
        ("proxy_on_delete", root.id),  # after the VM call that said done
        ("proxy_on_tick", root.id),
    ]


def test_get_status_reads_the_roots_last_status():
    body = (
        on_request_headers(
            """
            (i32.store (i32.const 600)
              (call $proxy_get_status (i32.const 520) (i32.const 512) (i32.const 516)))
            (call $echo (i32.const 512))
            """
        )
        + ECHO
    )
    plugin = load(filter_wat(body))
    vm = plugin.vm
    vm.mem.write(512, b"\xff" * 12)
    first = plugin.run_http(request())
    assert (u32(vm, 520), u32(vm, 512), u32(vm, 516), u32(vm, 600)) == (0, 0, 0, 0)
    assert plugin.root is not None
    plugin.root.last_status = (11, b"reset")
    second = plugin.run_http(request())
    assert u32(vm, 520) == 11
    assert messages(second) == ["reset"]
    assert statuses(first.trace + second.trace, "proxy_get_status") == ["OK", "OK"]


# --- configuration ---------------------------------------------------------------


def test_get_configuration_in_abi_0_1_0():
    read = """
      (drop (call $proxy_get_configuration (i32.const 512) (i32.const 516)))
      (call $echo (i32.const 512))
    """
    body = f"""
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32) {read} (i32.const 1))
    (func (export "proxy_on_configure") (param i32 i32) (result i32) {read} (i32.const 1))
    (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
      {read} (i32.const 0))
    {ECHO}
    """
    plugin = load(
        filter_wat(body, abi=AbiVersion.V0_1_0),
        config="plugin-cfg",
        vm_configuration="vm-cfg",
    )
    vm = plugin.vm
    # The plugin configuration while configuring, the VM configuration otherwise.
    assert [r.message for r in vm.logs] == ["vm-cfg", "plugin-cfg"]
    result = plugin.run_http(request())
    assert messages(result) == ["vm-cfg"]
    trace = vm.trace + result.trace
    assert statuses(trace, "proxy_get_configuration") == ["OK"] * 3


def test_get_configuration_bad_pointer():
    body = f"""
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (i32.store (i32.const 600)
        (call $proxy_get_configuration {BAD_PTR} (i32.const 516)))
      (i32.const 1))
    """
    plugin = load(filter_wat(body, abi=AbiVersion.V0_1_0), config="cfg")
    assert u32(plugin.vm, 600) == 6
    assert statuses(plugin.vm.trace, "proxy_get_configuration") == [
        "INVALID_MEMORY_ACCESS"
    ]


def test_get_configuration_is_not_linked_in_abi_0_2_x():
    wat = with_imports(
        filter_wat(""),
        '(import "env" "proxy_get_configuration" (func (param i32 i32) (result i32)))',
    )
    with pytest.raises(FilterLoadError, match="proxy_get_configuration"):
        FilterVm(wat)


# --- buffers -----------------------------------------------------------------------


def get_bytes(buffer_type, start, max_size, at=512):
    return (
        f"(drop (call $proxy_get_buffer_bytes (i32.const {buffer_type}) "
        f"(i32.const {start}) {max_size} (i32.const {at}) (i32.const {at + 4})))"
    )


def test_get_buffer_bytes_in_the_request_body_callback():
    body = f"""
    (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32)
          (param $eos i32) (result i32)
      {get_bytes(0, 0, "(local.get $size)")} (call $echo (i32.const 512))
      {get_bytes(0, 2, "(i32.const 3)")} (call $echo (i32.const 512))
      {get_bytes(0, 4, HUGE)} (call $echo (i32.const 512))
      (i32.store (i32.const 520) (i32.const -1))
      (i32.store (i32.const 524) (i32.const -1))
      {get_bytes(0, 100, "(i32.const 5)", at=520)}
      (i32.const 0))
    {ECHO}
    """
    vm, result = http(
        body, req=request("POST", "http://h/", body="abcdefgh"), frames=ONE_FRAME
    )
    assert messages(result) == ["abcdefgh", "cde", "efgh"]
    # Start past the end: empty, written as pointer 0 and size 0.
    assert (u32(vm, 520), u32(vm, 524)) == (0, 0)
    assert statuses(result.trace, "proxy_get_buffer_bytes") == ["OK"] * 4
    assert hostcalls(result.trace, "proxy_get_buffer_bytes")[1].args == {
        "buffer_type": "http_request_body",
        "start": 2,
        "max_size": 3,
        "returned": b"cde",
    }


def test_get_buffer_bytes_in_the_response_body_callback():
    body = f"""
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      {get_bytes(1, 0, HUGE)} (call $echo (i32.const 512))
      {get_bytes(0, 0, HUGE)}
      (i32.const 0))
    {ECHO}
    """
    _, result = http(
        body,
        req=request("POST", "http://h/", body="request"),
        resp=response(200, body="response body"),
        frames=ONE_FRAME,
    )
    assert messages(result) == ["response body"]
    assert statuses(result.trace, "proxy_get_buffer_bytes") == ["OK", "NOT_FOUND"]


def test_buffers_outside_their_callbacks_are_not_found():
    code = "".join(get_bytes(t, 0, HUGE) for t in (0, 1, 2, 3, 4, 5, 7, 8))
    code += f"""
      (drop (call $proxy_get_buffer_status (i32.const 0) (i32.const 600) (i32.const 604)))
      (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) {HUGE}
        (global.get $s_x) (global.get $s_x_len)))
    """
    _, result = http(
        on_request_headers(code), {"x": "x"}, req=request("POST", "h://h/", body="b")
    )
    assert statuses(result.trace, "proxy_get_buffer_bytes") == ["NOT_FOUND"] * 8
    assert statuses(result.trace, "proxy_get_buffer_status") == ["NOT_FOUND"]
    assert statuses(result.trace, "proxy_set_buffer_bytes") == ["NOT_FOUND"]
    assert result.request_after.body == b"b"


def test_configuration_buffers_are_readable_in_their_phase_and_read_only():
    write = """
      (drop (call $proxy_set_buffer_bytes (i32.const {t}) (i32.const 0) (i32.const 0)
        (global.get $s_x) (global.get $s_x_len)))
    """
    body = f"""
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
      {get_bytes(6, 0, HUGE)} (call $echo (i32.const 512))
      {get_bytes(7, 0, HUGE)}
      {write.format(t=6)}
      (i32.const 1))
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      {get_bytes(7, 0, HUGE)} (call $echo (i32.const 512))
      {get_bytes(7, 7, "(i32.const 3)")} (call $echo (i32.const 512))
      (drop (call $proxy_get_buffer_status (i32.const 7) (i32.const 600) (i32.const 604)))
      {write.format(t=7)}
      (i32.const 1))
    {ECHO}
    """
    plugin = load(
        filter_wat(body, strings={"x": "x"}),
        vm_configuration="vm config",
        config='{"plugin": 1}',
    )
    vm = plugin.vm
    assert [r.message for r in vm.logs] == ["vm config", '{"plugin": 1}', 'n":']
    assert statuses(vm.trace, "proxy_get_buffer_bytes") == [
        "OK",
        "NOT_FOUND",  # plugin configuration outside on_configure
        "OK",
        "OK",
    ]
    assert u32(vm, 600) == len('{"plugin": 1}')
    assert statuses(vm.trace, "proxy_set_buffer_bytes") == ["BAD_ARGUMENT"] * 2


def test_configuration_buffers_do_not_exist_in_abi_0_1_0():
    body = f"""
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
      {get_bytes(6, 0, HUGE)}
      (drop (call $proxy_get_buffer_status (i32.const 7) (i32.const 600) (i32.const 604)))
      (i32.const 1))
    """
    plugin = load(filter_wat(body, abi=AbiVersion.V0_1_0), vm_configuration="cfg")
    assert statuses(plugin.vm.trace, "proxy_get_buffer_bytes") == ["BAD_ARGUMENT"]
    assert statuses(plugin.vm.trace, "proxy_get_buffer_status") == ["BAD_ARGUMENT"]


def test_get_buffer_status_reports_length_and_zero_flags():
    body = """
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (i32.store (i32.const 604) (i32.const -1))
      (drop (call $proxy_get_buffer_status (i32.const 0) (i32.const 600) (i32.const 604)))
      (i32.const 0))
    """
    vm, result = http(
        body, req=request("POST", "http://h/", body="x" * 300), frames=ONE_FRAME
    )
    assert (u32(vm, 600), u32(vm, 604)) == (300, 0)
    assert statuses(result.trace, "proxy_get_buffer_status") == ["OK"]


def set_body(start: int, size: int) -> str:
    return f"""
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const {start})
        (i32.const {size}) (global.get $s_data) (global.get $s_data_len)))
      (i32.const 0))
    """


@pytest.mark.parametrize(
    ("profile", "start", "size", "data", "status", "after"),
    [
        # Envoy: start 0 drains `size` bytes and prepends; start >= len appends.
        ("envoy", 0, 5, "HELLO", "OK", b"HELLO world"),
        ("envoy", 0, 0, ">> ", "OK", b">> hello world"),
        ("envoy", 0, 0xFFFFFFFF, "new", "OK", b"new"),
        ("envoy", 0, 0x7FFFFFFF, "go", "OK", b"go"),
        ("envoy", 11, 0, "!", "OK", b"hello world!"),
        ("envoy", 0xFFFFFFFF, 0, "!", "OK", b"hello world!"),
        ("envoy", 6, 5, "there", "BAD_ARGUMENT", b"hello world"),
        ("envoy", 5, 0, ",", "BAD_ARGUMENT", b"hello world"),
        # The spec: replace `size` bytes at `start`, wherever that is.
        ("spec", 6, 5, "there", "OK", b"hello there"),
        ("spec", 5, 0, ",", "OK", b"hello, world"),
        ("spec", 0, 5, "HELLO", "OK", b"HELLO world"),
        ("spec", 0, 0xFFFFFFFF, "new", "OK", b"new"),
        ("spec", 11, 0, "!", "OK", b"hello world!"),
    ],
)
def test_set_buffer_bytes(profile, start, size, data, status, after):
    _, result = http(
        set_body(start, size),
        {"data": data},
        req=request("POST", "http://h/", body="hello world"),
        profile=profile,
        frames=ONE_FRAME,
    )
    assert statuses(result.trace, "proxy_set_buffer_bytes") == [status]
    assert result.request_after.body == after
    assert result.request_before.body == b"hello world"


def test_set_response_body_reaches_the_client():
    body = """
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      (drop (call $proxy_set_buffer_bytes (i32.const 1) (i32.const 0) (i32.const -1)
        (global.get $s_data) (global.get $s_data_len)))
      (i32.const 0))
    """
    _, result = http(
        body,
        {"data": "rewritten"},
        resp=response(200, body="original"),
        frames=ONE_FRAME,
    )
    assert result.response_after.body == b"rewritten"
    assert statuses(result.trace, "proxy_set_buffer_bytes") == ["OK"]


# --- AssemblyScript (proxy-runtime 0.1.8) quirks ---------------------------------


def test_as_quirk_size_pointer_equal_to_the_length_is_not_written():
    body = """
    (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32)
          (param $eos i32) (result i32)
      (i32.store (i32.const 600) (i32.const 0x5a5a5a5a))
      ;; max_size 600 passed where the size pointer belongs, too.
      (drop (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 600)
        (i32.const 512) (i32.const 600)))
      (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512)) (local.get $size)))
      (i32.const 0))
    """
    vm, result = http(
        body, req=request("POST", "http://h/", body="quirky body"), frames=ONE_FRAME
    )
    assert messages(result) == ["quirky body"]
    assert u32(vm, 600) == 0x5A5A5A5A
    (call,) = hostcalls(result.trace, "proxy_get_buffer_bytes")
    assert call.result == "OK"
    assert "size pointer equals the length" in call.args["quirk"]


def test_as_quirk_get_buffer_status_with_set_buffer_bytes_type_acts_as_set():
    body = """
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (drop (call $as_set_buffer (i32.const 0) (i32.const 0) (i32.const -1)
        (global.get $s_data) (global.get $s_data_len)))
      (i32.const 0))
    """
    wat = with_imports(
        filter_wat(body, strings={"data": "replaced"}),
        '(import "env" "proxy_get_buffer_status" '
        "(func $as_set_buffer (param i32 i32 i32 i32 i32) (result i32)))",
    )
    result = load(wat).run_http(
        request("POST", "http://h/", body="original"), connection_manager=ONE_FRAME
    )
    assert result.request_after.body == b"replaced"
    assert statuses(result.trace, "proxy_get_buffer_status") == ["OK"]


# --- header maps -------------------------------------------------------------------

REQ = request(
    "GET",
    "http://h.test/p?q=1",
    [("X-R", "1"), ("B", "2"), ("x-r", "3")],
)
# Envoy's connection manager adds these before the filter runs; the id is the
# first a VM with seed 0 draws.
FIRST_ID = request_id(random.Random(0))
HCM_ADDED = [(b"x-forwarded-proto", b"http"), (b"x-request-id", FIRST_ID)]
SEEN = [*REQ.headers, *HCM_ADDED]
"""REQ as the filter sees it."""


@pytest.mark.parametrize("profile", ["envoy", "spec"])
def test_header_map_size_is_envoys_byte_size_or_the_spec_serialized_size(profile):
    body = on_request_headers(
        """
        (drop (call $proxy_get_header_map_size (i32.const 0) (i32.const 512)))
        (drop (call $proxy_get_header_map_size (i32.const 1) (i32.const 516)))
        """
    )
    vm, result = http(body, req=REQ, profile=profile)
    headers = result.request_before.headers
    if profile == "envoy":
        expected = sum(len(k) + len(v) for k, v in headers)
    else:
        expected = len(pairs.encode(headers))
    assert u32(vm, 512) == expected
    assert expected > 0
    assert statuses(result.trace, "proxy_get_header_map_size") == ["OK", "OK"]


def test_get_header_map_pairs_serializes_the_map():
    body = on_request_headers(
        """
        (i32.store (i32.const 520) (i32.const -1))
        (i32.store (i32.const 524) (i32.const -1))
        (drop (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 512) (i32.const 516)))
        (drop (call $proxy_get_header_map_pairs (i32.const 1) (i32.const 520) (i32.const 524)))
        """
    )
    vm, result = http(body, req=REQ)
    assert pairs.decode(copied_out(vm)) == SEEN
    assert (b":method", b"GET") in REQ.headers
    # No request trailers: an empty map, pointer 0 and size 0, no allocation.
    assert (u32(vm, 520), u32(vm, 524)) == (0, 0)
    assert statuses(result.trace, "proxy_get_header_map_pairs") == ["OK", "OK"]


def test_get_header_map_pairs_of_the_response():
    body = """
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_get_header_map_pairs (i32.const 2) (i32.const 512) (i32.const 516)))
      (i32.const 0))
    """
    vm, _ = http(body, resp=response(201, [("Server", "up")]))
    # The router adds x-envoy-upstream-service-time before the filter runs.
    assert pairs.decode(copied_out(vm)) == [
        (b":status", b"201"),
        (b"server", b"up"),
        (b"x-envoy-upstream-service-time", b"0"),
    ]


def test_set_header_map_pairs_replaces_the_map_and_lower_cases_keys():
    new = pairs.encode([(b"X-New", b"1"), (b":path", b"/new"), (b"x-new", b"2")])
    body = on_request_headers(
        """
        (drop (call $proxy_set_header_map_pairs (i32.const 0)
          (global.get $s_p) (global.get $s_p_len)))
        (drop (call $proxy_set_header_map_pairs (i32.const 6)
          (global.get $s_p) (global.get $s_p_len)))
        """
    )
    _, result = http(body, {"p": new}, req=REQ)
    assert result.request_after.headers == [
        (b"x-new", b"1"),
        (b":path", b"/new"),
        (b"x-new", b"2"),
    ]
    assert statuses(result.trace, "proxy_set_header_map_pairs") == [
        "OK",
        "BAD_ARGUMENT",  # callout response headers are read-only
    ]
    assert hostcalls(result.trace, "proxy_set_header_map_pairs")[0].args["pairs"] == [
        [b"X-New", b"1"],
        [b":path", b"/new"],
        [b"x-new", b"2"],
    ]


def test_set_header_map_pairs_with_undecodable_pairs_empties_the_map():
    body = on_request_headers(
        """
        (drop (call $proxy_set_header_map_pairs (i32.const 0)
          (global.get $s_p) (global.get $s_p_len)))
        """
    )
    _, result = http(body, {"p": b"\x05\x00\x00\x00junk"}, req=REQ)
    assert statuses(result.trace, "proxy_set_header_map_pairs") == ["OK"]
    assert result.request_after.headers == []


def get_value(map_type: int, key: str, at: int = 512) -> str:
    return (
        f"(drop (call $proxy_get_header_map_value (i32.const {map_type}) "
        f"(global.get $s_{key}) (global.get $s_{key}_len) "
        f"(i32.const {at}) (i32.const {at + 4})))"
    )


def test_get_header_map_value_returns_the_first_of_repeated_values():
    body = (
        on_request_headers(
            f"""
            {get_value(0, "upper")} (call $echo (i32.const 512))
            {get_value(0, "b")} (call $echo (i32.const 512))
            (i32.store (i32.const 520) (i32.const -1))
            {get_value(0, "missing", at=520)}
            """
        )
        + ECHO
    )
    strings = {"upper": "X-R", "b": "b", "missing": "nope"}
    vm, result = http(body, strings, req=REQ)
    assert messages(result) == ["1", "2"]
    assert statuses(result.trace, "proxy_get_header_map_value") == [
        "OK",
        "OK",
        "NOT_FOUND",
    ]
    assert u32(vm, 520) == 0xFFFFFFFF  # nothing written for a missing key


def test_get_header_map_value_of_a_missing_key_in_abi_0_1_0_is_ok_and_empty():
    body = f"""
    (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
      (i32.store (i32.const 512) (i32.const -1))
      (i32.store (i32.const 516) (i32.const -1))
      {get_value(0, "missing")}
      (i32.const 0))
    """
    vm, result = http(body, {"missing": "nope"}, req=REQ, abi=AbiVersion.V0_1_0)
    assert statuses(result.trace, "proxy_get_header_map_value") == ["OK"]
    assert (u32(vm, 512), u32(vm, 516)) == (0, 0)


def test_get_header_map_value_of_a_map_not_available_now_is_bad_argument():
    # Envoy: the response headers do not exist while the request is processed.
    body = on_request_headers(
        f"""
        {get_value(2, "k")}
        {get_value(1, "k")}
        """
    )
    _, result = http(body, {"k": "k"}, req=REQ)
    assert statuses(result.trace, "proxy_get_header_map_value") == [
        "BAD_ARGUMENT",
        "BAD_ARGUMENT",
    ]


@pytest.mark.parametrize(
    ("abi", "missing_map"),
    [(AbiVersion.V0_2_1, "NOT_FOUND"), (AbiVersion.V0_1_0, "OK")],
)
def test_get_header_map_value_in_on_log(abi, missing_map):
    # Maps may be absent while logging: NOT_FOUND (0.1.0: OK and empty).
    body = f"""
    (func (export "proxy_on_log") (param i32)
      {get_value(0, "b")} (call $echo (i32.const 512))
      {get_value(1, "b")}
      {get_value(0, "missing")})
    {ECHO}
    """
    strings = {"b": "b", "missing": "nope"}
    _, result = http(body, strings, req=REQ, abi=abi)
    assert messages(result) == ["2"]
    missing_key = "NOT_FOUND" if abi is AbiVersion.V0_2_1 else "OK"
    assert statuses(result.trace, "proxy_get_header_map_value") == [
        "OK",
        missing_map,
        missing_key,
    ]


def kv_call(name: str, map_type: int, key: str, value: str | None = None) -> str:
    args = f"(i32.const {map_type}) (global.get $s_{key}) (global.get $s_{key}_len)"
    if value is not None:
        args += f" (global.get $s_{value}) (global.get $s_{value}_len)"
    return f"(drop (call $proxy_{name}_header_map_value {args}))"


def test_add_header_map_value_appends_and_keeps_existing_values():
    body = on_request_headers(kv_call("add", 0, "key", "val"))
    _, result = http(body, {"key": "X-R", "val": "4"}, req=REQ)
    assert result.request_after.headers == [*SEEN, (b"x-r", b"4")]
    assert statuses(result.trace, "proxy_add_header_map_value") == ["OK"]


def test_add_to_the_response_headers():
    body = """
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 2)
        (global.get $s_key) (global.get $s_key_len)
        (global.get $s_val) (global.get $s_val_len)))
      (i32.const 0))
    """
    _, result = http(body, {"key": "X-Added", "val": "yes"})
    assert result.response_after.headers == [
        (b":status", b"200"),
        (b"x-envoy-upstream-service-time", b"0"),
        (b"x-added", b"yes"),
    ]


def test_add_to_read_only_or_absent_maps_is_bad_argument():
    code = "".join(kv_call("add", m, "key", "val") for m in (1, 3, 4, 5, 6, 7))
    _, result = http(on_request_headers(code), {"key": "k", "val": "v"}, req=REQ)
    assert statuses(result.trace, "proxy_add_header_map_value") == ["BAD_ARGUMENT"] * 6
    assert result.request_after.trailers is None


def test_trailers_can_be_created_in_the_last_body_callback():
    body = f"""
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      {kv_call("add", 1, "key", "val")}
      (i32.const 0))
    """
    _, result = http(
        body, {"key": "X-T", "val": "1"}, req=request("POST", "http://h/", body="b")
    )
    # The body, then the end in the codec's empty frame: the trailers map
    # exists only in the last body callback.
    assert statuses(result.trace, "proxy_add_header_map_value") == [
        "BAD_ARGUMENT",
        "OK",
    ]
    assert result.request_after.trailers == [(b"x-t", b"1")]


def test_replace_removes_every_repeat_and_adds_at_the_end_as_envoy():
    # Envoy's setCopy: remove the name, then add it (measured in Envoy 1.40:
    # a replaced user-agent moves after the headers added before it).
    body = on_request_headers(
        kv_call("replace", 0, "key", "val") + kv_call("replace", 0, "new", "val")
    )
    strings = {"key": "X-R", "val": "9", "new": "New"}
    _, result = http(body, strings, req=REQ)
    pseudo = REQ.headers[:4]
    assert result.request_after.headers == [
        *pseudo,
        (b"b", b"2"),
        *HCM_ADDED,
        (b"x-r", b"9"),
        (b"new", b"9"),
    ]


def test_a_replaced_or_added_pseudo_header_goes_after_the_pseudo_headers():
    body = on_request_headers(
        kv_call("replace", 0, "key", "val") + kv_call("add", 0, "new", "val")
    )
    _, result = http(body, {"key": ":path", "val": "/n", "new": ":x"}, req=REQ)
    names = [k for k, _ in result.request_after.headers]
    pseudo = [k for k, _ in REQ.headers[:4] if k != b":path"]
    assert names[:5] == [*pseudo, b":path", b":x"]
    assert result.request_after.get(b":path") == b"/n"
    assert statuses(result.trace, "proxy_replace_header_map_value") == ["OK"]
    assert statuses(result.trace, "proxy_add_header_map_value") == ["OK"]


def test_remove_drops_every_value_and_absent_keys_are_ok():
    body = on_request_headers(kv_call("remove", 0, "key") + kv_call("remove", 0, "no"))
    _, result = http(body, {"key": "X-R", "no": "absent"}, req=REQ)
    assert result.request_after.headers == [*REQ.headers[:4], (b"b", b"2"), *HCM_ADDED]
    assert statuses(result.trace, "proxy_remove_header_map_value") == ["OK", "OK"]


def test_maps_are_read_only_in_on_log():
    body = f"""
    (func (export "proxy_on_log") (param i32)
      {kv_call("remove", 0, "key")}
      {kv_call("add", 0, "key", "key")}
      {kv_call("replace", 2, "key", "key")})
    """
    _, result = http(body, {"key": "b"}, req=REQ)
    for name in ("remove", "add", "replace"):
        assert statuses(result.trace, f"proxy_{name}_header_map_value") == [
            "BAD_ARGUMENT"
        ]


# --- stream control ------------------------------------------------------------------


def test_continue_and_close_stream_statuses():
    body = on_request_headers(
        """
        (drop (call $proxy_continue_stream (i32.const 4)))
        (drop (call $proxy_continue_stream (i32.const -1)))
        (drop (call $proxy_continue_stream (i32.const 3)))
        (drop (call $proxy_continue_stream (i32.const 2)))
        (drop (call $proxy_close_stream (i32.const 4)))
        (drop (call $proxy_close_stream (i32.const 3)))
        (drop (call $proxy_close_stream (i32.const 2)))
        """
    )
    _, result = http(body)
    assert statuses(result.trace, "proxy_continue_stream") == [
        "BAD_ARGUMENT",
        "BAD_ARGUMENT",
        "UNIMPLEMENTED",  # Envoy cannot continue the upstream side
        "OK",  # TCP downstream: nothing to do on an HTTP stream
    ]
    assert statuses(result.trace, "proxy_close_stream") == ["BAD_ARGUMENT", "OK", "OK"]
    assert not result.reset
    assert result.response_after is not None


def test_close_stream_resets_the_stream():
    body = on_request_headers("(drop (call $proxy_close_stream (i32.const 0)))")
    _, result = http(body)
    assert statuses(result.trace, "proxy_close_stream") == ["OK"]
    assert result.reset
    assert result.response_after is None


def test_continue_stream_outside_a_stream_is_ok_and_does_nothing():
    body = """
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_continue_stream (i32.const 0)))
      (drop (call $proxy_close_stream (i32.const 1)))
      (i32.const 1))
    """
    plugin = load(filter_wat(body))
    assert statuses(plugin.vm.trace, "proxy_continue_stream") == ["OK"]
    assert statuses(plugin.vm.trace, "proxy_close_stream") == ["OK"]


def test_abi_0_1_0_continue_request_and_response_resume_paused_streams():
    body = """
    (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
      (drop (call $proxy_continue_request))
      (drop (call $proxy_clear_route_cache))
      (i32.const 1))
    (func (export "proxy_on_response_headers") (param i32 i32) (result i32)
      (drop (call $proxy_continue_response))
      (i32.const 1))
    """
    _, result = http(body, abi=AbiVersion.V0_1_0)
    assert result.stalled is None
    assert result.request_forwarded
    assert result.response_after is not None and result.response_after.status == 200
    for name in ("continue_request", "continue_response", "clear_route_cache"):
        assert statuses(result.trace, f"proxy_{name}") == ["OK"]


SEND_REPLY = """
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_send_local_response (i32.const {status})
    (global.get $s_details) (global.get $s_details_len)
    (global.get $s_body) (global.get $s_body_len)
    (global.get $s_headers) (global.get $s_headers_len)
    (i32.const {grpc})))
  (i32.const 0))
"""


@pytest.mark.parametrize(
    ("profile", "grpc", "details", "grpc_status"),
    [
        ("envoy", -1, "not__allowed_here_", None),
        ("envoy", 7, "not__allowed_here_", 7),
        ("envoy", 17, "not__allowed_here_", None),
        ("spec", 0, "not  allowed\there\n", 0),
    ],
)
def test_send_local_response(profile, grpc, details, grpc_status):
    strings = {
        "details": "not  allowed\there\n",
        "body": "denied",
        "headers": pairs.encode([(b"X-Reason", b"policy")]),
    }
    _, result = http(SEND_REPLY.format(status=403, grpc=grpc), strings, profile=profile)
    assert statuses(result.trace, "proxy_send_local_response") == ["OK"]
    reply = result.local_reply
    assert reply is not None
    assert (reply.status, reply.body, reply.details) == (403, b"denied", details)
    assert reply.headers == [(b"x-reason", b"policy")]
    assert reply.grpc_status == grpc_status
    assert reply.callback == "proxy_on_request_headers"
    assert not result.request_forwarded
    assert result.response_after is not None
    assert result.response_after.status == 403
    assert result.response_after.body == b"denied"
    assert result.response_after.get(b"x-reason") == b"policy"


def test_send_local_response_with_undecodable_headers_adds_none():
    # cpp-host reads undecodable pairs as an empty map and still replies.
    strings = {"details": "", "body": "", "headers": b"\x09\x00\x00\x00"}
    _, result = http(SEND_REPLY.format(status=401, grpc=-1), strings)
    assert statuses(result.trace, "proxy_send_local_response") == ["OK"]
    assert result.local_reply is not None
    assert result.local_reply.headers == []
    assert result.response_after is not None and result.response_after.status == 401


def test_send_local_response_outside_a_stream_is_ok_and_sends_nothing():
    body = """
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_send_local_response (i32.const 403)
        (global.get $s_v) (global.get $s_v_len) (global.get $s_v) (global.get $s_v_len)
        (i32.const 0) (i32.const 0) (i32.const -1)))
      (i32.const 1))
    """
    plugin = load(filter_wat(body, strings={"v": "x"}))
    assert statuses(plugin.vm.trace, "proxy_send_local_response") == ["OK"]
    result = plugin.run_http(request())
    assert result.local_reply is None
    assert result.response_after is not None and result.response_after.status == 200


# --- properties ------------------------------------------------------------------------

PROPERTIES = [
    (b"plugin_root_id", b"my_root"),
    (b"plugin_name", b"my_plugin"),
    (b"plugin_vm_id", b"vm-1"),
    (b"plugin_name\0", b"my_plugin"),  # a trailing NUL is accepted
    (b"request\0path", b"/p?q=1"),
    (b"request\0url_path", b"/p"),
    (b"request\0query", b"q=1"),
    (b"request\0method", b"GET"),
    (b"request\0host", b"h.test"),
    # A map: pairs, names lower-cased, repeats joined, pseudo-headers left out.
    (b"request\0headers", pairs.encode([(b"x-r", b"1,3"), (b"b", b"2"), *HCM_ADDED])),
    (b"request\0headers\0x-r", b"1,3"),
    (b"request.path", b"/p?q=1"),  # the AssemblyScript SDK's dotted form
    (b"source\0port", (8080).to_bytes(8, "little")),  # an int override
    (b"connection\0mtls", b"\x01"),  # a bool override
    (b"nope", None),
    (b"request\0nope", None),
    (b"request\0headers\0absent", None),
]


def test_get_property():
    code = "\n".join(
        f"(drop (call $proxy_get_property (global.get $s_p{i}) (global.get $s_p{i}_len)"
        f" (i32.const {512 + 8 * i}) (i32.const {516 + 8 * i})))"
        for i in range(len(PROPERTIES))
    )
    strings = {f"p{i}": path for i, (path, _) in enumerate(PROPERTIES)}
    vm, result = http(
        on_request_headers(code),
        strings,
        req=REQ,
        root_id="my_root",
        name="my_plugin",
        vm_id="vm-1",
        properties={"source.port": 8080, "connection.mtls": True},
    )
    got = statuses(result.trace, "proxy_get_property")
    assert got == ["OK" if v is not None else "NOT_FOUND" for _, v in PROPERTIES]
    for i, (path, value) in enumerate(PROPERTIES):
        if value is not None:
            assert copied_out(vm, 512 + 8 * i) == value, path


def test_get_property_in_the_root_context():
    body = """
    (func (export "proxy_on_context_create") (param i32 i32)
      (drop (call $proxy_get_property (global.get $s_p) (global.get $s_p_len)
        (i32.const 512) (i32.const 516)))
      (call $echo (i32.const 512)))
    """
    plugin = load(
        filter_wat(body + ECHO, strings={"p": "plugin_root_id"}), root_id="as_root"
    )
    assert [r.message for r in plugin.vm.logs] == ["as_root"]


def test_set_property_then_get_property_on_the_same_stream():
    set_prop = (
        "(drop (call $proxy_set_property (global.get $s_{k}) (global.get $s_{k}_len)"
        " (global.get $s_v) (global.get $s_v_len)))"
    )
    get_prop = (
        "(drop (call $proxy_get_property (global.get $s_{k}) (global.get $s_{k}_len)"
        " (i32.const {at}) (i32.const {at4})))"
    )
    body = f"""
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      {set_prop.format(k="k")}
      (i32.const 1))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      {get_prop.format(k="k", at=520, at4=524)}
      {set_prop.format(k="k")}
      {set_prop.format(k="nested")}
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      {get_prop.format(k="k", at=512, at4=516)}
      {get_prop.format(k="nested", at=528, at4=532)}
      (i32.const 0))
    """
    strings = {"k": "my_key", "nested": b"a\0b", "v": b"value\x00\x01"}
    plugin = load(filter_wat(body, strings=strings))
    vm = plugin.vm
    assert statuses(vm.trace, "proxy_set_property") == ["NOT_FOUND"]  # no stream
    first = plugin.run_http(request())
    assert copied_out(vm, 512) == b"value\x00\x01"
    assert copied_out(vm, 528) == b"value\x00\x01"
    assert statuses(first.trace, "proxy_get_property") == ["NOT_FOUND", "OK", "OK"]
    assert statuses(first.trace, "proxy_set_property") == ["OK", "OK"]
    # A new stream starts without the first stream's values.
    second = plugin.run_http(request())
    assert statuses(second.trace, "proxy_get_property")[0] == "NOT_FOUND"


# --- foreign functions ----------------------------------------------------------------

TEXT = "hello hello hello hello, compress me"


def call_ff(name: str, args: str, ret: str) -> str:
    return (
        f"(drop (call $proxy_call_foreign_function (global.get $s_{name})"
        f" (global.get $s_{name}_len) {args} {ret}))"
    )


def test_call_foreign_function_compress_round_trip():
    text_args = "(global.get $s_text) (global.get $s_text_len)"
    compressed = "(i32.load (i32.const 512)) (i32.load (i32.const 516))"
    code = f"""
      {call_ff("compress", text_args, "(i32.const 512) (i32.const 516)")}
      {call_ff("uncompress", compressed, "(i32.const 520) (i32.const 524)")}
      (call $echo (i32.const 520))
      {call_ff("unknown", text_args, "(i32.const 528) (i32.const 532)")}
      {call_ff("uncompress", text_args, "(i32.const 528) (i32.const 532)")}
      {call_ff("compress", text_args, "(i32.const 0) (i32.const 0)")}
      {call_ff("reverse", text_args, "(i32.const 536) (i32.const 540)")}
    """
    strings = {
        "compress": "compress",
        "uncompress": "uncompress",
        "unknown": "no_such_function",
        "reverse": "reverse",
        "text": TEXT,
    }
    plugin = load(filter_wat(on_request_headers(code) + ECHO, strings=strings))
    vm = plugin.vm
    vm.foreign_functions["reverse"] = lambda data: data[::-1]
    result = plugin.run_http(request())
    assert copied_out(vm, 512) == zlib.compress(TEXT.encode())
    assert messages(result) == [TEXT]
    assert copied_out(vm, 536) == TEXT.encode()[::-1]
    assert statuses(result.trace, "proxy_call_foreign_function") == [
        "OK",
        "OK",
        "NOT_FOUND",
        "SERIALIZATION_FAILURE",  # not zlib data
        "OK",  # results discarded
        "OK",
    ]


# --- non-spec env imports --------------------------------------------------------------


def test_abort_stops_the_filter_with_its_message():
    def as_string(text: str) -> bytes:
        data = text.encode("utf-16-le")
        return len(data).to_bytes(4, "little") + data

    body = on_request_headers(
        """
        (call $abort (i32.add (global.get $s_msg) (i32.const 4))
          (i32.add (global.get $s_file) (i32.const 4)) (i32.const 12) (i32.const 5))
        """
    )
    wat = with_imports(
        filter_wat(
            body,
            strings={"msg": as_string("boom"), "file": as_string("assembly/index.ts")},
        ),
        '(import "env" "abort" (func $abort (param i32 i32 i32 i32)))',
    )
    result = load(wat).run_http(request())
    assert result.error is not None
    assert result.error.kind == "trap"
    assert "the filter aborted: boom at assembly/index.ts(12:5)" in str(result.error)
    assert [(r.level, r.message, r.source) for r in result.logs] == [
        (LogLevel.CRITICAL, "boom at assembly/index.ts(12:5)", "abort")
    ]
    assert result.response_after is not None and result.response_after.status == 503


def test_emscripten_and_pthread_helpers():
    body = on_request_headers(
        """
        (i32.store (i32.const 600) (call $pthread_equal (i32.const 7) (i32.const 7)))
        (i32.store (i32.const 604) (call $pthread_equal (i32.const 7) (i32.const 8)))
        (call $grow (i32.const 0))
        """
    )
    wat = with_imports(
        filter_wat(body),
        '(import "env" "pthread_equal" (func $pthread_equal (param i32 i32) (result i32)))',
        '(import "env" "emscripten_notify_memory_growth" (func $grow (param i32)))',
    )
    plugin = load(wat)
    result = plugin.run_http(request())
    assert result.error is None
    assert (u32(plugin.vm, 600), u32(plugin.vm, 604)) == (1, 0)


# --- bad pointers and enums: a status, never an exception ------------------------------

K = "(global.get $s_k) (global.get $s_k_len)"
V = "(global.get $s_v) (global.get $s_v_len)"
P = "(global.get $s_p) (global.get $s_p_len)"
OUT = "(i32.const 512) (i32.const 516)"

BAD_MEMORY = {
    "log ptr": f"(call $proxy_log (i32.const 2) {BAD_PTR} (i32.const 4))",
    "log len": f"(call $proxy_log (i32.const 2) (global.get $s_k) {HUGE})",
    "get_log_level": f"(call $proxy_get_log_level {BAD_PTR})",
    "time": f"(call $proxy_get_current_time_nanoseconds {BAD_PTR})",
    "time at the end": "(call $proxy_get_current_time_nanoseconds (i32.const 131068))",
    "get_status code": f"(call $proxy_get_status {BAD_PTR} {OUT})",
    "get_status msg": f"(call $proxy_get_status (i32.const 520) {BAD_PTR} (i32.const 516))",
    "get_status size": f"(call $proxy_get_status (i32.const 520) (i32.const 512) {BAD_PTR})",
    "get_buffer_bytes ptr": (
        f"(call $proxy_get_buffer_bytes (i32.const 6) (i32.const 0) {HUGE}"
        f" {BAD_PTR} (i32.const 516))"
    ),
    "get_buffer_bytes size": (
        f"(call $proxy_get_buffer_bytes (i32.const 6) (i32.const 0) {HUGE}"
        f" (i32.const 512) {BAD_PTR})"
    ),
    "set_buffer_bytes data": (
        f"(call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0)"
        f" {BAD_PTR} (i32.const 4))"
    ),
    "get_buffer_status len": (
        f"(call $proxy_get_buffer_status (i32.const 6) {BAD_PTR} (i32.const 516))"
    ),
    "get_buffer_status flags": (
        f"(call $proxy_get_buffer_status (i32.const 6) (i32.const 512) {BAD_PTR})"
    ),
    "get_header_map_size": f"(call $proxy_get_header_map_size (i32.const 0) {BAD_PTR})",
    "get_header_map_pairs ptr": (
        f"(call $proxy_get_header_map_pairs (i32.const 0) {BAD_PTR} (i32.const 516))"
    ),
    "get_header_map_pairs size": (
        f"(call $proxy_get_header_map_pairs (i32.const 0) (i32.const 512) {BAD_PTR})"
    ),
    "set_header_map_pairs": (
        f"(call $proxy_set_header_map_pairs (i32.const 0) {BAD_PTR} (i32.const 16))"
    ),
    "set_header_map_pairs len": (
        f"(call $proxy_set_header_map_pairs (i32.const 0) (global.get $s_p) {HUGE})"
    ),
    "get_header_map_value key": (
        f"(call $proxy_get_header_map_value (i32.const 0) {BAD_PTR} (i32.const 3) {OUT})"
    ),
    "get_header_map_value ret": (
        f"(call $proxy_get_header_map_value (i32.const 0) {K} {BAD_PTR} (i32.const 516))"
    ),
    "get_header_map_value size": (
        f"(call $proxy_get_header_map_value (i32.const 0) {K} (i32.const 512) {BAD_PTR})"
    ),
    "add key": f"(call $proxy_add_header_map_value (i32.const 0) {BAD_PTR} (i32.const 1) {V})",
    "add value": f"(call $proxy_add_header_map_value (i32.const 0) {K} (global.get $s_v) {HUGE})",
    "replace key": (
        f"(call $proxy_replace_header_map_value (i32.const 0) {BAD_PTR} (i32.const 1) {V})"
    ),
    "replace value": (
        f"(call $proxy_replace_header_map_value (i32.const 0) {K} {BAD_PTR} (i32.const 1))"
    ),
    "remove key": (
        f"(call $proxy_remove_header_map_value (i32.const 0) {BAD_PTR} (i32.const 1))"
    ),
    "send_local_response details": (
        f"(call $proxy_send_local_response (i32.const 403) {BAD_PTR} (i32.const 1)"
        f" {V} {P} (i32.const -1))"
    ),
    "send_local_response body": (
        f"(call $proxy_send_local_response (i32.const 403) {V} {BAD_PTR} (i32.const 1)"
        f" {P} (i32.const -1))"
    ),
    "send_local_response headers": (
        f"(call $proxy_send_local_response (i32.const 403) {V} {V} {BAD_PTR}"
        " (i32.const 16) (i32.const -1))"
    ),
    "get_property path": f"(call $proxy_get_property {BAD_PTR} (i32.const 4) {OUT})",
    "get_property ret": f"(call $proxy_get_property {P} {BAD_PTR} (i32.const 516))",
    "get_property size": f"(call $proxy_get_property {P} (i32.const 512) {BAD_PTR})",
    "set_property path": f"(call $proxy_set_property {BAD_PTR} (i32.const 1) {V})",
    "set_property value": f"(call $proxy_set_property {K} {BAD_PTR} (i32.const 1))",
    "call_foreign_function name": (
        f"(call $proxy_call_foreign_function {BAD_PTR} (i32.const 8) {V} {OUT})"
    ),
    "call_foreign_function args": (
        f"(call $proxy_call_foreign_function (global.get $s_c) (global.get $s_c_len)"
        f" (global.get $s_v) {HUGE} {OUT})"
    ),
    "call_foreign_function ret": (
        f"(call $proxy_call_foreign_function (global.get $s_c) (global.get $s_c_len)"
        f" {V} {BAD_PTR} (i32.const 516))"
    ),
}

BAD_ENUM = {
    "log level": "(call $proxy_log (i32.const 6) (global.get $s_k) (global.get $s_k_len))",
    "get_buffer_bytes": f"(call $proxy_get_buffer_bytes (i32.const 9) (i32.const 0) {HUGE} {OUT})",
    "set_buffer_bytes": f"(call $proxy_set_buffer_bytes (i32.const 9) (i32.const 0) (i32.const 0) {V})",
    "get_buffer_status": f"(call $proxy_get_buffer_status (i32.const 9) {OUT})",
    "get_header_map_size": "(call $proxy_get_header_map_size (i32.const 8) (i32.const 512))",
    "get_header_map_pairs": f"(call $proxy_get_header_map_pairs (i32.const 8) {OUT})",
    "set_header_map_pairs": f"(call $proxy_set_header_map_pairs (i32.const 8) {P})",
    "get_header_map_value": f"(call $proxy_get_header_map_value (i32.const 8) {K} {OUT})",
    "add": f"(call $proxy_add_header_map_value (i32.const 8) {K} {V})",
    "replace": f"(call $proxy_replace_header_map_value (i32.const -1) {K} {V})",
    "remove": f"(call $proxy_remove_header_map_value (i32.const 8) {K})",
    "continue_stream": "(call $proxy_continue_stream (i32.const 4))",
    "close_stream": "(call $proxy_close_stream (i32.const 0x10000))",
}

BAD_STRINGS = {
    "k": "key",
    "v": "v",
    "p": "plugin_vm_id",  # its value is empty: no allocation before the write
    "c": "compress",
}


def _status_of(call: str) -> tuple[FilterVm, object, str]:
    name = call.split()[1].removeprefix("$")
    body = on_request_headers(f"(i32.store (i32.const 1000) {call})")
    vm, result = http(
        body, BAD_STRINGS, req=request("GET", "http://h/", [("key", "v")])
    )
    return vm, result, name


@pytest.mark.parametrize("case", sorted(BAD_MEMORY))
def test_out_of_range_memory_is_invalid_memory_access(case):
    vm, result, name = _status_of(BAD_MEMORY[case])
    assert result.error is None
    assert statuses(result.trace, name) == ["INVALID_MEMORY_ACCESS"]
    assert u32(vm, 1000) == 6


@pytest.mark.parametrize("case", sorted(BAD_ENUM))
def test_out_of_range_enums_are_bad_argument(case):
    vm, result, name = _status_of(BAD_ENUM[case])
    assert result.error is None
    assert statuses(result.trace, name) == ["BAD_ARGUMENT"]
    assert u32(vm, 1000) == 2
    assert result.request_after is not None
    assert result.request_after.headers == result.request_before.headers


# --- Envoy-shaped properties ---------------------------------------------------


def _read_property_wat(path: bytes) -> str:
    return filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $proxy_get_property (global.get $s_p) (global.get $s_p_len)
               (i32.const 600) (i32.const 604)))
             (i32.const 0))""",
        strings={"p": path},
    )


def _property(path: bytes, **kwargs):
    from wasmkit.host import load as _load
    from wasmkit.host import request as _request
    from wasmkit.host import response as _response

    connection = kwargs.pop("connection", None)
    plugin = _load(_read_property_wat(path), root_id="rid", **kwargs)
    result = plugin.run_http(
        _request("GET", "http://api.test/v1/x?y=2", [("user-agent", "ua")]),
        _response(),
        connection=connection,
    )
    (call,) = [t for t in result.trace if t.name == "proxy_get_property"]
    return call.result, call.args.get("returned")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"source\0address", b"127.0.0.1:50000"),
        (b"source\0port", (50000).to_bytes(8, "little")),
        (b"destination\0port", (10000).to_bytes(8, "little")),
        (b"connection\0id", (2).to_bytes(8, "little")),
        (b"connection\0mtls", b"\x00"),
        (b"upstream\0address", b"127.0.0.1:8080"),
        (b"xds\0node\0id", b"wasmkit"),
        (b"node\0cluster", b"wasmkit"),
        (b"xds\0listener_direction", (1).to_bytes(8, "little")),
        (b"request\0url_path", b"/v1/x"),
        (b"request\0query", b"y=2"),
        (b"request\0host", b"api.test"),
        (b"plugin_root_id", b"rid"),
        (b"request.path", b"/v1/x?y=2"),
    ],
)
def test_envoy_shaped_properties(path, expected):
    assert _property(path) == ("OK", expected)


def test_properties_from_the_connection_and_overrides():
    from wasmkit.host.message import Connection

    tls = Connection(
        source_address="10.1.2.3",
        source_port=4444,
        tls_version="TLSv1.3",
        sni="api.test",
        mtls=True,
        id=77,
    )
    assert _property(b"source\0address", connection=tls) == ("OK", b"10.1.2.3:4444")
    assert _property(b"connection\0tls_version", connection=tls) == ("OK", b"TLSv1.3")
    assert _property(b"connection\0requested_server_name", connection=tls) == (
        "OK",
        b"api.test",
    )
    assert _property(b"connection\0id", connection=tls) == (
        "OK",
        (77).to_bytes(8, "little"),
    )
    assert _property(b"connection\0tls_version")[0] == "NOT_FOUND"
    # Overrides: a flat path, and a mapping descended into.
    node = {"node": {"metadata": {"NAMESPACE": "prod", "LABELS": {"app": "web"}}}}
    assert _property(b"node\0metadata\0NAMESPACE", properties=node) == ("OK", b"prod")
    status, raw = _property(b"node\0metadata\0LABELS", properties=node)
    assert status == "OK" and pairs.decode(raw) == [(b"app", b"web")]
    assert _property(b"xds\0route_name", properties={"xds.route_name": "r1"}) == (
        "OK",
        b"r1",
    )
    assert _property(b"xds\0node\0id", node={"id": "sidecar~10.0.0.1"}) == (
        "OK",
        b"sidecar~10.0.0.1",
    )
    assert _property(b"no\0such\0thing")[0] == "NOT_FOUND"


def test_foreign_functions_both_ways():
    from wasmkit.host import load as _load
    from wasmkit.host import request as _request
    from wasmkit.host import response as _response

    wat = filter_wat(
        """
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_call_foreign_function (global.get $s_n) (global.get $s_n_len)
            (global.get $s_a) (global.get $s_a_len) (i32.const 600) (i32.const 604)))
          (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 600))
            (i32.load (i32.const 604))))
          (i32.const 0))
        (func (export "proxy_on_foreign_function") (param $root i32) (param $id i32)
              (param $size i32)
          (drop (call $proxy_get_buffer_bytes (i32.const 8) (i32.const 0) (local.get $size)
            (i32.const 608) (i32.const 612)))
          (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 608))
            (i32.load (i32.const 612)))))
        """,
        strings={"n": "shout", "a": "hello"},
    )
    plugin = _load(wat)
    plugin.vm.register_foreign_function("shout", lambda data: data.upper() + b"!")
    result = plugin.run_http(_request(), _response())
    assert [r.message for r in result.logs] == ["HELLO!"]
    plugin.call_foreign(7, b"from the host")
    assert plugin.vm.logs[-1].message == "from the host"
    (event,) = [t for t in plugin.vm.trace if t.name == "proxy_on_foreign_function"]
    assert event.args == {"context_id": 1, "function_id": 7, "data_size": 13}


def test_route_and_cluster_metadata_from_overrides():
    meta = {"xds.route_metadata": {"filter_metadata": {"envoy.lb": {"canary": True}}}}
    status, raw = _property(
        b"xds\0route_metadata\0filter_metadata\0envoy.lb\0canary", properties=meta
    )
    assert (status, raw) == ("OK", b"\x01")
    status, raw = _property(b"xds\0cluster_metadata")
    assert status == "OK" and pairs.decode(raw) == [(b"filter_metadata", b"\0\0\0\0")]


def test_the_access_log_has_no_request_trailers_as_envoy():
    # Envoy's access log phase gives the filter the log's request headers,
    # response headers and trailers, and no request trailers.
    body = """
    (func (export "proxy_on_request_trailers") (param i32 i32) (result i32)
      (drop (call $proxy_get_header_map_size (i32.const 1) (i32.const 600)))
      (i32.const 0))
    (func (export "proxy_on_log") (param i32)
      (drop (call $proxy_get_header_map_size (i32.const 1) (i32.const 604)))
      (drop (call $proxy_get_header_map_size (i32.const 3) (i32.const 608))))
    """
    with_trailers = dataclasses.replace(ENVOY_DEFAULTS, enable_trailers=True)
    req = request("POST", "http://h/", body="b", trailers=[("x-rt", "1")])
    resp = response(200, body="r", trailers=[("x-st", "22")])
    vm, _ = http(body, req=req, resp=resp, frames=with_trailers)
    assert u32(vm, 600) > 0  # seen in their own callback
    assert u32(vm, 604) == 0  # not in the access log
    assert u32(vm, 608) > 0  # the response's trailers are
