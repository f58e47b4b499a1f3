"""The wasmtime adapter: both call paths agree; modules load from every form."""

from __future__ import annotations

import ctypes

import pytest

from wasmkit.errors import FilterLoadError, FilterTrapError
from wasmkit.host import load, request, response, to_record
from wasmkit.host.memory import GuestMemory
from wasmkit.host.vm import GuestExit, Limits, WasmtimeVm, compile_module
from wasmkit.testing import filter_wat

from .test_safety import GARBAGE, TRAP_ON_BOOM
from .test_stream import BUFFERING, DENY, REWRITE_BODY, TRAILERS


def _strip_durations(record):
    for event in record["trace"]:
        event.pop("duration_us")
    return record


@pytest.mark.parametrize(
    ("wat", "req"),
    [
        (DENY, request("POST", "http://h/", body="x")),
        (BUFFERING, request("POST", "http://h/", body="0123456789abcdef")),
        (REWRITE_BODY, request()),
        (TRAILERS, request("POST", "http://h/", body="d", trailers=[("t", "1")])),
        (GARBAGE, request()),
        (TRAP_ON_BOOM, request("GET", "http://h/boom")),
    ],
)
def test_fast_and_public_paths_give_identical_results(wat, req):
    records = []
    for fast in (True, False):
        plugin = load(wat, fast=fast)
        result = plugin.run_http(
            req,
            response(200, [("server", "s")], "upstream body", trailers=[("a", "b")]),
            chunk_size=3,
        )
        records.append(_strip_durations(to_record(result)))
    assert records[0] == records[1]
    assert records[0]["trace"]


ADDER = """(module
  (import "env" "host" (func $host (param i32 i64) (result i32)))
  (import "env" "stop" (func $stop (param i32)))
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "wide") (param i64) (result i64) (i64.mul (local.get 0) (i64.const 2)))
  (func (export "via_host") (param i32) (result i32)
    (call $host (local.get 0) (i64.const -5)))
  (func (export "quit") (call $stop (i32.const 7))))"""


@pytest.mark.parametrize("fast", [True, False])
def test_values_cross_both_ways_unsigned(fast):
    seen = []

    def host(a, b):
        seen.append((a, b))
        return 0xFFFFFFFE

    def stop(code):
        raise GuestExit(f"stopped with {code}", code)

    vm = WasmtimeVm(compile_module(ADDER), [host, stop], fast=fast)
    assert vm.call("add", [2, 3]) == 5
    assert vm.call("add", [0xFFFFFFFF, 0]) == 0xFFFFFFFF
    assert vm.call("wide", [-21]) == -42
    assert vm.call("via_host", [0x80000000]) == 0xFFFFFFFE
    assert seen == [(0x80000000, -5)]
    with pytest.raises(FilterTrapError) as info:
        vm.call("quit", [], context_id=9)
    assert info.value.kind == "trap"
    assert info.value.context_id == 9
    assert "stopped with 7" in str(info.value)
    # Still usable after the guest exit.
    assert vm.call("add", [1, 1]) == 2


GROWER = """(module
  (import "env" "size" (func $size (result i32)))
  (memory (export "memory") 1)
  (func (export "grow_between") (result i32)
    (drop (call $size))
    (drop (memory.grow (i32.const 2)))
    (i32.store (i32.const 131072) (i32.const 0x2a))
    (call $size)))"""


@pytest.mark.parametrize("fast", [True, False])
def test_memory_grown_in_a_callback_is_seen_by_the_next_host_call(fast):
    seen = []

    def size():
        limit = vm.memory_region()[1]
        seen.append(limit)
        return limit

    vm = WasmtimeVm(compile_module(GROWER), [size], fast=fast)
    assert vm.memory_region()[1] == 65536
    assert vm.call("grow_between", []) == 3 * 65536
    assert seen == [65536, 3 * 65536]
    base, limit = vm.memory_region()
    assert limit == 3 * 65536
    assert ctypes.string_at(base + 131072, 1) == b"\x2a"


def test_host_bug_propagates_as_python_error():
    def host(a, b):
        raise ZeroDivisionError("host bug")

    vm = WasmtimeVm(compile_module(ADDER), [host, lambda c: None])
    with pytest.raises(ZeroDivisionError):
        vm.call("via_host", [1])


def test_module_from_bytes_text_and_paths(tmp_path):
    text = filter_wat("")
    binary = compile_module(text)
    wasm_path = tmp_path / "m.wasm"
    import wasmtime

    wasm_path.write_bytes(wasmtime.wat2wasm(text))
    for source in (
        text,
        text.encode(),
        wasm_path,
        str(wasm_path),
        wasm_path.read_bytes(),
    ):
        module = compile_module(source)
        assert module.sha256 == binary.sha256
        assert "proxy_abi_version_0_2_1" in module.exports


def test_bad_wat_names_the_problem():
    with pytest.raises(FilterLoadError, match="invalid wasm module"):
        compile_module('(module (func (export "f") (i32.add)))')
    with pytest.raises(FilterLoadError, match="not a wasm binary"):
        compile_module(b"\xff\xfe\x00garbage")


def test_limits_validate():
    with pytest.raises(ValueError, match="timeout_ms"):
        Limits(timeout_ms=0)
    with pytest.raises(ValueError, match="fuel"):
        WasmtimeVm(
            compile_module(ADDER),
            [lambda a, b: 0, lambda c: None],
            limits=Limits(fuel=10),
        )


READER = """(module
  (import "env" "read" (func $read (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "grow_and_read") (result i32)
    (i32.store (i32.const 16) (i32.const 0x01020304))
    (drop (call $read (i32.const 16) (i32.const 4)))
    (drop (memory.grow (i32.const 2)))
    (i32.store (i32.const 131072) (i32.const 0x2a2b2c2d))
    (drop (call $read (i32.const 131072) (i32.const 4)))
    (call $read (i32.const 196604) (i32.const 8))))"""


@pytest.mark.parametrize("fast", [True, False])
def test_memory_grown_since_last_seen_is_read_and_bounds_still_hold(fast):
    # Host reads check the size last seen first; one past it asks again.
    reads = []

    def read(ptr, size):
        data = memory.read(ptr, size)
        reads.append(data)
        return 0 if data is None else 1

    vm = WasmtimeVm(compile_module(READER), [read], fast=fast)
    memory = GuestMemory(vm.memory_region, lambda size: 0, vm.memory_seen)
    base = vm.memory_seen()[0]
    assert vm.call("grow_and_read", []) == 0  # the last read is out of range
    assert reads == [bytes([4, 3, 2, 1]), bytes([0x2D, 0x2C, 0x2B, 0x2A]), None]
    # The memory grew in place: the address seen before is still its address.
    assert vm.memory_region() == (base, 3 * 65536) == vm.memory_seen()
    assert memory.writable(3 * 65536 - 4, 4) and not memory.writable(3 * 65536 - 3, 4)
