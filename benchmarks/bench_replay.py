"""Replay throughput on pre-loaded flows, with one worker and with two.

Builds N synthetic exchanges in memory (wasmkit.traffic.model types: 10
request and 10 response headers, a small JSON body, one second apart) and
replays them through a header filter (WAT; reads one header, adds one on each
side) with the trace off. Prints flows/s for:
- 1 worker: in this process (one VM),
- 2 workers: ``spawn`` processes, each with its own VM and half the flows;
  the wall time includes starting the processes, compiling the module in each
  and pickling the exchanges and results both ways,
and the 2-worker speed-up. Usage:
    python benchmarks/bench_replay.py [--flows 20000] [--workers 1 2 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from wasmkit.replay.engine import ReplayOptions
from wasmkit.replay.parallel import replay_parallel
from wasmkit.testing import filter_wat
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
    (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
    """,
    strings={"ua": "user-agent", "k": "x-bench", "v": "1"},
)

T0 = 1_700_000_000.0


def make_exchanges(n: int) -> list[Exchange]:
    out = []
    for i in range(n):
        req_headers = Headers(
            [(b"host", b"api.example"), (b"user-agent", b"bench/1.0")]
            + [(f"x-req-{k}".encode(), f"value-{i}-{k}".encode()) for k in range(8)]
        )
        resp_headers = Headers(
            [(b"content-type", b"application/json")]
            + [(f"x-resp-{k}".encode(), f"value-{k}".encode()) for k in range(9)]
        )
        stamp = T0 + i
        out.append(
            Exchange(
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
            )
        )
    return out


def rate(exchanges: list[Exchange], workers: int) -> float:
    options = ReplayOptions()
    start = time.perf_counter()
    result = replay_parallel(
        HEADER_FILTER, exchanges, workers=workers, options=options, trace=False
    )
    elapsed = time.perf_counter() - start
    assert len(result) == len(exchanges) and not result.failed
    return len(exchanges) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exchanges = make_exchanges(args.flows)
    rows = {w: rate(exchanges, w) for w in args.workers}
    if args.json:
        print(json.dumps({f"{w} workers (flows/s)": r for w, r in rows.items()}))
        return
    base = rows.get(1)
    print(f"{args.flows} flows, header filter, trace off")
    print(f"{'workers':>8} {'flows/s':>10} {'speed-up':>9}")
    for w, r in rows.items():
        speedup = f"{r / base:8.2f}x" if base else ""
        print(f"{w:>8} {r:>10,.0f} {speedup:>9}")


if __name__ == "__main__":
    main()
