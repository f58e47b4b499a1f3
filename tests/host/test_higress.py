"""Higress's ABI marker, its Redis calls and its other host functions, on WAT."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wasmkit.abi import wasm_binary
from wasmkit.abi.check import check_filter
from wasmkit.abi.constants import HIGRESS_MARKER, AbiVersion, WasmResult
from wasmkit.abi.signatures import HIGRESS_IMPORTS
from wasmkit.errors import FilterLoadError
from wasmkit.host import FilterVm, PluginConfig, higress, load, request, response
from wasmkit.host.vm import read_binary
from wasmkit.testing import filter_wat

DATA = Path(__file__).resolve().parents[1] / "data"


def higress_wat(body: str, strings: dict[str, str | bytes] | None = None) -> str:
    """A filter declaring Higress's marker, importing the Higress functions used."""
    wat = filter_wat(body, strings=strings)
    wat = wat.replace(AbiVersion.V0_2_1.marker, HIGRESS_MARKER)
    lines = []
    for name, sig in HIGRESS_IMPORTS.items():
        if f"${name}" in body:
            params = " ".join(sig.params)
            lines.append(
                f'  (import "env" "{name}" (func ${name} (param {params}) (result i32)))'
            )
    return wat.replace("(module", "(module\n" + "\n".join(lines), 1)


# Looks the request's user up in Redis before letting it through: on configure
# it initialises the "redis" cluster; on request headers it sends
# "GET user:1" and pauses; the reply goes into an x-redis request header and
# the stream continues. A failed call denies with 403.
LOOKUP = higress_wat(
    """
    (global $stream (mut i32) (i32.const 0))
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (i32.store (i32.const 800) (call $proxy_redis_init
        (global.get $s_cluster) (global.get $s_cluster_len)
        (global.get $s_user) (global.get $s_user_len)
        (global.get $s_pass) (global.get $s_pass_len)
        (i32.const 500)))
      (i32.const 1))
    (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
      (local $status i32)
      (global.set $stream (local.get $ctx))
      (local.set $status (call $proxy_redis_call
        (global.get $s_cluster) (global.get $s_cluster_len)
        (global.get $s_query) (global.get $s_query_len)
        (i32.const 600)))
      (i32.store (i32.const 604) (local.get $status))
      (if (local.get $status) (then (return (i32.const 0))))
      (i32.const 1))
    (func (export "proxy_on_redis_call_response") (param $root i32) (param $token i32)
          (param $status i32) (param $size i32)
      (drop (call $proxy_set_effective_context (global.get $stream)))
      (i32.store (i32.const 624) (local.get $token))
      (if (local.get $status)
        (then
          (drop (call $proxy_send_local_response (i32.const 403)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const -1)))
          (return)))
      (i32.store (i32.const 628) (call $proxy_get_buffer_bytes (i32.const 9)
        (i32.const 0) (local.get $size) (i32.const 616) (i32.const 620)))
      (drop (call $proxy_add_header_map_value (i32.const 0)
        (global.get $s_hdr) (global.get $s_hdr_len)
        (i32.load (i32.const 616)) (i32.load (i32.const 620))))
      (drop (call $proxy_continue_stream (i32.const 0))))
    (func (export "others") (result i32)
      (i32.add (i32.add
        (call $proxy_inject_encoded_data_to_filter_chain
          (global.get $s_user) (global.get $s_user_len) (i32.const 1))
        (call $proxy_get_upstream_hosts (i32.const 640) (i32.const 644)))
        (call $proxy_set_upstream_override_host
          (global.get $s_user) (global.get $s_user_len))))
    """,
    strings={
        "cluster": "redis",
        "user": "default",
        "pass": "secret",
        "query": higress.encode(["GET", "user:1"]),
        "hdr": "x-redis",
    },
)


def _u32(vm: FilterVm, address: int) -> int:
    raw = vm.mem.read(address, 4)
    assert raw is not None
    return int.from_bytes(raw, "little")


