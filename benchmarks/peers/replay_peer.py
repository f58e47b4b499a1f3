"""A replay of pre-loaded flows, as a child of benchmarks/bench_targets.py.

    python benchmarks/peers/replay_peer.py BENCH_DIR FLOWS

Imports ``bench_replay`` from BENCH_DIR and ``wasmkit`` from wherever the
path puts it first (bench_targets.py runs one of these on today's tree and
one on a baseline tree, through PYTHONPATH), builds FLOWS exchanges once,
warms up, then answers ``run N`` (N <= FLOWS) with ``ran N CPU_NS``: the
process CPU time of one replay of the first N (one worker, in this process,
the trace off, every result kept), as ``bench_replay.once`` runs it.
``quit`` exits.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    bench_dir, flows = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, bench_dir)
    import bench_replay

    exchanges = bench_replay.make_exchanges(flows)
    bench_replay.once(exchanges[:500], 1, new=False)  # imports, compile caches
    print("ready replay", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if len(cmd) == 2 and cmd[0] == "run" and 0 < int(cmd[1]) <= flows:
            n = int(cmd[1])
            batch = exchanges[:n]
            began = time.process_time_ns()
            bench_replay.once(batch, 1, new=False)
            print(f"ran {n} {time.process_time_ns() - began}", flush=True)
        elif cmd == ["quit"]:
            break
        else:
            sys.exit(f"replay_peer: unknown command {line.strip()!r}")


if __name__ == "__main__":
    main()
