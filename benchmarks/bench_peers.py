"""wasmkit beside other proxy-wasm hosts: the same module, the same lifecycle.

Every host is a long-running child process of this one, started once (its
start-up and compile are not measured) and told over a pipe "run N
lifecycles"; it answers with the process CPU time those N took. Rounds run
the hosts one after the other (A, B, C, D, A, B, C, D, ...), each batch about
``--batch`` seconds of CPU, and each round gives ratios of CPU time per
lifecycle; printed are the medians of those per-round ratios (with their
range), never one host's absolute time.

The module is the Go SDK sample build/samples/add_headers.go.wasm (Go's own
wasip1 build, scripts/build-samples.sh) configured to add ``x-bench: 1`` on
each side (it also logs one line per side). The lifecycle is bench_host.py's
request (11 headers) and response (11), as wasmkit's connection manager hands
them to the filter (13 and 12): context create, request headers, response
headers (both end of stream), log, done, delete. The hosts:

- wasmkit: ``Plugin.run_http``, fast call path on the native core, trace off
  (benchmarks/peers/wasmkit_peer.py), the same with the trace on, and the
  same on the pure-Python host (``WASMKIT_HOST=python``);
- proxytest: the Go SDK's proxytest in wasm mode (wazero), the same SDK
  version as the sample (benchmarks/peers/proxytest). Its emulator delivers
  on_done and on_delete of HTTP contexts to no module (four of the six
  callbacks reach wasm) and keeps every stream's state, so it gets a new VM
  (outside the timing) every ``FRESH_AFTER`` lifecycles;
- floor: a minimal C host on the wheel's libwasmtime (benchmarks/peers/floor),
  the same engine and module wasmkit runs, header maps and logs kept per
  stream.

proxy-wasm/test-framework is not published on crates.io, so it has no
column. Built by ``make peers`` (scripts/build-peers.sh). Usage:
    python benchmarks/bench_peers.py [--rounds 15] [--batch 0.2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench_host import lifecycle_messages

from wasmkit.host import load

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "build" / "peers"
MODULE = ROOT / "build" / "samples" / "add_headers.go.wasm"
CONFIG = '{"request": {"x-bench": "1"}, "response": {"x-bench": "1"}}'
FRESH_AFTER = 25_000
"""Lifecycles a proxytest VM runs before a new one (its maps only grow)."""
TIMEOUT_S = 120.0

TARGETS = [  # (ratio key, limit, what)
    ("wasmkit/proxytest", 0.5, "lifecycle <= 0.5x proxytest's (same Go module)"),
    ("wasmkit/floor", 5.0, "lifecycle <= 5x the native floor"),
    ("trace on/off", 1.3, "trace on <= 1.3x trace off"),
]
RATIOS = {  # ratio key: (numerator host, denominator host)
    "wasmkit/proxytest": ("wasmkit", "proxytest"),
    "wasmkit/floor": ("wasmkit", "floor"),
    "trace on/off": ("wasmkit trace on", "wasmkit"),
    "proxytest/floor": ("proxytest", "floor"),
    "native core/Python host": ("wasmkit", "wasmkit Python host"),
}


class PeerError(RuntimeError):
    """A peer host did not start or answer as agreed."""


@dataclass
class Peer:
    """One host in its child process."""

    name: str
    argv: list[str]
    fresh_after: int = 0
    """Lifecycles before a ``fresh`` (0: never)."""
    env: dict[str, str] | None = None
    """The child's environment (None: this one's)."""
    proc: subprocess.Popen[str] | None = None
    since_fresh: int = 0
    batch: int = 1
    samples: list[float] = field(default_factory=list)
    """CPU seconds per lifecycle, one per round."""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=self.env,
        )
        self._expect("ready")

    def _ask(self, command: str) -> str:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise PeerError(f"{self.name}: exited (status {self.proc.wait()})") from exc
        return self._line()

    def _line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise PeerError(f"{self.name}: exited (status {self.proc.wait()})")
        return line.rstrip("\n")

    def _expect(self, word: str) -> str:
        line = self._line()
        if not line.startswith(word):
            raise PeerError(f"{self.name}: expected {word!r}, got {line!r}")
        return line

    def run(self, n: int) -> float:
        """CPU seconds per lifecycle over ``n`` lifecycles."""
        if self.fresh_after and self.since_fresh + n > self.fresh_after:
            if self._ask("fresh") != "fresh":
                raise PeerError(f"{self.name}: no answer to fresh")
            self.since_fresh = 0
        self.since_fresh += n
        words = self._ask(f"run {n}").split()
        if len(words) != 3 or words[0] != "ran" or int(words[1]) != n:
            raise PeerError(f"{self.name}: bad answer {' '.join(words)!r}")
        return int(words[2]) / 1e9 / n

    def show(self) -> list[tuple[str, str, str]]:
        """One lifecycle's headers after the filter and its logs."""
        first = self._ask("show")
        rows = []
        line = first
        while line != "end":
            side, name, value = line.split("\t", 2)
            rows.append((side, name, value))
            line = self._line()
        self.since_fresh += 1
        return rows

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def write_spec(path: Path, module: Path) -> None:
    """The lifecycle file: the headers exactly as wasmkit's filter gets them."""
    plugin = load(module, config=CONFIG, fast=True, trace=False)
    result = plugin.run_http(*lifecycle_messages())
    lines = [f"wasm\t{module}", f"config\t{CONFIG}"]
    for side, message in (
        ("request", result.request_before),
        ("response", result.response_before),
    ):
        for name, value in message.headers:
            lines.append(f"{side}\t{name.decode('latin-1')}\t{value.decode('latin-1')}")
    path.write_text("\n".join(lines) + "\n")
    plugin.vm.close()


