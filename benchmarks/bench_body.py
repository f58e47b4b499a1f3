"""Body cost per KiB, this tree beside a baseline tree, interleaved rounds.

Each tree runs in its own long-lived child (benchmarks/peers/body_peer.py,
``wasmkit`` from the tree through PYTHONPATH), started once. A flow is
``Plugin.run_http`` (fast call path, trace off, Envoy's connection manager
and HTTP/1 codec framing: the body in one frame, then the codec's empty end
frame) whose request and response each carry a body of the same size,
through one of three filters (each adds a header per side):

- ``headers``: exports no body callback;
- ``continue``: body callbacks that return Continue;
- ``read``: body callbacks that hold the body to its end, then read it whole
  into guest memory.

For each filter and size (4 KiB, 64 KiB, 1 MiB) the cost a body adds to a
flow, per KiB of body size, is (CPU time of a flow with bodies - CPU time of
the same flow without) / size in KiB, in µs: measured for both trees in each
round (the trees one after the other, their order swapped every round, each
batch about ``--batch`` seconds of process CPU time). Printed are medians
over rounds, and the median of the per-round ratios of this tree's cost to
the baseline's; also issue 16's target ratio, cost per KiB from 64 KiB to
1 MiB over cost per KiB up to 64 KiB (``headers``; bench_targets.py's).

A cost near zero makes its ratio noise: the µs per KiB are the figure then.
Usage:
    python benchmarks/bench_body.py [--baseline TREE | --commit REV]
        [--rounds 15] [--batch 0.1] [--json]

``--baseline`` names a tree with a ``wasmkit`` package (a ``git worktree``);
``--commit`` unpacks that commit's ``wasmkit`` with ``git archive``; with
neither, only this tree is measured.
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
from pathlib import Path
from typing import Any

from bench_peers import Peer, PeerError

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "benchmarks" / "peers" / "body_peer.py"
KIB = 1024
SIZES = (4 * KIB, 64 * KIB, 1024 * KIB)
FILTERS = ("headers", "continue", "read")


class BodyPeer(Peer):
    """One tree's host in its child process (body_peer.py's protocol)."""

    def flow_s(self, name: str, size: int, n: int) -> float:
        """CPU seconds per flow over ``n`` flows of filter ``name``, ``size`` bytes."""
        words = self._ask(f"run {name} {size} {n}").split()
        if len(words) != 3 or words[0] != "ran" or int(words[1]) != n:
            raise PeerError(f"{self.name}: bad answer {' '.join(words)!r}")
        return int(words[2]) / 1e9 / n

    def batch_for(self, name: str, size: int, seconds: float) -> int:
        """Flows that take about ``seconds`` of CPU time."""
        n = 1
        while True:
            took = self.flow_s(name, size, n) * n
            if took >= seconds / 4 or n >= 1 << 16:
                return max(1, round(n * seconds / max(took, 1e-9)))
            n *= 4


def unpack(commit: str, dest: Path) -> None:
    """``commit``'s wasmkit package into ``dest`` (git archive)."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "wasmkit"],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")


def start(name: str, tree: Path | None) -> BodyPeer:
    env = None
    if tree is not None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
    peer = BodyPeer(name, [sys.executable, str(WORKER)], env=env)
    peer.start()
    return peer


def measure(peers: list[BodyPeer], rounds: int, batch: float) -> dict[str, Any]:
    """Per round, per peer, per filter: µs per flow at 0 and each size."""
    cases = [(f, s) for f in FILTERS for s in (0, *SIZES)]
    batches = {
        (p.name, f, s): p.batch_for(f, s, batch) for p in peers for f, s in cases
    }
    samples: dict[str, dict[str, dict[int, list[float]]]] = {
        p.name: {f: {s: [] for s in (0, *SIZES)} for f in FILTERS} for p in peers
    }
    for r in range(rounds):
        order = peers if r % 2 == 0 else peers[::-1]
        for f, s in cases:
            for p in order:
                n = batches[(p.name, f, s)]
                samples[p.name][f][s].append(p.flow_s(f, s, n) * 1e6)
    return samples


def per_kib(flows: dict[int, list[float]], size: int, start: int = 0) -> list[float]:
    """Per-round µs per KiB that growing the bodies from ``start`` to ``size`` adds."""
    return [
        (t - t0) / ((size - start) / KIB)
        for t, t0 in zip(flows[size], flows[start], strict=True)
    ]


def target(flows: dict[int, list[float]]) -> list[float]:
    """Per-round cost per KiB from 64 KiB to 1 MiB over that up to 64 KiB."""
    big, mid = 1024 * KIB, 64 * KIB
    return [
        ((t1 - t64) / 960) / ((t64 - t0) / 64)
        for t1, t64, t0 in zip(flows[big], flows[mid], flows[0], strict=True)
    ]


