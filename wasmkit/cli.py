"""The ``wasmkit`` command line: run, build, inspect, doctor, replay, compare, demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from wasmkit import __version__, _cli_compare, compat, options
from wasmkit._cli_inputs import filter_problem, one_line, os_reason, root_id_warning
from wasmkit.build import LANGUAGES, build, doctor
from wasmkit.errors import (
    BuildError,
    CompileError,
    FilterError,
    FilterTrapError,
    WasmkitError,
)
from wasmkit.host import message
from wasmkit.host.callouts import load_responder
from wasmkit.host.plugin import load
from wasmkit.host.record import error_json, render_text, to_record
from wasmkit.replay.results import BALANCE_MODES, KEEP_MODES, FlowResult

SAMPLES = Path(__file__).resolve().parent.parent / "build" / "samples"


def _text_or_file(value: str | None) -> bytes:
    """``TEXT`` as UTF-8, or the contents of ``@FILE``."""
    try:
        return options.text_or_file(value)
    except ValueError as exc:
        raise SystemExit(f"wasmkit: {exc}") from exc


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(
            f"header must look like 'name: value', not {text!r}"
        )
    return name.strip(), value.strip()


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run one HTTP exchange through a filter",
        description="Run one HTTP exchange through a proxy-wasm filter and show what "
        "it changed.",
    )
    run.add_argument(
        "filter",
        help="the filter: a .wasm or .wat file, or a source folder or .rs/.go/.ts "
        "file (built first)",
    )
    run.add_argument("--config", help="plugin configuration: TEXT or @FILE")
    run.add_argument("--root-id", default="", help="the plugin's root id")
    run.add_argument("--method", default="GET", help="request method (default GET)")
    run.add_argument("--url", default="http://example.com/", help="request URL")
    run.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        default=[],
        help="request header 'name: value' (repeatable)",
    )
    run.add_argument("--body", help="request body: TEXT or @FILE")
    run.add_argument(
        "--status", type=int, default=200, help="upstream status (default 200)"
    )
    run.add_argument(
        "--response-header",
        action="append",
        type=_header,
        default=[],
        help="upstream response header 'name: value' (repeatable)",
    )
    run.add_argument("--response-body", help="upstream response body: TEXT or @FILE")
    run.add_argument(
        "--callouts",
        help="answers to HTTP callouts: a JSON table keyed by cluster (or "
        "'cluster path', 'cluster authority path'), or a Python file defining "
        "responder(callout)",
    )
    run.add_argument(
        "--chunk-size", type=int, help="deliver bodies in chunks of N bytes"
    )
    run.add_argument(
        "--fail-open", action="store_true", help="let traffic through on failure"
    )
    run.add_argument("--json", action="store_true", help="print one JSON record")
    run.add_argument(
        "--trace", action="store_true", help="print the trace (text output)"
    )
    options.add_vm_arguments(run)
    options.add_build_arguments(run)


def _vm_options(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return options.vm_options(args)
    except ValueError as exc:
        raise SystemExit(f"wasmkit {args.command}: {exc}") from exc


def _run(args: argparse.Namespace) -> int:
    vm_options = _vm_options(args)
    filter_path = _built_filter(args.filter, args)
    if filter_path is None:
        return 1
    try:
        req = message.request(
            args.method, args.url, args.header, _text_or_file(args.body)
        )
    except ValueError as exc:
        raise SystemExit(f"wasmkit: {exc}") from exc
    upstream = message.response(
        args.status, args.response_header, _text_or_file(args.response_body)
    )
    responder = _responder(args)
    _warn_root_id(args, filter_path)
    try:
        plugin = load(
            filter_path,
            responder=responder,
            config=_text_or_file(args.config),
            root_id=args.root_id,
            fail_open=args.fail_open,
            progress=True,
            **vm_options,
        )
    except FilterError as exc:
        return _failed_load(args, exc)
    result = plugin.run_http(req, upstream, chunk_size=args.chunk_size)
    if args.json:
        print(json.dumps(to_record(result), indent=2))
    else:
        print(render_text(result, title=f"filter    {args.filter}"))
        if args.trace:
            for event in result.trace:
                indent = "  " * event.depth
                shown = ", ".join(f"{k}={v!r}" for k, v in event.args.items())
                print(f"  {indent}{event.name}({shown}) -> {event.result}")
    plugin.vm.close()
    return 1 if result.error is not None else 0


def _responder(args: argparse.Namespace) -> Any:
    """The ``--callouts`` responder, or ``None``; a bad one ends the command."""
    if not args.callouts:
        return None
    try:
        return load_responder(args.callouts)
    except OSError as exc:
        raise SystemExit(
            f"wasmkit {args.command}: --callouts: cannot read "
            f"{exc.filename or args.callouts}: {os_reason(exc)}"
        ) from exc
    except ValueError as exc:
        raise SystemExit(
            f"wasmkit {args.command}: --callouts {args.callouts}: {one_line(str(exc))}"
        ) from exc


def _warn_root_id(args: argparse.Namespace, path: str) -> None:
    warning = root_id_warning(path, args.root_id)
    if warning is not None:
        print(f"wasmkit {args.command}: {warning}", file=sys.stderr)


def _failed_load(args: argparse.Namespace, exc: FilterError) -> int:
    callback = exc.callback if isinstance(exc, FilterTrapError) else "load"
    if args.json:
        record: dict[str, Any] = {
            "request": None,
            "response": None,
            "local_reply": None,
            "logs": [],
            "trace": [],
            "error": error_json(exc, callback),
        }
        print(json.dumps(record, indent=2))
    else:
        print(
            f"wasmkit {args.command}: cannot load {args.filter} [{exc.kind}]: "
            f"{one_line(str(exc))}",
            file=sys.stderr,
        )
    return 1


DEMO_CONFIG = (
    b'{"request": {"x-wasmkit-demo": "request"},'
    b' "response": {"x-wasmkit-demo": "response"}}'
)


def _demo(args: argparse.Namespace) -> int:
    samples = sorted(Path(args.samples).glob("add_headers.*.wasm"))
    if not samples:
        print(
            f"wasmkit demo: no sample filters in {args.samples}; run `make demo` "
            "to build them",
            file=sys.stderr,
        )
        return 1
    status = 0
    for path in samples:
        lang = path.name.split(".")[1]
        try:
            plugin = load(path, config=DEMO_CONFIG, root_id="add_headers")
        except WasmkitError as exc:
            print(f"{path.name}: {exc}", file=sys.stderr)
            status = 1
            continue
        result = plugin.run_http(
            message.request(
                "GET",
                "http://api.example.com/v1/items?id=7",
                [("accept", "application/json")],
            ),
            message.response(
                200,
                [("content-type", "application/json")],
                '{"id": 7, "name": "widget"}',
            ),
        )
        print(
            render_text(result, title=f"== add_headers sample in {lang} ({path.name})")
        )
        print()
        plugin.vm.close()
        status |= 1 if result.error is not None else 0
    return status | _demo_replay(Path(args.samples))


CAPTURES = Path(__file__).resolve().parent.parent / "samples" / "captures"
JSON_REWRITE_CONFIG = b'{"set": {"filtered_by": "wasmkit"}, "remove": ["updated_at"]}'


def _demo_replay(samples: Path) -> int:
    from wasmkit.replay.report import render_summary
    from wasmkit.replay.run import replay

    capture = CAPTURES / "api.flow"
    status = 0
    for name, config in (("json_rewrite", JSON_REWRITE_CONFIG),):
        for path in sorted(samples.glob(f"{name}.*.wasm")):
            print(f"== replaying {capture.name} through {path.name}")
            try:
                result = replay(path, capture, config=config, root_id=name)
            except WasmkitError as exc:
                print(f"{path.name}: {exc}", file=sys.stderr)
                status = 1
                continue
            print(render_summary(result))
            for row in result.body_rows()[:3]:
                print(f"  flow {row['flow']} {row['side']} body ({row['kind']}):")
                print("    " + row["diff"].replace("\n", "\n    "))
            print()
            status |= 1 if result.failed else 0
    return status


_SOURCE_SUFFIXES = (".rs", ".go", ".ts")


def _built_filter(
    arg: str, args: argparse.Namespace | None = None, *, command: str = ""
) -> str | None:
    """``arg`` itself for a .wasm/.wat file; a source folder or file is built first.

    ``args`` carries the build flags (``--tags`` ...) and the command's name
    (else ``command``). Returns ``None`` (after saying why on stderr, in one
    line) when ``arg`` is no filter or the build fails.
    """
    command = "wasmkit " + (args.command if args is not None else command)
    problem = filter_problem(arg)
    if problem is not None:
        print(f"{command}: {problem}", file=sys.stderr)
        return None
    path = Path(arg)
    if not (path.is_dir() or path.suffix in _SOURCE_SUFFIXES):
        return arg
    wanted = options.build_options(args) if args is not None else {}
    try:
        artifact = build(path, **wanted)
    except (BuildError, ValueError, OSError) as exc:
        if isinstance(exc, CompileError):
            print(exc.stderr.rstrip(), file=sys.stderr)  # the compiler's own words
        why = _flag_words(one_line(str(exc)), "")  # no --lang here
        print(f"{command}: cannot build {arg}: {why}", file=sys.stderr)
        return None
    print(f"wasmkit: {arg} -> {artifact.summary()}", file=sys.stderr)
    return str(artifact.path)


def _flag_words(message: str, lang_flag: str) -> str:
    # The library's "pass lang=" is a flag here (or nothing to pass).
    hint = f"pass {lang_flag}" if lang_flag else ""
    message = message.replace(" (or pass lang=)", f" (or {hint})" if hint else "")
    return message.replace("or pass lang=", f"or {hint}" if hint else "").rstrip(", ")


def _add_build(sub: Any) -> None:
    cmd = sub.add_parser(
        "build",
        help="build a filter from source",
        description="Build a proxy-wasm filter with the kit's pinned compilers "
        "(offline once set up). An unchanged rebuild comes from the build cache. "
        "Prints the module's path.",
    )
    cmd.add_argument(
        "source",
        help="a project folder (Cargo.toml, go.mod, assembly/index.ts) or a "
        ".rs/.go/.ts file",
    )
    cmd.add_argument(
        "--lang",
        help=f"the language ({', '.join(LANGUAGES)}); detected when not given",
    )
    cmd.add_argument("-o", "--output", metavar="OUT.wasm", help="also write it here")
    cmd.add_argument("--force", action="store_true", help="rebuild even if cached")
    cmd.add_argument("--debug", action="store_true", help="build without optimizations")
    cmd.add_argument("--root-id", help="root id (names a generated project)")
    cmd.add_argument("--json", action="store_true", help="print one JSON record")
    options.add_build_arguments(cmd)


def _build(args: argparse.Namespace) -> int:
    from wasmkit.traffic import _atomic

    if not os.path.lexists(args.source):
        raise SystemExit(f"wasmkit build: {args.source}: no such file or folder")
    if args.output:
        try:
            _atomic.check_writable(args.output)
        except OSError as exc:
            raise SystemExit(
                f"wasmkit build: -o: cannot write {args.output}: {os_reason(exc)}"
            ) from exc
    try:
        artifact = build(
            args.source,
            args.lang,
            root_id=args.root_id,
            optimize=not args.debug,
            force=args.force,
            **options.build_options(args),
        )
    except (ValueError, OSError) as exc:
        raise SystemExit(f"wasmkit build: {_flag_words(str(exc), '--lang')}") from exc
    except BuildError as exc:
        if args.json:
            print(json.dumps({"error": _build_error_json(exc)}, indent=2))
        else:
            if isinstance(exc, CompileError):
                print(exc.stderr.rstrip(), file=sys.stderr)
            print(f"wasmkit build: {exc}", file=sys.stderr)
        return 1
    try:
        path = artifact.save(args.output) if args.output else artifact.path
    except OSError as exc:
        raise SystemExit(
            f"wasmkit build: -o: cannot write {args.output}: {os_reason(exc)}"
        ) from exc
    if args.json:
        print(json.dumps({**artifact.to_json(), "output": str(path)}, indent=2))
    else:
        for warning in artifact.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(artifact.summary(), file=sys.stderr)
        print(path)
    return 0


def _build_error_json(exc: BuildError) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, CompileError):
        record.update(
            command=exc.command,
            returncode=exc.returncode,
            diagnostics=[list(d) for d in exc.diagnostics],
            stderr=exc.stderr,
        )
    return record


def _add_doctor(sub: Any) -> None:
    cmd = sub.add_parser(
        "doctor",
        help="check the compilers",
        description="Show each toolchain, its version and whether it works (by "
        "building a tiny filter), and how to install what is missing. The exit "
        "status is non-zero when a required toolchain is missing or broken.",
    )
    cmd.add_argument(
        "--lang", action="append", help="check only this language (repeatable)"
    )
    cmd.add_argument("--no-build", action="store_true", help="only look for the tools")
    cmd.add_argument("--json", action="store_true", help="print one JSON record")


def _doctor(args: argparse.Namespace) -> int:
    try:
        report = doctor(args.lang, build_filters=not args.no_build)
    except ValueError as exc:
        raise SystemExit(f"wasmkit doctor: {exc}") from exc
    print(json.dumps(report.to_json(), indent=2) if args.json else str(report))
    return 0 if report.ok else 1


# cpp-host also registers these two non-spec env functions (src/wasm.cc), but
# not AssemblyScript's env.abort.
def _add_inspect(sub: Any) -> None:
    cmd = sub.add_parser(
        "inspect",
        help="show a filter's ABI, exports and imports",
        description="Show a filter's ABI version, allocator, start function, "
        "exports and imports, and for each import whether the wasmkit host and "
        "Envoy provide it.",
    )
    cmd.add_argument(
        "filter",
        help="a .wasm or .wat file, or a source folder or .rs/.go/.ts file (built "
        "first)",
    )
    cmd.add_argument("--json", action="store_true", help="print one JSON record")


def _inspect(args: argparse.Namespace) -> int:
    path = _built_filter(args.filter, command="inspect")
    if path is None:
        return 1
    try:
        record = compat.inspect_filter(path)
    except FilterError as exc:
        print(f"wasmkit inspect: {one_line(str(exc))}", file=sys.stderr)
        return 1
    record["filter"] = args.filter
    print(json.dumps(record, indent=2) if args.json else compat.render(record))
    return 0


def _add_replay_options(cmd: Any) -> None:
    """The options ``replay`` and ``compare`` share (VM and build flags aside)."""
    cmd.add_argument("--config", help="plugin configuration: TEXT or @FILE")
    cmd.add_argument("--root-id", default="", help="the plugin's root id")
    cmd.add_argument("--callouts", help="answers to HTTP callouts (as for run)")
    cmd.add_argument("--limit", type=int, help="replay at most N exchanges")
    cmd.add_argument("--filter", dest="filter_expr", help="mitmproxy filter expression")
    cmd.add_argument(
        "--chunk-size", type=int, help="deliver bodies in chunks of N bytes"
    )
    cmd.add_argument("--decoded", action="store_true", help="decode bodies first")
    cmd.add_argument("--fail-open", action="store_true", help="pass traffic on failure")
    cmd.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="replay on a local Dask cluster of N worker processes, the "
        "capture cut into partitions (VM state does not carry across them)",
    )
    cmd.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="replay on an existing Dask cluster (tcp://host:8786; default "
        "$WASMKIT_DASK_SCHEDULER with --workers); the captures must be where "
        "every worker reads them by the same path",
    )
    cmd.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="with --workers or --scheduler: cut the capture into N partitions "
        "(default: one per worker thread, more for large captures)",
    )
    # Before Dask: how the home-made pool cut the capture (partitions are
    # even flow ranges now); still accepted.
    cmd.add_argument(
        "--balance", choices=BALANCE_MODES, default=None, help=argparse.SUPPRESS
    )


def _replay_kwargs(args: argparse.Namespace, responder: Any) -> dict[str, Any]:
    """What :func:`_add_replay_options` asked for, as ``replay()`` takes it."""
    return {
        "config": _text_or_file(args.config),
        "root_id": args.root_id,
        "fail_open": args.fail_open,
        "decoded": args.decoded,
        "limit": args.limit,
        "filter_expr": args.filter_expr,
        "chunk_size": args.chunk_size,
        "responder": responder,
        "workers": args.workers,
        **({"scheduler": args.scheduler} if args.scheduler else {}),
        **({"partitions": args.partitions} if args.partitions is not None else {}),
    }


def _add_replay(sub: Any) -> None:
    cmd = sub.add_parser(
        "replay",
        help="replay captured traffic through a filter",
        description="Replay mitmproxy .flow or HAR captures through a filter and "
        "show what it changed, flow by flow.",
    )
    cmd.add_argument("filter", help="a .wasm or .wat file, or a source folder/file")
    cmd.add_argument("captures", nargs="+", help=".flow or .har files")
    _add_replay_options(cmd)
    cmd.add_argument(
        "--json", metavar="OUT", help="write the records as JSON (- for stdout)"
    )
    cmd.add_argument(
        "--out", metavar="FLOW", help="write the traffic after the filter as .flow"
    )
    cmd.add_argument(
        "--har", metavar="HAR", help="write the traffic after the filter as HAR"
    )
    cmd.add_argument("--html", metavar="HTML", help="write a static HTML report")
    cmd.add_argument(
        "--keep",
        choices=KEEP_MODES,
        default="all",
        help="flows kept in full: all; changed (changed or failed ones) or "
        "summary (failed ones), at most --max-kept, while every flow is "
        "counted: memory stays flat for captures of millions of flows",
    )
    cmd.add_argument(
        "--max-kept", type=int, metavar="N", help="keep at most N flows in full"
    )
    cmd.add_argument(
        "--records-to",
        metavar="DIR",
        help="write every flow's record and summary row to DIR as the flows "
        "replay, one pair of JSON-lines files per partition, named by "
        "DIR/manifest.json (a folder, or an fsspec URL every worker can write): "
        "with --keep changed or summary the records never come back whole",
    )
    cmd.add_argument(
        "--against-envoy",
        action="store_true",
        help="replay the same capture through a real Envoy too and print where "
        "the two differ, one line per field (normalizations counted); exit 1 "
        "on any unexplained difference, 0 when identical",
    )
    cmd.add_argument(
        "--pytest",
        metavar="PATH",
        help="write a pytest regression test of this replay (PATH) and its golden "
        "snapshot (PATH with .snapshot.json): it rebuilds or reloads the filter, "
        "replays the captures and fails with a per-flow, per-field diff when "
        "the output changes",
    )
    cmd.add_argument(
        "--update",
        action="store_true",
        help="with --pytest: rewrite an existing test and snapshot",
    )
    options.add_vm_arguments(cmd)
    options.add_build_arguments(cmd)


def _replay(args: argparse.Namespace) -> int:
    from wasmkit.replay.report import render_summary
    from wasmkit.replay.run import replay

    compact = args.keep != "all" or args.max_kept is not None
    if compact and args.against_envoy:
        print(
            "wasmkit replay: --against-envoy compares every flow: use --keep all "
            "(the default) without --max-kept",
            file=sys.stderr,
        )
        return 1
    if compact:
        # Exports read every flow in full; records can stream as flows finish.
        wants = [f"--{n}" for n in ("out", "har", "html") if getattr(args, n)]
        if wants:
            print(
                f"wasmkit replay: {', '.join(wants)} need every flow: use --keep "
                "all (the default) without --max-kept",
                file=sys.stderr,
            )
            return 1
        if args.json and args.scheduler and not args.records_to:
            print(
                "wasmkit replay: --json with --keep or --max-kept on --scheduler "
                "needs --records-to DIR, a folder the workers and this machine "
                "share",
                file=sys.stderr,
            )
            return 1
    problem = _pytest_problem(args)
    if problem is not None:
        print(f"wasmkit replay: {problem}", file=sys.stderr)
        return 1
    from wasmkit.traffic import _atomic

    # An unwritable output fails now, not after a long replay.
    outputs = [args.json if args.json != "-" else None, args.out, args.har, args.html]
    for target in filter(None, outputs):
        try:
            _atomic.check_writable(target)
        except OSError as exc:
            print(
                f"wasmkit replay: cannot write {_atomic.describe(exc, target)}",
                file=sys.stderr,
            )
            return 1
    vm_options = _vm_options(args)
    path = _built_filter(args.filter, args)
    if path is None:
        return 1
    responder = _responder(args)
    _warn_root_id(args, path)
    # Compact --json: records stream as flows finish in one process; on Dask
    # each partition writes its own files, read back one by one.
    on_dask = args.workers != 1 or bool(args.scheduler)
    from_store = compact and bool(args.json) and on_dask
    records_to: str | bool | None = args.records_to or (True if from_store else None)
    try:
        stream = compact and args.json and not on_dask
        records = _RecordStream(args.json) if stream else None
    except OSError as exc:
        print(
            f"wasmkit replay: cannot write {_atomic.describe(exc, args.json)}",
            file=sys.stderr,
        )
        return 1
    try:
        result = replay(
            path,
            args.captures,
            **_replay_kwargs(args, responder),
            # A bar on a terminal, plain lines when piped; quiet under a second.
            progress=True,
            keep=args.keep,
            max_kept=args.max_kept,
            on_flow=records.write if records else None,
            records_to=records_to,
            **vm_options,
        )
    except BaseException as exc:
        if records is not None:
            records.discard()  # a failed replay leaves no records file
        if isinstance(exc, WasmkitError | ValueError):
            print(f"wasmkit replay: {one_line(str(exc))}", file=sys.stderr)
            return 1
        if isinstance(exc, OSError):
            print(
                f"wasmkit replay: cannot write {_atomic.describe(exc, args.json)}",
                file=sys.stderr,
            )
            return 1
        raise
    note = result.partial_note()
    written: list[str] = []
    try:
        if records is not None:
            records.close(note, result.done_flows)
            if args.json != "-":
                print(render_summary(result))
        elif from_store and result.stored is not None:
            _stored_json(result, args.json, note)
            if records_to is True:
                result.stored.close()  # the temporary folder goes
            if args.json != "-":
                print(render_summary(result))
        elif args.json == "-":
            print(json.dumps(result.json_document(), indent=1))
        else:
            if args.json:
                result.to_json(args.json)
            print(render_summary(result))
        for flag, target, write in (
            ("--json", args.json, None),
            ("--out", args.out, result.to_flow),
            ("--har", args.har, result.to_har),
            ("--html", args.html, result.to_html),
        ):
            if target and write is not None:
                write(target)
            if target and target != "-":
                written.append(f"{flag} {target}")
    except OSError as exc:
        print(f"wasmkit replay: cannot write {_atomic.describe(exc)}", file=sys.stderr)
        return 1
    if note is not None:
        done = result.done_flows
        held = f"; written marked partial: {', '.join(written)}" if written else ""
        print(f"wasmkit replay: interrupted after {done} flows{held}", file=sys.stderr)
        return 130
    if args.pytest and _write_pytest(args, result) != 0:
        return 1
    if args.against_envoy:
        return _against_envoy(result)
    return 1 if result.totals.failed or result.capture_error else 0


def _pytest_problem(args: argparse.Namespace) -> str | None:
    # --pytest / --update checked before the replay runs.
    if args.update and not args.pytest:
        return "--update goes with --pytest PATH"
    if not args.pytest:
        return None
    if args.keep != "all" or args.max_kept is not None:
        return "--pytest needs every flow: use --keep all (the default)"
    test = Path(args.pytest)
    shot = test.with_suffix(".snapshot.json")
    if not args.update:
        for existing in (test, shot):
            if existing.exists():
                return f"{existing} exists: pass --update to rewrite it"
    return None


def _write_pytest(args: argparse.Namespace, result: Any) -> int:
    given = Path(args.filter)
    source = args.filter if given.is_dir() or given.suffix in _SOURCE_SUFFIXES else None
    try:
        test, shot = result.to_pytest(
            args.pytest,
            source=source,
            build_options=options.build_options(args) if source else None,
            callouts=args.callouts,
        )
    except ValueError as exc:
        print(f"wasmkit replay: --pytest: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wasmkit replay: cannot write {os_reason(exc)}", file=sys.stderr)
        return 1
    print(f"wasmkit replay: wrote {test} and its snapshot {shot}", file=sys.stderr)
    return 0


def _against_envoy(result: Any) -> int:
    # The same replay through Envoy: 0 when identical, 1 on any unexplained
    # difference or when Envoy cannot run it.
    try:
        comparison = result.against_envoy()
    except (WasmkitError, ValueError) as exc:
        print(f"wasmkit replay: --against-envoy: {exc}", file=sys.stderr)
        return 1
    print(comparison.text())
    return 0 if comparison.identical else 1


def _stored_json(result: Any, target: str, note: str | None) -> None:
    """``--json`` of a compact replay on Dask, from the partitions' records.

    Read one at a time, written as one array (wrapped as a partial replay's
    when ``note`` says it was interrupted).
    """
    stream = _RecordStream(target)
    try:
        for record in result.stored:
            stream.write_record(record)
    except BaseException:
        stream.discard()
        raise
    stream.close(note, result.done_flows)


class _RecordStream:
    """``--json`` for compact replays: a JSON array written flow by flow.

    A file is written beside the target and renamed into place by
    :meth:`close`, so a failed replay leaves none (:meth:`discard`); an
    interrupted one's records are wrapped as ``ReplayResult.json_document``
    wraps a partial replay's.
    """

    def __init__(self, target: str) -> None:
        from wasmkit.traffic import _atomic

        self._target = target
        self._out = None if target == "-" else _atomic.AtomicFile(target, "w+b")
        self._stdout: TextIO | None = sys.stdout if self._out is None else None
        self._count = 0
        self._good = 0
        """Bytes of the records written whole (an interrupt may cut one)."""
        self._write(b"[")

    def _write(self, data: bytes) -> None:
        from wasmkit.traffic import _atomic

        try:
            if self._out is None:
                assert self._stdout is not None
                self._stdout.write(data.decode())
            else:
                self._out.file.write(data)
        except OSError as exc:
            raise _atomic.named(exc, self._target) from exc
        self._good += len(data)

    def write(self, flow: FlowResult) -> None:
        self.write_record(flow.record())

    def write_record(self, record: Any) -> None:
        head = b",\n" if self._count else b"\n"
        self._write(head + json.dumps(record, indent=1).encode())
        self._count += 1

    def close(self, note: str | None = None, flows: int = 0) -> None:
        """End the array and publish the file (with ``note``: marked partial)."""
        from wasmkit.traffic import _atomic

        out = self._out
        if out is None or note is None:
            self._write(b"\n]\n")
            if out is None:
                assert self._stdout is not None
                self._stdout.flush()
            else:
                out.commit()
            return
        head = json.dumps(
            {"interrupted": True, "partial": True, "flows": flows, "note": note}
        )
        try:
            fo = out.file
            fo.flush()
            fo.seek(0)
            with _atomic.AtomicFile(self._target, "wb") as final:
                final.write(head[:-1].encode() + b', "records": ')
                left = self._good
                while left > 0:
                    chunk = fo.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    final.write(chunk)
                    left -= len(chunk)
                final.write(b"\n]}\n")
        except OSError as exc:
            raise _atomic.named(exc, self._target) from exc
        finally:
            out.discard()

    def discard(self) -> None:
        """Leave no file (the replay failed)."""
        if self._out is not None:
            self._out.discard()
        elif self._stdout is not None:
            self._stdout.write("\n]\n")  # stdout cannot be taken back
            self._stdout.flush()


def _version() -> str:
    # wasmtime's version from its metadata: importing it costs a start-up.
    from importlib import metadata

    try:
        engine = f"wasmtime {metadata.version('wasmtime')}"
    except metadata.PackageNotFoundError:
        engine = "wasmtime not installed"
    python = ".".join(map(str, sys.version_info[:3]))
    return f"wasmkit {__version__} ({engine}, Python {python})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wasmkit`` command."""
    parser = argparse.ArgumentParser(
        prog="wasmkit", description="A development kit for proxy-wasm filters."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_build(sub)
    _add_inspect(sub)
    _add_doctor(sub)
    _add_replay(sub)
    _cli_compare.add_parser(sub)
    demo = sub.add_parser("demo", help="run the sample filters on a request")
    demo.add_argument("--samples", default=str(SAMPLES), help="folder of built samples")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        # Ctrl-C outside a replay's own handling (a build, a load, writing
        # the outputs): no traceback, the shell's status for SIGINT.
        print(f"wasmkit {args.command}: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "build":
        return _build(args)
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "compare":
        return _cli_compare.run(args)
    return _demo(args)


if __name__ == "__main__":
    raise SystemExit(main())
