"""Memory while replaying a large capture: peak RSS at 100k, 300k and 1M flows.

Writes a capture of N synthetic flows with mitmproxy's FlowWriter (through
``wasmkit.traffic.mitm.write_flows``; 10 request and 10 response headers, a
small JSON body; about a minute per million flows) into a temporary directory,
then replays it through the header filter of ``bench_replay.py`` (trace off)
with ``wasmkit.replay.run.replay(..., keep="summary")``: every flow is counted in the
result's totals, only failures are kept in full. Each replay runs in a fresh
process, which reports its peak RSS (``VmHWM``), the RSS before the replay
(interpreter, wasmtime, the compiled filter) and flows/s.

The largest size is replayed first, cold (mitmproxy parses the file; the
warm-load cache entry is written on the way), then every size warm (from the
cache; the smaller ones with ``limit=``). Target: peak RSS < 1 GiB at one
million flows, flat in the capture's size. Usage:
    python benchmarks/bench_memory.py [--flows 100000 300000 1000000]
        [--keep summary] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench_replay import HEADER_FILTER, make_exchange

from wasmkit.traffic import mitm
from wasmkit.traffic.mitm import AfterFilter


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def generate(path: Path, count: int) -> float:
    """Write ``count`` flows to ``path``; returns the seconds it took."""
    start = time.perf_counter()

    def items() -> Iterator[AfterFilter]:
        for i in range(count):
            exchange = make_exchange(i)
            yield (
                exchange,
                exchange.to_request_message(),
                exchange.to_response_message(),
                None,
            )

    mitm.write_flows(path, items())
    return time.perf_counter() - start


def child(capture: str, limit: int, keep: str) -> None:
    """Replay in this (fresh) process and print the figures as JSON."""
    from wasmkit.host.plugin import load
    from wasmkit.replay.results import KEEP_MODES
    from wasmkit.replay.run import replay

    load(HEADER_FILTER, trace=False).vm.close()  # compile once: the baseline
    baseline = _status_kib("VmRSS")
    start = time.perf_counter()
    mode = next(k for k in KEEP_MODES if k == keep)
    # No limit for the whole file: a read to its end writes the cache entry.
    result = replay(HEADER_FILTER, capture, limit=limit or None, keep=mode, trace=False)
    elapsed = time.perf_counter() - start
    totals = result.totals
    print(
        json.dumps(
            {
                "flows": totals.flows,
                "modified": totals.modified,
                "failed": totals.failed,
                "kept": len(result.flows),
                "seconds": elapsed,
                "flows_per_s": totals.flows / elapsed,
                "rss_before_mib": baseline / 1024,
                "peak_rss_mib": _status_kib("VmHWM") / 1024,
            }
        )
    )


def run_child(capture: Path, limit: int, keep: str, env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(capture), str(limit), keep],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"replay of {limit} flows failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--flows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000]
    )
    parser.add_argument("--keep", default="summary", choices=["summary", "changed"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = sorted(args.flows)
    largest = sizes[-1]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "generated.flow"
        env = {**os.environ, "WASMKIT_CACHE": str(Path(tmp) / "cache")}
        made = generate(capture, largest)
        if not args.json:
            print(
                f"generated {largest:,} flows in {made:.0f} s "
                f"({capture.stat().st_size / 2**20:.0f} MiB); keep={args.keep}",
                flush=True,
            )
        runs = [(largest, "cold")] + [(n, "warm") for n in sizes]
        for flows, kind in runs:
            limit = 0 if flows == largest else flows
            row = {"load": kind, **run_child(capture, limit, args.keep, env)}
            rows.append(row)
            if not args.json:
                print(
                    f"{row['flows']:>9,} flows {kind}: peak RSS "
                    f"{row['peak_rss_mib']:6.0f} MiB (before the replay "
                    f"{row['rss_before_mib']:.0f} MiB), "
                    f"{row['flows_per_s']:,.0f} flows/s, "
                    f"{row['kept']} kept in full",
                    flush=True,
                )
    if args.json:
        print(json.dumps({"keep": args.keep, "runs": rows}, indent=1))
        return
    peak = max(r["peak_rss_mib"] for r in rows)
    verdict = "met" if peak < 1024 else "NOT met"
    print(f"largest peak RSS {peak:.0f} MiB: target < 1024 MiB {verdict}")


if __name__ == "__main__":
    main()
