"""Issue 16's ratio targets that bench_peers.py does not measure, each in one run.

Every figure is a median of per-round ratios, the things compared measured
one after the other in each round (CPU time of the process that does the
work), never an absolute time:

- replay vs today: flows/s of bench_replay.py's replay (pre-loaded flows, one
  worker, the trace off) on this tree over the same on the tree of
  ``BASELINE`` (the commit the target was set against, taken with ``git
  archive``), each in its own child process (benchmarks/peers/replay_peer.py).
  Target >= 3x.
- body cost per KiB: the cost a body adds to a flow through a header filter
  that exports no body callback (bench_replay.py's), request and response
  bodies of the same size; (cost at 1 MiB - cost at 64 KiB) / 960 KiB over
  (cost at 64 KiB - cost with no body) / 64 KiB. Target <= 1.5x. An
  unchanged body is no longer copied, so the cost from 64 KiB to 1 MiB is
  about nil and the ratio scatters around 0; bench_body.py gives the µs per
  KiB themselves, with and without body callbacks, against a baseline tree.
- capture cold load: flows/s of ``load_capture(cache=False)`` over flows/s of
  mitmproxy's own ``FlowReader`` on the same .flow file (bench_capture.py's
  flows). Target >= 1.0x.

(trace on vs off is bench_peers.py's.) Usage:
    python benchmarks/bench_targets.py [--rounds 7] [--replay-flows 4000]
        [--capture-flows 4000] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_capture import make_flow
from bench_peers import Peer, PeerError
from bench_replay import HEADER_FILTER
from mitmproxy.io import FlowReader, FlowWriter

from wasmkit.host import load, request, response
from wasmkit.traffic import load_capture

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "587545f0d731c6dc476e6771d99098dfa0bbe0cc"
"""The tree whose replay speed "today's flows/s" means (issue 16 was filed on it)."""
REPLAY_FLOWS = 4000
CAPTURE_FLOWS = 4000
KIB = 1024


def cpu(fn: Callable[[], object], times: int = 1) -> float:
    """CPU seconds per call of ``fn`` over ``times`` calls."""
    began = time.process_time()
    for _ in range(times):
        fn()
    return (time.process_time() - began) / times


def baseline_tree(dest: Path) -> str | None:
    """Unpack BASELINE's wasmkit and bench_replay.py into ``dest``; None or why not."""
    paths = ["wasmkit", "benchmarks/bench_replay.py"]
    try:
        tar = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", BASELINE, *paths],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"git archive {BASELINE[:12]} failed ({exc}): a full clone has it"
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")
    return None


def replay_vs_today(rounds: int, tmp: Path, flows: int) -> list[float] | str:
    """Per-round speed-ups of this tree's replay over BASELINE's."""
    why = baseline_tree(tmp / "baseline")
    if why:
        return why
    worker = [sys.executable, str(ROOT / "benchmarks" / "peers" / "replay_peer.py")]
    now = Peer("this tree", [*worker, str(ROOT / "benchmarks"), str(flows)])
    then = Peer(
        f"baseline {BASELINE[:12]}",
        [*worker, str(tmp / "baseline" / "benchmarks"), str(flows)],
        env={**os.environ, "PYTHONPATH": str(tmp / "baseline")},
    )
    ratios = []
    try:
        now.start()
        then.start()
        for _ in range(rounds):
            ratios.append(then.run(flows) / now.run(flows))
    except PeerError as exc:
        return str(exc)
    finally:
        now.close()
        then.close()
    return ratios


def body_cost(rounds: int) -> list[float]:
    """Per-round ratios of the cost per KiB at 1 MiB to that at 64 KiB."""
    plugin = load(HEADER_FILTER, fast=True, trace=False)
    headers = [("user-agent", "bench"), ("content-type", "application/octet-stream")]

    def flow(size: int) -> Callable[[], object]:
        body = bytes(size)
        req = request("POST", "http://bench.example/upload", headers, body=body)
        resp = response(200, [("content-type", "application/octet-stream")], body)
        return lambda: plugin.run_http(req, resp)

    sizes = {0: flow(0), 64 * KIB: flow(64 * KIB), 1024 * KIB: flow(1024 * KIB)}
    times = {0: 2000, 64 * KIB: 1000, 1024 * KIB: 100}  # ~0.1-0.2 s each
    for size, fn in sizes.items():
        cpu(fn, max(1, times[size] // 10))  # warm-up
    ratios = []
    for _ in range(rounds):
        t = {size: cpu(fn, times[size]) for size, fn in sizes.items()}
        low = (t[64 * KIB] - t[0]) / 64
        high = (t[1024 * KIB] - t[64 * KIB]) / 960
        ratios.append(high / low)
    return ratios


def capture_cold(rounds: int, tmp: Path, flows: int) -> list[float]:
    """Per-round ratios of load_capture's cold flows/s to FlowReader's."""
    path = tmp / "bench.flow"
    with open(path, "wb") as fo:
        writer = FlowWriter(fo)  # type: ignore[no-untyped-call]
        for n in range(flows):
            writer.add(make_flow(n))

    def ours() -> int:
        return sum(1 for _ in load_capture(path, cache=False))

    def mitmproxy() -> int:
        with open(path, "rb") as fo:
            return sum(1 for _ in FlowReader(fo).stream())  # type: ignore[no-untyped-call]

    assert ours() == mitmproxy() == flows
    return [cpu(mitmproxy) / cpu(ours) for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--replay-flows", type=int, default=REPLAY_FLOWS)
    parser.add_argument("--capture-flows", type=int, default=CAPTURE_FLOWS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measured: dict[str, list[float] | str] = {
            "replay vs today": replay_vs_today(
                args.rounds, Path(tmp), args.replay_flows
            ),
            "body cost per KiB, 1 MiB vs 64 KiB": body_cost(args.rounds),
            "capture cold load vs FlowReader": capture_cold(
                args.rounds, Path(tmp), args.capture_flows
            ),
        }
    medians = {
        key: statistics.median(v) for key, v in measured.items() if isinstance(v, list)
    }
    if args.json:
        print(json.dumps({"rounds": args.rounds, "medians": medians}, indent=1))
        return
    print(f"{args.rounds} interleaved rounds: median of per-round ratios (range)")
    targets = [  # key, passes, what
        (
            "replay vs today",
            lambda r: r >= 3.0,
            f"replay of pre-loaded flows >= 3x {BASELINE[:7]}'s flows/s, one core",
        ),
        (
            "body cost per KiB, 1 MiB vs 64 KiB",
            lambda r: r <= 1.5,
            "body cost per KiB at 1 MiB <= 1.5x that at 64 KiB",
        ),
        (
            "capture cold load vs FlowReader",
            lambda r: r >= 1.0,
            "capture cold load >= 1.0x mitmproxy's FlowReader",
        ),
    ]
    for key, passes, what in targets:
        value = measured[key]
        if isinstance(value, str):
            print(f"SKIP {key}: {value}")
            continue
        m = medians[key]
        print(f"  {key:<36} {m:6.2f}x  ({min(value):.2f}-{max(value):.2f})")
        print(f"{'PASS' if passes(m) else 'MISS'} {what}: {m:.2f}x")


if __name__ == "__main__":
    main()
