"""Build-cache hits: how long an unchanged rebuild takes to return its Artifact.

For each language whose toolchain is installed, builds the add_headers sample
folder and the language's tiny filter from source text once (a compile, or a
hit from an earlier run), then times:
- ``hit``: ``wasmkit.build.build()`` of the unchanged source, in this process
  (median and max of 20 calls, ms);
- ``fresh``: the first such call in a new Python process (``wasmkit.build``
  already imported; toolchain versions come from the on-disk memo), ms.

Target: every hit <= 100 ms. Exit status 1 when one is over. Usage:
    python benchmarks/bench_build.py [--json] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from wasmkit.build import LANGUAGES, build
from wasmkit.build.languages import REQUIRED, toolchain
from wasmkit.errors import ToolchainNotFoundError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "filters" / "add_headers"
BUDGET_MS = 100.0

FRESH = """
import sys, time
from wasmkit.build import build
source, lang = sys.argv[1], sys.argv[2]
started = time.perf_counter()
artifact = build(source, lang)
elapsed = (time.perf_counter() - started) * 1000
assert artifact.cache_hit, "not a cache hit"
print(elapsed)
"""


def _fresh_ms(source: str, lang: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, source, lang],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(proc.stdout.strip())


def _measure(source: str, lang: str, runs: int) -> dict[str, float]:
    first = build(source, lang)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        artifact = build(source, lang)
        times.append((time.perf_counter() - started) * 1000)
        assert artifact.cache_hit
    return {
        "first_ms": first.build_ms,
        "hit_median_ms": statistics.median(times),
        "hit_max_ms": max(times),
        "fresh_ms": _fresh_ms(source, lang),
        "size": first.size,
    }


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per case")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for lang in LANGUAGES:
        if lang not in REQUIRED:
            continue
        tool = toolchain(lang)
        try:
            tool.versions()
        except ToolchainNotFoundError as exc:
            print(f"{lang}: skipped ({exc})", file=sys.stderr)
            continue
        results[f"{lang} folder"] = _measure(str(SAMPLE / lang), lang, args.runs)
        results[f"{lang} text"] = _measure(tool.tiny_filter, lang, args.runs)
    over = [
        case
        for case, r in results.items()
        if max(r["hit_max_ms"], r["fresh_ms"]) > BUDGET_MS
    ]
    if args.json:
        print(json.dumps({"budget_ms": BUDGET_MS, "results": results}, indent=2))
    else:
        print(f"{'case':<22}{'first':>10}{'hit med':>10}{'hit max':>10}{'fresh':>10}")
        for case, r in results.items():
            print(
                f"{case:<22}{r['first_ms']:>10.1f}{r['hit_median_ms']:>10.2f}"
                f"{r['hit_max_ms']:>10.2f}{r['fresh_ms']:>10.2f}"
            )
        print(f"(ms; budget for a hit: {BUDGET_MS:.0f} ms)")
    if over:
        print(f"over budget: {', '.join(over)}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