def test_a_higress_module_is_abi_0_2_1_with_the_higress_profile():
    info = wasm_binary.parse(read_binary(LOOKUP)[1])
    verdict = check_filter(info)
    assert verdict.ok, verdict.problems
    assert (verdict.abi_version, verdict.vendor) == (AbiVersion.V0_2_1, "higress")
    assert verdict.label == "ABI 0.2.1 (Higress 0_2_100)"
    vm = FilterVm(LOOKUP, redis_responder={"redis": None})
    assert (vm.abi_version, vm.vendor) == (AbiVersion.V0_2_1, "higress")


def test_redis_reply_reaches_the_filter_as_buffer_9():
    plugin = load(LOOKUP, redis_responder={"redis GET user:1": "alice"})
    vm = plugin.vm
    assert _u32(vm, 800) == WasmResult.OK  # proxy_redis_init
    assert vm.higress.initialized == {"redis": 500}
    result = plugin.run_http(request("GET", "http://h/x"), response(200))
    assert result.error is None and result.request_forwarded
    assert result.request_after.get(b"x-redis") == b"$5\r\nalice\r\n"
    (call,) = vm.higress.redis_calls
    assert call.command == [b"GET", b"user:1"] and call.name == "GET"
    assert (call.token, call.root_id, call.context_id) == (3, 1, result.context_id)
    assert (call.outcome, call.status, call.response) == (
        "response",
        0,
        b"$5\r\nalice\r\n",
    )
    assert _u32(vm, 624) == 3 and _u32(vm, 628) == WasmResult.OK
    names = [t.name for t in result.trace if t.kind == "callback"]
    assert names.index("proxy_on_request_headers") < names.index(
        "proxy_on_redis_call_response"
    )


def test_a_function_responder_sees_the_call_and_sets_the_latency():
    seen = []

    def responder(call: higress.RedisCall) -> higress.RedisReply:
        seen.append((call.cluster, call.command, call.timeout_ms))
        return higress.RedisReply(b":42\r\n", latency_ms=120)

    plugin = load(LOOKUP, redis_responder=responder)
    start = plugin.vm.clock.now_ns()
    result = plugin.run_http(request(), response())
    assert result.request_after.get(b"x-redis") == b":42\r\n"
    assert seen == [("redis", [b"GET", b"user:1"], 500)]
    assert plugin.vm.clock.now_ns() - start == 120_000_000
    assert plugin.vm.higress.redis_calls[0].to_json()["latency_ms"] == 120.0


def test_a_failed_or_unanswered_call_is_delivered_as_a_failure():
    failed = load(LOOKUP, redis_responder={"redis": {"fail": True}})
    result = failed.run_http(request(), response())
    assert result.response_after.status == 403
    assert failed.vm.higress.redis_calls[0].outcome == "failure"
    # No answer: the init's 500 ms timeout applies.
    silent = load(LOOKUP, redis_responder=lambda call: None)
    start = silent.vm.clock.now_ns()
    result = silent.run_http(request(), response())
    assert result.response_after.status == 403
    (call,) = silent.vm.higress.redis_calls
    assert (call.outcome, call.status) == ("timeout", higress.FAILURE_STATUS)
    assert silent.vm.clock.now_ns() - start == 500_000_000


def test_an_unknown_cluster_is_a_bad_argument():
    plugin = load(LOOKUP, redis_responder={"other": "x"})
    assert _u32(plugin.vm, 800) == WasmResult.BAD_ARGUMENT
    result = plugin.run_http(request(), response())
    # The filter continues when the call is refused.
    assert result.request_forwarded and plugin.vm.higress.redis_calls == []
    assert _u32(plugin.vm, 604) == WasmResult.BAD_ARGUMENT
    no_responder = load(LOOKUP)
    assert _u32(no_responder.vm, 800) == WasmResult.BAD_ARGUMENT


def test_buffer_9_exists_only_while_a_reply_is_delivered():
    vm = FilterVm(LOOKUP, redis_responder={"redis": "x"})
    vm.add_plugin(PluginConfig())
    assert higress.get_buffer_status(vm, 9, 700, 704) == WasmResult.NOT_FOUND
    assert higress.get_buffer_bytes(vm, 9, 0, 10, 700, 704) == WasmResult.NOT_FOUND


