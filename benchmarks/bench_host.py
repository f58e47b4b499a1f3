"""Host crossing costs and a full header-filter lifecycle.

Prints medians (µs) of:
- one Python -> wasm call (native core, fast ctypes and public call paths),
- one wasm -> host call (native core, fast ctypes and public),
- one full HTTP lifecycle of a header filter with 10 request and 10 response
  headers (context create, request headers, response headers, log, done,
  delete; the filter reads one header and adds one on each side), with the
  trace on and off, on the native core and on the pure-Python host.

Absolute times move with the machine's load; the lifecycle's targets are
ratios to other hosts on the same module (bench_peers.py). Usage:
    python benchmarks/bench_host.py [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from wasmkit.host import HttpMessage, load, native, request, response
from wasmkit.host.vm import WasmtimeVm, compile_module
from wasmkit.testing import filter_wat

CROSSING = """(module
  (import "env" "h" (func $h (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "nop") (param i32) (result i32) (local.get 0))
  (func (export "calls") (param $n i32) (result i32)
    (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (drop (call $h (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $i)))"""

HEADER_FILTER = filter_wat(
    """
    (func (export "proxy_on_context_create") (param i32 i32))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_get_header_map_value (i32.const 0)
        (global.get $s_ua) (global.get $s_ua_len) (i32.const 512) (i32.const 516)))
      (drop (call $proxy_add_header_map_value (i32.const 0)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 2)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    (func (export "proxy_on_log") (param i32))
    (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
    (func (export "proxy_on_delete") (param i32))
    """,
    strings={"ua": "user-agent", "k": "x-bench", "v": "1"},
)


def median_us(fn: Callable[[], object], per_call: int = 1, rounds: int = 31) -> float:
    """Median over ``rounds`` batches of the time per call (µs)."""
    batch = 1
    while True:  # size batches to ~20 ms
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - start > 0.02:
            break
        batch *= 2
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - start) / batch / per_call * 1e6)
    return statistics.median(samples)


def crossing(fast: bool, core: bool = False) -> tuple[float, float]:
    vm = WasmtimeVm(
        compile_module(CROSSING),
        [lambda x: x],
        fast=fast,
        native=native.core() if core else None,
    )
    call = median_us(lambda: vm.call("nop", (1,)))
    n = 200
    total = median_us(lambda: vm.call("calls", (n,)), per_call=n)
    return call, total


def lifecycle_messages() -> tuple[HttpMessage, HttpMessage]:
    """The lifecycle's request and response (also bench_peers.py's, on every host)."""
    req = request(
        "GET",
        "http://bench.example/path?q=1",
        [(f"x-req-{i}", f"value-{i}") for i in range(5)]
        + [("user-agent", "bench"), ("accept", "*/*")],
    )
    resp = response(200, [(f"x-resp-{i}", f"value-{i}") for i in range(10)])
    assert len(req.headers) == 11 and len(resp.headers) == 11
    return req, resp


def lifecycle(fast: bool, trace: bool, host: str = "native") -> float:
    plugin = load(HEADER_FILTER, fast=fast, trace=trace, host=host)
    req, resp = lifecycle_messages()
    return median_us(lambda: plugin.run_http(req, resp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    core_call, core_host = crossing(True, core=True)
    fast_call, fast_host = crossing(True)
    pub_call, pub_host = crossing(False)
    rows = {
        "python->wasm call, native core (us)": core_call,
        "python->wasm call, fast path, ctypes (us)": fast_call,
        "python->wasm call, public API (us)": pub_call,
        "wasm->host call, native core (us)": core_host,
        "wasm->host call, fast path, ctypes (us)": fast_host,
        "wasm->host call, public API (us)": pub_host,
        "header-filter lifecycle, native core, trace off (us)": lifecycle(True, False),
        "header-filter lifecycle, native core, trace on (us)": lifecycle(True, True),
        "header-filter lifecycle, Python host, trace off (us)": lifecycle(
            True, False, "python"
        ),
        "header-filter lifecycle, Python host, trace on (us)": lifecycle(
            True, True, "python"
        ),
        "header-filter lifecycle, public API, trace on (us)": lifecycle(False, True),
    }
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for name, value in rows.items():
        print(f"{name:<55} {value:8.2f}")


if __name__ == "__main__":
    main()