def report(samples: dict[str, Any], now: str, then: str | None) -> dict[str, Any]:
    med = statistics.median
    rows = []
    for f in FILTERS:
        for size, below in zip(SIZES, (0, *SIZES), strict=False):
            mine = per_kib(samples[now][f], size)
            row: dict[str, Any] = {
                "filter": f,
                "size_kib": size // KIB,
                "us_per_flow": med(samples[now][f][size]),
                "us_per_kib": med(mine),
                "marginal_us_per_kib": med(per_kib(samples[now][f], size, below)),
            }
            if then is not None:
                theirs = per_kib(samples[then][f], size)
                ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
                row["baseline_us_per_flow"] = med(samples[then][f][size])
                row["baseline_us_per_kib"] = med(theirs)
                row["baseline_marginal_us_per_kib"] = med(
                    per_kib(samples[then][f], size, below)
                )
                row["ratio"] = med(ratios)
                flow_ratios = [
                    a / b
                    for a, b in zip(
                        samples[now][f][size], samples[then][f][size], strict=True
                    )
                ]
                row["flow_ratio"] = med(flow_ratios)
            rows.append(row)
    out: dict[str, Any] = {"rows": rows, "no_body_us": {}}
    if then is not None:
        out["no_body_ratio"] = {
            f: med(
                [
                    a / b
                    for a, b in zip(
                        samples[now][f][0], samples[then][f][0], strict=True
                    )
                ]
            )
            for f in FILTERS
        }
    for name in samples:
        out["no_body_us"][name] = {f: med(samples[name][f][0]) for f in FILTERS}
        out.setdefault("target_1mib_over_64kib", {})[name] = med(
            target(samples[name]["headers"])
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="the tree to measure (this one)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--baseline", type=Path, help="a tree with a wasmkit package")
    which.add_argument("--commit", help="a commit whose wasmkit to compare against")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=float, default=0.1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    now = "this tree" if args.tree == ROOT else f"tree {args.tree}"
    then: str | None = None
    with tempfile.TemporaryDirectory() as tmp:
        tree: Path | None = args.baseline
        if args.commit:
            tree = Path(tmp) / "baseline"
            unpack(args.commit, tree)
            then = f"baseline {args.commit}"
        elif tree is not None:
            then = f"baseline {tree}"
        peers = [start(now, args.tree)]
        try:
            if then is not None:
                peers.append(start(then, tree))
            samples = measure(peers, args.rounds, args.batch)
        finally:
            for p in peers:
                p.close()
    out = report(samples, now, then)
    out["rounds"] = args.rounds
    out["baseline"] = then
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(
        f"{args.rounds} interleaved rounds, CPU time, medians. µs/KiB: what the "
        "bodies add to a flow per KiB of body size (request and response bodies "
        "of that size) over no body; marginal: over the size above. Ratios: "
        f"{now} / {then}, medians of per-round ratios."
    )
    head = f"{'filter':<9} {'size':>8} {'µs/flow':>9} {'µs/KiB':>8} {'marginal':>8}"
    if then is not None:
        head += (
            f" | {'baseline µs/flow':>16} {'µs/KiB':>8} {'marginal':>8}"
            f" | {'flow':>7} {'µs/KiB':>7}"
        )
    print(head)
    for row in out["rows"]:
        line = (
            f"{row['filter']:<9} {row['size_kib']:>4} KiB {row['us_per_flow']:9.1f}"
            f" {row['us_per_kib']:8.3f} {row['marginal_us_per_kib']:8.3f}"
        )
        if then is not None:
            line += (
                f" | {row['baseline_us_per_flow']:16.1f}"
                f" {row['baseline_us_per_kib']:8.3f}"
                f" {row['baseline_marginal_us_per_kib']:8.3f}"
                f" | {row['flow_ratio']:6.3f}x {row['ratio']:6.3f}x"
            )
        print(line)
    for name, by_filter in out["no_body_us"].items():
        shown = ", ".join(f"{f} {v:.1f}" for f, v in by_filter.items())
        print(f"no body, µs/flow ({name}): {shown}")
    if then is not None:
        shown = ", ".join(f"{f} {v:.3f}x" for f, v in out["no_body_ratio"].items())
        print(f"no body, flow ratio: {shown}")
    for name, ratio in out["target_1mib_over_64kib"].items():
        print(
            f"cost per KiB 64 KiB-1 MiB over 0-64 KiB, headers ({name}): {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