def make_peers(spec: Path, module: Path, peers_dir: Path) -> list[Peer]:
    """wasmkit (trace off and on), proxytest and the floor, not started."""
    worker = [sys.executable, str(ROOT / "benchmarks" / "peers" / "wasmkit_peer.py")]
    worker += [str(module), "--config", CONFIG]
    return [
        Peer("wasmkit", worker),
        Peer("wasmkit trace on", [*worker, "--trace"]),
        Peer("wasmkit Python host", [*worker, "--host", "python"]),
        Peer("proxytest", [str(peers_dir / "proxytest-peer"), str(spec)], FRESH_AFTER),
        Peer("floor", [str(peers_dir / "wasmtime-floor"), str(spec)]),
    ]


def check(peer: Peer) -> None:
    """The host really ran the module: the filter's header and logs are there."""
    rows = peer.show()
    for side in ("request", "response"):
        if (side, "x-bench", "1") not in rows:
            raise PeerError(f"{peer.name}: the filter's x-bench is not in the {side}")
    logs = [r for r in rows if r[0] == "log"]
    if len(logs) != 2:
        raise PeerError(f"{peer.name}: expected the filter's 2 log lines, got {logs}")


def calibrate(peer: Peer, seconds: float) -> None:
    """Size the peer's batch to about ``seconds`` of CPU (after a warm-up)."""
    n = 16
    while True:
        per = peer.run(n)
        if per * n >= seconds / 4 or n >= 1 << 22:
            break
        n *= 4
    peer.batch = max(1, int(seconds / max(per, 1e-9)))


def measure(peers: list[Peer], rounds: int, seconds: float) -> dict[str, list[float]]:
    """Per-round ratios of CPU time per lifecycle."""
    for peer in peers:
        check(peer)
        calibrate(peer, seconds)
    ratios: dict[str, list[float]] = {key: [] for key in RATIOS}
    by_name = {peer.name: peer for peer in peers}
    for _ in range(rounds):
        per = {peer.name: peer.run(peer.batch) for peer in peers}
        for key, (a, b) in RATIOS.items():
            if a in by_name and b in by_name:
                ratios[key].append(per[a] / per[b])
    return {key: values for key, values in ratios.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=float, default=0.2, help="CPU s per batch")
    parser.add_argument("--peers", type=Path, default=PEERS, help="the built peers")
    parser.add_argument("--module", type=Path, default=MODULE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    missing = [
        p
        for p in (args.peers / "proxytest-peer", args.peers / "wasmtime-floor")
        if not p.exists()
    ]
    if missing:
        sys.exit(f"bench_peers: {missing[0]} is missing: run `make peers`")
    if not args.module.exists():
        sys.exit(f"bench_peers: {args.module} is missing: run `make samples`")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "lifecycle.tsv"
        write_spec(spec, args.module)
        peers = make_peers(spec, args.module, args.peers)
        try:
            for peer in peers:
                peer.start()
            ratios = measure(peers, args.rounds, args.batch)
        except PeerError as exc:
            sys.exit(f"bench_peers: {exc}")
        finally:
            for peer in peers:
                peer.close()
    medians = {key: statistics.median(values) for key, values in ratios.items()}
    if args.json:
        print(json.dumps({"rounds": args.rounds, "medians": medians}, indent=1))
        return
    print(
        f"{args.module.name}, one lifecycle, CPU time, {args.rounds} interleaved "
        "rounds: median of per-round ratios (range)"
    )
    for key, values in ratios.items():
        print(
            f"  {key:<20} {medians[key]:7.2f}x  ({min(values):.2f}-{max(values):.2f})"
        )
    print("  proxy-wasm/test-framework: skipped (not published on crates.io)")
    for key, limit, what in TARGETS:
        verdict = "PASS" if medians[key] <= limit else "MISS"
        print(f"{verdict} {what}: {medians[key]:.2f}x")


if __name__ == "__main__":
    main()
