"""``wasmkit compare A B CAPTURE...``: two filters over one capture, flow by flow.

The options are replay's (configuration, root id, callouts, capture
selection, workers, VM and build flags), plus ``--config-a`` / ``--config-b``
for two configurations of one filter. It prints the differing flows as a
table (``#``, method, path, each side's status and action, the fields that
differ) and one line of counts, or with ``--json`` the comparison as JSON
(:meth:`wasmkit.replay.compare.Comparison.to_json`). The sides are named by
the file names given (``a`` and ``b`` when they are alike). Exit status: 0
when no flow differs, 1 when some do or on a bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from wasmkit import options


def add_parser(sub: Any) -> None:
    """Add the ``compare`` subcommand to ``sub``."""
    from wasmkit import cli

    cmd = sub.add_parser(
        "compare",
        help="compare two filters (or two configurations) over a capture",
        description="Replay the same captures through two filters, or one filter "
        "with two configurations, and show the flows whose outputs differ and "
        "in which fields. Exit status 0 when none differ, 1 when some do.",
    )
    cmd.add_argument("a", help="filter a: a .wasm or .wat file, or a source folder")
    cmd.add_argument("b", help="filter b (the same as a for two configurations)")
    cmd.add_argument("captures", nargs="+", help=".flow or .har files")
    cli._add_replay_options(cmd)
    cmd.add_argument("--config-a", help="a's plugin configuration (default --config)")
    cmd.add_argument("--config-b", help="b's plugin configuration (default --config)")
    cmd.add_argument(
        "--json", action="store_true", help="print the comparison as one JSON object"
    )
    options.add_vm_arguments(cmd)
    options.add_build_arguments(cmd)


def _name(arg: str) -> str:
    return os.path.basename(os.path.normpath(arg)) or arg


def run(args: argparse.Namespace) -> int:
    """Run ``wasmkit compare``; returns the exit status."""
    from wasmkit import cli
    from wasmkit._cli_inputs import one_line
    from wasmkit.errors import WasmkitError
    from wasmkit.replay.compare import Comparison, compare

    vm_options = cli._vm_options(args)
    paths = []
    for arg in (args.a, args.b):
        path = cli._built_filter(arg, args)
        if path is None:
            return 1
        paths.append(path)
    responder = cli._responder(args)
    for path in dict.fromkeys(paths):
        cli._warn_root_id(args, path)
    sides: dict[str, Any] = {}
    for flag, value in (("config_a", args.config_a), ("config_b", args.config_b)):
        if value is not None:
            sides[flag] = cli._text_or_file(value)
    try:
        comparison = compare(
            paths[0],
            paths[1],
            args.captures,
            names=(_name(args.a), _name(args.b)),
            progress=True,  # as replay: a line on a terminal when slow
            **sides,
            **cli._replay_kwargs(args, responder),
            **vm_options,
        )
    except (WasmkitError, ValueError) as exc:
        print(f"wasmkit compare: {one_line(str(exc))}", file=sys.stderr)
        return 1
    assert isinstance(comparison, Comparison)
    if args.json:
        print(json.dumps(comparison.to_json(), indent=1))
    else:
        print(comparison.text())
    results = (comparison.a, comparison.b)
    for side, result in zip(comparison.names, results, strict=True):
        if result.capture_error:
            print(
                f"wasmkit compare: {side}: capture broke: {result.capture_error}",
                file=sys.stderr,
            )
    return 1 if comparison.differing else 0
