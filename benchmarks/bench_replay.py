"""Replay throughput on pre-loaded flows, with one worker and with two.

Builds N synthetic exchanges in memory (wasmkit.traffic.model types: 10
request and 10 response headers, a small JSON body, one second apart) and
replays them through a header filter (WAT; reads one header, adds one on each
side, frees its allocations in ``on_done``) with the trace off, every flow's
full result kept. Prints flows/s (best of ``--repeat`` runs) for:
- 1 worker: in this process (one VM),
- N workers, new processes: this process and N - 1 ``spawn`` processes started
  for the run (the wall time includes starting them, compiling the module
  there, sending the exchanges and bringing the results back),
- N workers, kept processes: the same with the worker processes a previous
  replay left waiting (as in a notebook session),
and the speed-ups over one worker. Targets: >= 20,000 flows/s with one
worker, >= 1.7x with two. Usage:
    python benchmarks/bench_replay.py [--flows 100000] [--workers 1 2]
        [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from wasmkit.replay.engine import ReplayOptions
from wasmkit.replay.parallel import replay_parallel, shutdown_workers
from wasmkit.testing import HEAP_BASE, filter_wat
from wasmkit.traffic.model import Exchange, Headers, Request, Response

HEADER_FILTER = filter_wat(
    """
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
    (func (export "proxy_on_done") (param i32) (result i32)
      (global.set $heap (i32.const HEAP_BASE))
      (i32.const 1))
    """.replace("HEAP_BASE", str(HEAP_BASE)),
    strings={"ua": "user-agent", "k": "x-bench", "v": "1"},
)

T0 = 1_700_000_000.0


def make_exchange(i: int) -> Exchange:
    """Synthetic flow ``i``: 10 request and 10 response headers, a JSON body."""
    req_headers = Headers(
        [(b"host", b"api.example"), (b"user-agent", b"bench/1.0")]
        + [(f"x-req-{k}".encode(), f"value-{i}-{k}".encode()) for k in range(8)]
    )
    resp_headers = Headers(
        [(b"content-type", b"application/json")]
        + [(f"x-resp-{k}".encode(), f"value-{k}".encode()) for k in range(9)]
    )
    stamp = T0 + i
    return Exchange(
        index=i,
        request=Request(
            "GET", "https", "api.example", 443, f"/items/{i}?q=1",
            headers=req_headers, timestamp_start=stamp,
        ),
        response=Response(
            200, "OK", headers=resp_headers,
            body=json.dumps({"id": i, "ok": True}).encode(),
        ),
        timestamp_start=stamp,
        timestamp_end=stamp + 0.01,
    )  # fmt: skip


def make_exchanges(n: int) -> list[Exchange]:
    """``n`` synthetic flows, one second apart."""
    return [make_exchange(i) for i in range(n)]


def once(exchanges: list[Exchange], workers: int, *, new: bool = True) -> float:
    """Flows/s of one replay (``new``: with new worker processes)."""
    if new:
        shutdown_workers()
    start = time.perf_counter()
    result = replay_parallel(
        HEADER_FILTER,
        exchanges,
        workers=workers,
        options=ReplayOptions(),
        trace=False,
    )
    elapsed = time.perf_counter() - start
    assert len(result) == len(exchanges) and not result.failed
    del result
    return len(exchanges) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exchanges = make_exchanges(args.flows)
    once(exchanges[:2000], 1)  # warm up: imports, compile caches
    # Round by round, every configuration once: the best of each, so that a
    # slow spell of the machine (or the heap's growth) biases none of them.
    configs = [("1", 1, True)] if 1 in args.workers else []
    for w in args.workers:
        if w > 1:
            configs += [(f"{w} new", w, True), (f"{w} kept", w, False)]
    rows: dict[str, float] = {key: 0.0 for key, _, _ in configs}
    for _ in range(args.repeat):
        for key, w, new in configs:
            # "kept": the workers the "new" run just left waiting.
            rows[key] = max(rows[key], once(exchanges, w, new=new))
    shutdown_workers()
    base = rows.get("1")
    if args.json:
        out: dict[str, object] = {
            "flows": args.flows,
            **{f"{k} workers (flows/s)": r for k, r in rows.items()},
        }
        if base:
            out.update({f"{k} workers speed-up": r / base for k, r in rows.items()})
        print(json.dumps(out, indent=1))
        return
    print(f"{args.flows:,} flows, header filter, trace off, best of {args.repeat} runs")
    print(f"{'workers':>8} {'processes':>10} {'flows/s':>10} {'speed-up':>9}")
    for key, r in rows.items():
        w, _, how = key.partition(" ")
        speedup = f"{r / base:8.2f}x" if base else ""
        print(f"{w:>8} {how or '-':>10} {r:>10,.0f} {speedup:>9}")
    if base:
        print(f"target: >= 20,000 flows/s with 1 worker: {base:,.0f}")
    if base and "2 new" in rows:
        print(
            f"target: >= 1.7x with 2 workers: {rows['2 new'] / base:.2f}x "
            f"(new processes), {rows['2 kept'] / base:.2f}x (kept processes)"
        )


if __name__ == "__main__":
    main()
