"""Flows with bodies through one tree's host, as a child of benchmarks/bench_body.py.

    python benchmarks/peers/body_peer.py

Imports ``wasmkit`` from wherever the path puts it first (bench_body.py runs
one of these on this tree and one on a baseline tree, through PYTHONPATH),
loads the three filters of :data:`FILTERS` (fast call path, trace off), warms
up, prints ``ready WASMKIT_FILE``, then answers ``run FILTER SIZE N`` with
``ran N CPU_NS``: the process CPU time of N flows through ``Plugin.run_http``
(Envoy's connection manager, the HTTP/1 codec's framing) whose request and
response each carry a body of SIZE bytes. ``quit`` exits.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from wasmkit.host import load, request, response
from wasmkit.testing import filter_wat

HEAP_BASE = 65536  # wasmkit.testing's bump allocator starts here

HEADERS = """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 0)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 2)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    (func (export "proxy_on_done") (param i32) (result i32)
      (global.set $heap (i32.const HEAP_BASE))
      (i32.const 1))
"""
CONTINUE = """
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (i32.const 0))
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      (i32.const 0))
"""
READ = """
    (func $read (param $type i32) (param $size i32) (result i32)
      (drop (call $proxy_get_buffer_bytes (local.get $type) (i32.const 0)
        (local.get $size) (i32.const 512) (i32.const 516)))
      (i32.const 0))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (if (result i32) (local.get 2)
        (then (call $read (i32.const 0) (local.get 1)))
        (else (i32.const 1))))
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      (if (result i32) (local.get 2)
        (then (call $read (i32.const 1) (local.get 1)))
        (else (i32.const 1))))
"""


def _wat(body: str) -> str:
    return filter_wat(
        (HEADERS + body).replace("HEAP_BASE", str(HEAP_BASE)),
        strings={"k": "x-bench", "v": "1"},
        memory_pages=40,  # two 1 MiB bodies read whole, the heap reset per flow
    )


FILTERS = {
    "headers": _wat(""),  # a header filter: no body callback exported
    "continue": _wat(CONTINUE),  # body callbacks that return Continue
    "read": _wat(READ),  # holds each body to its end, then reads it whole
}
"""The filters, by name: each adds a header on each side."""


def flows(name: str, size: int) -> Callable[[], object]:
    """One flow of ``name`` with request and response bodies of ``size`` bytes."""
    plugin = PLUGINS[name]
    body = bytes(size)
    req = request("POST", "http://bench.example/upload", body=body)
    resp = response(200, [("content-type", "application/octet-stream")], body)

    def once() -> object:
        result = plugin.run_http(req, resp)
        if result.error is not None or len(result.response_after.body) != size:
            sys.exit(f"body_peer: the {name} flow of {size} bytes failed")
        return result

    return once


PLUGINS = {name: load(wat, fast=True, trace=False) for name, wat in FILTERS.items()}


def main() -> None:
    import wasmkit

    cache: dict[tuple[str, int], Callable[[], object]] = {}
    for name in FILTERS:
        flows(name, 1 << 20)()  # imports, compile caches, guest memory
    print(f"ready {wasmkit.__file__}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if len(cmd) == 4 and cmd[0] == "run" and cmd[1] in FILTERS:
            size, n = int(cmd[2]), int(cmd[3])
            key = (cmd[1], size)
            once = cache.get(key)
            if once is None:
                once = cache[key] = flows(*key)
            began = time.process_time_ns()
            for _ in range(n):
                once()
            print(f"ran {n} {time.process_time_ns() - began}", flush=True)
        elif cmd == ["quit"]:
            break
        else:
            sys.exit(f"body_peer: unknown command {line.strip()!r}")


if __name__ == "__main__":
    main()
