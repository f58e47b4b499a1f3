"""wasmkit as one of benchmarks/bench_peers.py's hosts, answering over stdin/stdout.

    python benchmarks/peers/wasmkit_peer.py WASM [--config TEXT] [--trace]
        [--host native|python]

One lifecycle is ``Plugin.run_http`` on bench_host.py's request and response
(the fast call path; the trace off unless ``--trace``): context create,
request headers, response headers, log, done, delete. The commands (``run
N``, ``fresh``, ``show``, ``quit``) are those of
benchmarks/peers/proxytest/main.go; ``run N`` answers ``ran N CPU_NS`` with
the process CPU time (``time.process_time_ns``) of the N lifecycles only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_host import lifecycle_messages

from wasmkit.host import HttpMessage, Plugin, load


def _show(side: str, message: HttpMessage | None) -> None:
    for name, value in message.headers if message is not None else []:
        print(f"{side}\t{name.decode('latin-1')}\t{value.decode('latin-1')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wasm")
    parser.add_argument("--config", default="")
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--host", default="native", choices=["native", "python"])
    args = parser.parse_args()

    def start() -> Plugin:
        return load(
            args.wasm, config=args.config, fast=True, trace=args.trace, host=args.host
        )

    plugin = start()
    req, resp = lifecycle_messages()
    print(
        "ready wasmkit"
        + (" (trace on)" if args.trace else "")
        + (" (Python host)" if args.host == "python" else ""),
        flush=True,
    )
    for line in sys.stdin:
        cmd = line.split()
        if len(cmd) == 2 and cmd[0] == "run":
            n = int(cmd[1])
            began = time.process_time_ns()
            for _ in range(n):
                plugin.run_http(req, resp)
            print(f"ran {n} {time.process_time_ns() - began}")
        elif cmd == ["fresh"]:
            plugin.vm.close()
            plugin = start()
            print("fresh")
        elif cmd == ["show"]:
            result = plugin.run_http(req, resp)
            _show("request", result.request_after)
            _show("response", result.response_after)
            for log in result.logs:
                print(f"log\t{log.level.name.lower()}\t{log.message}")
            print("end")
        elif cmd == ["quit"]:
            break
        else:
            sys.exit(f"wasmkit_peer: unknown command {line.strip()!r}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
