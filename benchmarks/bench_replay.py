"""Replay throughput from a capture file: one process, and Dask workers.

Writes a capture of N synthetic flows once (wasmkit.traffic.model types: 10
request and 10 response headers, a small JSON body, one second apart;
``$WASMKIT_CACHE/bench``), reads it once so the warm-load cache and the
partition index hold it, and replays it by path through a header filter (WAT;
reads one header, adds one on each side, frees its allocations in
``on_done``) with the trace off, every flow's full result kept:
- one process (``workers=1``, one VM),
- ``--workers`` Dask workers (a ``distributed.LocalCluster`` of that many
  single-threaded processes, started before the rounds and kept, as a
  notebook session keeps it): each worker reads its partitions from the path,
  and the results come back compact,
taken in turn in ``--rounds`` rounds; the speed-up is the median of each
round's ratio of wall times (the same job side by side). Also: the time to
start the cluster (the ``distributed`` import, then ``LocalCluster`` with its
worker processes), which the first replay of a session (or every ``wasmkit
replay --workers N``) pays on top. Targets: >= 20,000 flows/s in one process,
>= 1.7x with two workers. Usage:
    python benchmarks/bench_replay.py [--flows 100000] [--workers 2]
        [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

from wasmkit.replay import _cluster, partitions
from wasmkit.replay.parallel import shutdown_workers
from wasmkit.replay.run import replay
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


def capture_path(flows: int) -> Path:
    """The benchmark's capture of ``flows`` flows, written if missing."""
    from wasmkit.traffic import cache, mitm

    path = cache.cache_root().parent / "bench" / f"replay-{flows}.flow"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        mitm.write_flows(
            tmp,
            (
                (e, e.to_request_message(), e.to_response_message(), None)
                for e in map(make_exchange, range(flows))
            ),
        )
        tmp.replace(path)
    return path


def once(capture: Path, flows: int, workers: int) -> float:
    """Seconds of one replay of ``capture`` (every full result kept)."""
    gc.collect()
    start = time.perf_counter()
    result = replay(HEADER_FILTER, capture, workers=workers, trace=False)
    elapsed = time.perf_counter() - start
    assert len(result) == flows and not result.failed
    if workers > 1:
        assert len(result.parts) >= workers
    del result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    capture = capture_path(args.flows)
    partitions.index_capture(capture, decoded=False)  # warm cache and index
    once(capture, args.flows, 1)  # warm up: imports, compile caches
    began = time.perf_counter()
    import distributed  # noqa: F401  # what the first replay on Dask imports

    imported = time.perf_counter() - began
    began = time.perf_counter()
    _cluster.client_for(args.workers, None)
    started = time.perf_counter() - began
    once(capture, args.flows, args.workers)  # the workers' imports and compiles
    one: list[float] = []
    many: list[float] = []
    for _ in range(args.rounds):
        one.append(once(capture, args.flows, 1))
        many.append(once(capture, args.flows, args.workers))
    shutdown_workers()
    ratio = statistics.median(a / b for a, b in zip(one, many, strict=True))
    rate_one = args.flows / statistics.median(one)
    rate_many = args.flows / statistics.median(many)
    out = {
        "flows": args.flows,
        "workers": args.workers,
        "one process (flows/s)": round(rate_one),
        f"{args.workers} workers (flows/s)": round(rate_many),
        "speed-up (median of per-round ratios)": round(ratio, 2),
        "ratios": [round(a / b, 2) for a, b in zip(one, many, strict=True)],
        "distributed import (s)": round(imported, 2),
        "cluster start (s)": round(started, 2),
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(
        f"{args.flows:,} flows from {capture.name}, header filter, trace off, "
        f"{args.rounds} rounds, medians"
    )
    print(f"one process:  {rate_one:>10,.0f} flows/s")
    print(f"{args.workers} workers:   {rate_many:>10,.0f} flows/s (cluster kept)")
    print(f"speed-up:     {ratio:.2f}x (rounds: {out['ratios']})")
    print(
        f"cluster start: {started:.1f} s (after importing distributed: "
        f"{imported:.1f} s), paid by the first replay of a session"
    )
    print(f"target: >= 20,000 flows/s in one process: {rate_one:,.0f}")
    print(f"target: >= 1.7x with {args.workers} workers: {ratio:.2f}x")


if __name__ == "__main__":
    main()
