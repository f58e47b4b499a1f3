"""A replay of pre-loaded flows, as a child of benchmarks/bench_targets.py.

    python benchmarks/peers/replay_peer.py BENCH_DIR FLOWS

Imports ``bench_replay`` (its synthetic flows and header filter) from
BENCH_DIR and ``wasmkit`` from wherever the path puts it first
(bench_targets.py runs one of these on today's tree and one on a baseline
tree, through PYTHONPATH), builds FLOWS exchanges once (pre-loaded), warms
up, then answers ``run N`` (N <= FLOWS) with ``ran N CPU_NS``: the process
CPU time of one replay of the first N with ``replay_parallel(workers=1)``
(in this process, one VM, the trace off, every result kept). ``quit``
exits.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    bench_dir, flows = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, bench_dir)
    import bench_replay

    from wasmkit.replay.engine import ReplayOptions
    from wasmkit.replay.parallel import replay_parallel

    def once(batch: list[object]) -> None:
        result = replay_parallel(
            bench_replay.HEADER_FILTER,
            batch,
            workers=1,
            options=ReplayOptions(),
            trace=False,
        )
        if len(result) != len(batch) or result.failed:
            sys.exit(f"replay_peer: the replay of {len(batch)} flows failed")

    exchanges = bench_replay.make_exchanges(flows)
    once(exchanges[:500])  # imports, compile caches
    print("ready replay", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if len(cmd) == 2 and cmd[0] == "run" and 0 < int(cmd[1]) <= flows:
            n = int(cmd[1])
            batch = exchanges[:n]
            began = time.process_time_ns()
            once(batch)
            print(f"ran {n} {time.process_time_ns() - began}", flush=True)
        elif cmd == ["quit"]:
            break
        else:
            sys.exit(f"replay_peer: unknown command {line.strip()!r}")


if __name__ == "__main__":
    main()