def test_other_higress_functions_are_recorded_and_unimplemented():
    plugin = load(LOOKUP, redis_responder={"redis": "x"})
    vm = plugin.vm
    total = vm.invoke("others", (), plugin.root)
    assert total == 3 * WasmResult.UNIMPLEMENTED
    assert [n for n, _ in vm.higress.unimplemented] == [
        "proxy_inject_encoded_data_to_filter_chain",
        "proxy_get_upstream_hosts",
        "proxy_set_upstream_override_host",
    ]
    assert vm.higress.unimplemented[0][1] == b"default"
    warned = [r.message for r in vm.logs if r.source == "host"]
    assert len(warned) == 3 and all("does not emulate" in m for m in warned)


def test_standard_marker_modules_do_not_get_higress_functions():
    wat = LOOKUP.replace(HIGRESS_MARKER, AbiVersion.V0_2_1.marker)
    with pytest.raises(FilterLoadError, match="proxy_redis_call"):
        FilterVm(wat)
    # ... unless the profile is forced.
    vm = FilterVm(wat, abi="higress", redis_responder={"redis": "x"})
    assert vm.vendor == "higress"


def test_abi_forces_a_version_for_a_module_without_a_known_marker():
    wat = filter_wat(
        '(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)'
        " (i32.const 0))"
    ).replace(AbiVersion.V0_2_1.marker, "proxy_abi_version_9_9_9")
    with pytest.raises(FilterLoadError, match="abi="):
        FilterVm(wat)
    vm = FilterVm(wat, abi="0.2.0")
    assert (vm.abi_version, vm.vendor) == (AbiVersion.V0_2_0, None)
    assert FilterVm(wat, abi=AbiVersion.V0_2_1).abi_version is AbiVersion.V0_2_1
    with pytest.raises(ValueError, match="unknown ABI"):
        FilterVm(wat, abi="0.3.0")


def test_resp_encoding():
    assert higress.encode(None) == b"$-1\r\n"
    assert higress.encode(7) == b":7\r\n"
    assert higress.encode(["SET", b"k", 1]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n:1\r\n"
    assert higress.encode({"error": "ERR no"}) == b"-ERR no\r\n"
    assert higress.encode({"status": "OK"}) == b"+OK\r\n"
    with pytest.raises(TypeError):
        higress.encode(1.5)
    assert higress.decode_command(higress.encode(["GET", "k"])) == [b"GET", b"k"]
    assert higress.decode_command(b"*1\r\n$9\r\nshort\r\n") is None
    assert higress.decode_command(b"PING") is None


@pytest.mark.toolchain("go")
def test_a_go_built_higress_filter_answers_from_redis():
    # A real module: Go 1.24+ itself, //go:wasmexport of Higress's marker and
    # //go:wasmimport of its Redis functions (the Higress Go SDK is not on the
    # Go module proxy).
    if shutil.which("go") is None:
        pytest.skip("go is not installed")
    from wasmkit import build

    artifact = build(DATA / "go_higress", "go")
    plugin = load(
        artifact,
        redis_responder={"redis GET user:1": higress.RedisReply(b"+alice\r\n", 0, 5)},
    )
    vm = plugin.vm
    assert (vm.abi_version, vm.vendor) == (AbiVersion.V0_2_1, "higress")
    assert vm.higress.initialized == {"redis": 1000}
    result = plugin.run_http(request("GET", "http://h/x"), response(200))
    assert result.error is None and result.request_forwarded, result.error
    assert result.request_after.get(b"x-redis") == b"+alice\r\n"
    (call,) = vm.higress.redis_calls
    assert call.command == [b"GET", b"user:1"] and call.outcome == "response"
    # Unanswered: the 1000 ms timeout of proxy_redis_init, then status 1.
    silent = load(artifact, redis_responder=lambda call: None)
    result = silent.run_http(request(), response())
    assert result.request_forwarded and result.request_after.get(b"x-redis") is None
    assert [r.message for r in result.logs] == ["redis call failed"]
