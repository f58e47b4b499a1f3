"""Replays as regression tests: golden snapshots and the pytest files around them.

:func:`snapshot_records` turns a :class:`~wasmkit.replay.results.ReplayResult`
into stable JSON-ready data: every flow's record (what ``wasmkit replay
--json`` writes) without the fields that change from run to run (wall times,
µs) and, unless asked for, without the trace; the metrics and callouts at the
end. :func:`check` compares a replay with a snapshot file and fails with
one line per changed field, per flow. :func:`write_pytest` (what
``ReplayResult.to_pytest`` and ``wasmkit replay --pytest`` call) writes a
pytest file plus its snapshot: the test rebuilds or reloads the same filter
(source through the build cache, or the artifact's path), replays the same
captures with the same options and checks the snapshot. ``pytest
--wasmkit-update`` (or ``WASMKIT_UPDATE=1``) rewrites the snapshot instead.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmkit.host.connection_manager import ENVOY_DEFAULTS, ConnectionManager
from wasmkit.host.vm import Limits

if TYPE_CHECKING:
    from wasmkit.replay.results import ReplayResult

SNAPSHOT_VERSION = 1
"""Bumped when the snapshot's layout changes."""

VOLATILE = frozenset({"duration_us", "us", "micros", "load_ms", "build_ms"})
"""Keys left out of snapshots: wall-clock measurements."""

UPDATE_ENV = "WASMKIT_UPDATE"
"""Set to ``1`` to make snapshot checks rewrite their snapshots."""

_SOURCE_SUFFIXES = (".rs", ".go", ".ts")
_MAX_SHOWN = 160


class SnapshotMismatch(AssertionError):
    """A replay differs from its snapshot; the message lists each change."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes
        """One line per changed field (``flow 2 GET /: response.status...``)."""


# -- snapshots ------------------------------------------------------------------


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def snapshot_records(result: ReplayResult, *, trace: bool = False) -> dict[str, Any]:
    """The replay as snapshot data: stable, without volatile fields.

    Args:
        result: the replay.
        trace: keep each flow's trace (callbacks and host calls, without
            their durations); by default only what the filter produced.
    """
    flows = []
    for flow in result.flows:
        record = flow.record()
        if not trace:
            record.pop("trace", None)
        flows.append(_strip(record))
    return {
        "version": SNAPSHOT_VERSION,
        "flows": flows,
        "metrics": {
            str(m["name"]): m["samples"] if m["type"] == "histogram" else m["value"]
            for m in result.metrics
        },
        "callouts": [_strip(c.to_json()) for c in result.callouts],
        "skipped": dict(sorted(result.skipped.items())),
        "capture_error": result.capture_error,
    }


def dumps(data: Any) -> str:
    """Stable JSON text: sorted keys, one-space indent, a final newline.

    A list of plain values (a header field, a histogram's samples) stays on
    one line, so a header change is a one-line change of the file.
    """
    return _dump(data, 0) + "\n"


def _dump(value: Any, depth: int) -> str:
    pad = " " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [
            f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_dump(v, depth + 1)}"
            for k, v in sorted(value.items())
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    if isinstance(value, list) and value:
        if all(not isinstance(v, dict | list) for v in value):
            return json.dumps(value, ensure_ascii=False)
        items = [pad + _dump(v, depth + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"
    return json.dumps(value, ensure_ascii=False)


def write_snapshot(data: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write snapshot data to ``path`` (whole or not at all)."""
    from wasmkit.traffic import _atomic

    _atomic.write_text(path, dumps(data))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _is_pairs(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in value
    )


def _pairs_diff(path: str, old: list[list[str]], new: list[list[str]]) -> list[str]:
    out: list[str] = []
    names = list(dict.fromkeys([k for k, _ in old] + [k for k, _ in new]))
    for name in names:
        was = [v for k, v in old if k == name]
        now = [v for k, v in new if k == name]
        if was == now:
            continue
        before = _short(was[0] if len(was) == 1 else was)
        after = _short(now[0] if len(now) == 1 else now)
        if not was:
            out.append(f"{path}: {name} added: {after}")
        elif not now:
            out.append(f"{path}: {name} removed (was {before})")
        else:
            out.append(f"{path}: {name}: {before} -> {after}")
    if not out and old != new:
        out.append(f"{path}: the same fields in another order")
    return out


def _diff(path: str, old: Any, new: Any, out: list[str]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(dict.fromkeys([*old, *new])):
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(f"{where}: gone (was {_short(old[key])})")
            elif key not in old:
                out.append(f"{where}: new: {_short(new[key])}")
            else:
                _diff(where, old[key], new[key], out)
    elif _is_pairs(old) and _is_pairs(new):
        out.extend(_pairs_diff(path, old, new))
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) == len(new):
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                _diff(f"{path}[{i}]", a, b, out)
            return
        import difflib

        a = [_short(x) for x in old]
        b = [_short(x) for x in new]
        for line in difflib.unified_diff(a, b, lineterm="", n=0):
            if line.startswith(("---", "+++", "@@")):
                continue
            out.append(f"{path}: {line[0]} {line[1:]}")
    else:
        out.append(f"{path}: {_short(old)} -> {_short(new)}")


def _flow_title(record: Mapping[str, Any]) -> str:
    request = record.get("request") or {}
    return f"{request.get('method', '')} {request.get('url', '')}".strip()


def _changes(
    expected: Mapping[str, Any], actual: Mapping[str, Any]
) -> list[tuple[str, str]]:
    # (where, what changed): where is "flow N METHOD URL" or "replay".
    out: list[tuple[str, str]] = []
    old_flows = {f.get("index"): f for f in expected.get("flows", [])}
    new_flows = {f.get("index"): f for f in actual.get("flows", [])}
    for index in sorted(set(old_flows) | set(new_flows), key=lambda i: (i is None, i)):
        old, new = old_flows.get(index), new_flows.get(index)
        title = f"flow {index} {_flow_title(old or new or {})}"
        if old is None:
            out.append((title, "not in the snapshot"))
        elif new is None:
            out.append((title, "not replayed this time"))
        else:
            lines: list[str] = []
            _diff("", old, new, lines)
            out.extend((title, line) for line in lines)
    rest: list[str] = []
    _diff(
        "",
        {k: v for k, v in expected.items() if k != "flows"},
        {k: v for k, v in actual.items() if k != "flows"},
        rest,
    )
    out.extend(("replay", line) for line in rest)
    return out


def compare(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Every difference between two snapshots, one line each, flow by flow.

    Each line reads ``flow 2 GET http://host/path: response.status.after:
    200 -> 403`` (``replay: ...`` for the metrics and callouts at the end).
    """
    return [f"{where}: {what}" for where, what in _changes(expected, actual)]


def _update_requested(request: Any = None) -> bool:
    if os.environ.get(UPDATE_ENV, "").lower() in ("1", "true", "yes"):
        return True
    config = getattr(request, "config", None)
    if config is None:
        return False
    return bool(config.getoption("wasmkit_update", default=False))


def check(
    result: ReplayResult,
    snapshot: str | os.PathLike[str],
    *,
    update: bool = False,
    trace: bool = False,
    request: Any = None,
) -> None:
    """Compare ``result`` with the snapshot file; write it if missing or asked.

    Args:
        result: the replay.
        snapshot: the snapshot file.
        update: (re)write the snapshot instead of comparing (also with
            ``WASMKIT_UPDATE=1`` or pytest's ``--wasmkit-update``).
        trace: the snapshot keeps traces (see :func:`snapshot_records`).
        request: pytest's ``request`` fixture, to read ``--wasmkit-update``.

    Raises:
        SnapshotMismatch: the replay differs (the message names each changed
            field of each flow), or the snapshot is missing.
    """
    __tracebackhide__ = True  # pytest shows the mismatch, not this function
    path = Path(snapshot)
    actual = json.loads(dumps(snapshot_records(result, trace=trace)))
    if update or _update_requested(request):
        write_snapshot(actual, path)
        return
    if not path.exists():
        raise SnapshotMismatch(
            f"no snapshot {path}: write it with pytest --wasmkit-update (or "
            f"{UPDATE_ENV}=1)",
            [f"{path.name}: missing"],
        )
    expected = json.loads(path.read_text())
    found = _changes(expected, actual)
    if not found:
        return
    flows = {where for where, _ in found if where != "replay"}
    head = (
        f"the replay differs from {path.name}: {len(found)} change"
        f"{'' if len(found) == 1 else 's'}"
        + (f" in {len(flows)} flow{'' if len(flows) == 1 else 's'}" if flows else "")
    )
    lines = [head]
    last = None
    for where, what in found:
        if where != last:
            lines.append(f"{where}:")
            last = where
        lines.append(f"  {what}")
    lines.append(
        "accept the new output with: pytest --wasmkit-update (or "
        f"{UPDATE_ENV}=1), or wasmkit replay ... --pytest PATH --update"
    )
    changes = [f"{where}: {what}" for where, what in found]
    message = "\n".join(lines)
    raise SnapshotMismatch(message, changes)


# -- the replay a test re-runs --------------------------------------------------


def _jsonable_bytes(data: bytes | str) -> Any:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def _from_json_bytes(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(value["base64"])
    return value


def _relative(path: str | os.PathLike[str], base: Path) -> str:
    absolute = Path(path).resolve()
    try:
        return os.path.relpath(absolute, base)
    except ValueError:  # another drive
        return str(absolute)


_PLAIN = (
    "root_id",
    "fail_open",
    "failure_policy",
    "decoded",
    "limit",
    "filter_expr",
    "chunk_size",
    "follow_time",
    "callouts_from_capture",
    "workers",
    "balance",
    "reload_backoff_ms",
    "seed",
    "profile",
    "fast",
    "trace",
    "vm_id",
    "abi",
)
_DEFAULTS: dict[str, Any] = {
    "root_id": "",
    "fail_open": False,
    "decoded": False,
    "callouts_from_capture": False,
    "connection_manager": "envoy",
    "log_level": "info",
    "follow_time": True,
    "workers": 1,
    "balance": "measured",
}
"""Options a spec leaves out when they have ``replay()``'s default."""
_IGNORED = (
    "progress",
    "on_flow",
    "on_progress",
    "keep",
    "max_kept",
    "filter",
    "captures",
)


def replay_spec(
    result: ReplayResult,
    base: Path,
    *,
    source: str | os.PathLike[str] | None = None,
    build_options: Mapping[str, Any] | None = None,
    callouts: str | os.PathLike[str] | None = None,
    artifact_dir: Path | None = None,
) -> dict[str, Any]:
    """How to replay ``result`` again, as JSON-ready data (paths from ``base``).

    Raises:
        ValueError: the replay's inputs were not recorded, or it used what
            cannot be written down (a responder or upstream function).
    """
    inputs = result.inputs
    if inputs is None:
        raise ValueError("this replay did not record its inputs")
    spec: dict[str, Any] = {
        "filter": _filter_spec(
            inputs["filter"], base, source, build_options, artifact_dir
        ),
        "captures": [
            _relative(c, base)
            for c in (
                [inputs["captures"]]
                if isinstance(inputs["captures"], str | os.PathLike)
                else inputs["captures"]
            )
        ],
    }
    options: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in _IGNORED or value is None:
            continue
        if key in ("config", "vm_configuration"):
            if value:
                options[key] = _jsonable_bytes(value)
        elif key in _PLAIN:
            options[key] = value
        elif key == "connection_manager":
            options[key] = _cm_spec(value)
        elif key == "limits":
            if value != Limits():
                options[key] = {
                    f.name: getattr(value, f.name)
                    for f in dataclasses.fields(value)
                    if getattr(value, f.name) != getattr(Limits(), f.name)
                }
        elif key == "log_level":
            options[key] = value if isinstance(value, str) else value.name.lower()
        elif key in ("clusters", "host_env_keys"):
            options[key] = sorted(value) if key == "clusters" else list(value)
        elif key in ("environment", "environ", "properties", "node"):
            options[key] = json.loads(json.dumps(dict(value)))
        elif key == "responder":
            if callouts is None:
                raise ValueError(
                    "a replay with a responder cannot be written into a test: "
                    "pass callouts=FILE (the responder's JSON table or Python file)"
                )
        elif key == "upstream":
            raise ValueError("a replay with upstream= cannot be written into a test")
        else:
            try:
                options[key] = json.loads(json.dumps(value))
            except TypeError as exc:
                raise ValueError(
                    f"the replay option {key}={value!r} cannot be written into a test"
                ) from exc
    if options.get("callouts_from_capture"):
        options.pop("responder", None)
    if callouts is not None:
        spec["callouts"] = _relative(callouts, base)
    if options.get("workers", 1) != 1:
        # Each worker's VM starts afresh where its part starts, and the cut
        # may move from run to run: the flows would not repeat.
        raise ValueError(
            "a replay with several workers cannot be a regression test: VM "
            "state does not carry across workers; replay with workers=1"
        )
    for key, default in _DEFAULTS.items():
        if key in options and options[key] == default:
            del options[key]
    spec["options"] = options
    return spec


def _cm_spec(value: ConnectionManager | None) -> Any:
    if value is None:
        return None
    if value == ENVOY_DEFAULTS:
        return "envoy"
    return {
        f.name: list(v) if isinstance(v := getattr(value, f.name), tuple) else v
        for f in dataclasses.fields(value)
        if getattr(value, f.name) != getattr(ENVOY_DEFAULTS, f.name)
    }


def _filter_spec(
    filter: Any,
    base: Path,
    source: str | os.PathLike[str] | None,
    build_options: Mapping[str, Any] | None,
    artifact_dir: Path | None,
) -> dict[str, Any]:
    build = {k: list(v) for k, v in (build_options or {}).items() if v}
    if source is not None:
        return {"source": _relative(source, base), "build": build}
    artifact = getattr(filter, "artifact", None)  # what a %%wasm cell binds
    if artifact is not None:
        filter = artifact
    src = getattr(filter, "source", None)
    lang = getattr(filter, "lang", None)
    if isinstance(src, Path) and isinstance(lang, str) and src.exists():
        return {"source": _relative(src, base), "lang": lang, "build": build}
    if isinstance(filter, str | os.PathLike) and not (
        isinstance(filter, str) and filter.lstrip().startswith("(")
    ):
        path = Path(filter)
        if path.is_dir() or path.suffix in _SOURCE_SUFFIXES:
            return {"source": _relative(path, base), "build": build}
        return {"path": _relative(path, base)}
    name = getattr(filter, "name", None)  # a compiled module
    if isinstance(name, str) and Path(name).is_file():
        return {"path": _relative(name, base)}
    if isinstance(filter, bytes | str):
        where = artifact_dir or base
        suffix = ".wat" if isinstance(filter, str) else ".wasm"
        data = filter.encode() if isinstance(filter, str) else filter
        import hashlib

        target = where / f"filter-{hashlib.sha256(data).hexdigest()[:12]}{suffix}"
        target.write_bytes(data)
        return {"path": _relative(target, base)}
    raise ValueError(f"cannot write a test that reloads the filter {filter!r}")


def _load_filter(spec: Mapping[str, Any], base: Path) -> Any:
    if "path" in spec:
        return str(base / spec["path"])
    from wasmkit.build import build

    options: dict[str, Any] = {k: tuple(v) for k, v in spec.get("build", {}).items()}
    return build(base / spec["source"], spec.get("lang"), progress=False, **options)


def replay_from_spec(
    spec: Mapping[str, Any], base: str | os.PathLike[str]
) -> ReplayResult:
    """Run the replay :func:`replay_spec` wrote down (paths from ``base``)."""
    from wasmkit.replay.run import replay

    root = Path(base)
    options: dict[str, Any] = {}
    for key, value in spec.get("options", {}).items():
        if key in ("config", "vm_configuration"):
            options[key] = _from_json_bytes(value)
        elif key == "limits":
            options[key] = Limits(**value)
        elif key == "connection_manager":
            if value is None:
                options[key] = None
            elif value != "envoy":
                fields: dict[str, Any] = {
                    k: tuple(v) if isinstance(v, list) else v for k, v in value.items()
                }
                options[key] = ConnectionManager(**fields)
        elif key in ("clusters", "host_env_keys"):
            options[key] = tuple(value)
        else:
            options[key] = value
    if "callouts" in spec:
        from wasmkit.host.callouts import load_responder

        options["responder"] = load_responder(root / spec["callouts"])
    captures = [str(root / c) for c in spec["captures"]]
    return replay(
        _load_filter(spec["filter"], root), captures, progress=False, **options
    )


def check_replay(
    spec: Mapping[str, Any],
    snapshot: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    request: Any = None,
    update: bool = False,
) -> ReplayResult:
    """Replay ``spec`` again and :func:`check` it against ``snapshot``.

    What a test written by :func:`write_pytest` calls. ``base``: where the
    spec's relative paths start (default: the snapshot's folder).

    Raises:
        SnapshotMismatch: the replay differs from the snapshot.
    """
    __tracebackhide__ = True
    root = Path(base) if base is not None else Path(snapshot).resolve().parent
    result = replay_from_spec(spec, root)
    check(
        result,
        snapshot,
        update=update,
        trace=bool(spec.get("trace", False)),
        request=request,
    )
    return result


_TEST = '''"""Regression test written by wasmkit: a replay checked against its snapshot.

Filter: {filter}
Captures: {captures}

The test replays the captures through the filter again{rebuild}
and compares every flow with the snapshot, field by field:
{snapshot}
After an intended change, accept the new output with
``pytest --wasmkit-update`` (or ``WASMKIT_UPDATE=1``).
"""

from pathlib import Path

from wasmkit.testing import snapshot

HERE = Path(__file__).resolve().parent
SNAPSHOT = HERE / {snapshot_literal}
REPLAY = {spec}


def {name}(request):
    snapshot.check_replay(REPLAY, SNAPSHOT, base=HERE, request=request)
'''


def write_pytest(
    result: ReplayResult,
    path: str | os.PathLike[str],
    *,
    snapshot: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    build_options: Mapping[str, Any] | None = None,
    callouts: str | os.PathLike[str] | None = None,
    trace: bool = False,
) -> tuple[Path, Path]:
    """Write a pytest file that re-runs this replay, and its golden snapshot.

    Args:
        result: the replay (its :attr:`~ReplayResult.inputs` say how it was
            made).
        path: the test file (``test_*.py``).
        snapshot: the snapshot file (default: ``path`` with
            ``.snapshot.json``).
        source: the filter's source folder or file, rebuilt through the
            build cache by the test (default: the filter the replay loaded:
            an artifact's source, or a ``.wasm`` / ``.wat`` path).
        build_options: for :func:`wasmkit.build` (``tags``, ``go_flags``,
            ``extra_args``).
        callouts: the ``--callouts`` file that made the replay's responder.
        trace: the snapshot keeps traces too.

    Returns:
        The test file and the snapshot file.

    Raises:
        ValueError: the replay cannot be written down (see :func:`replay_spec`).
        OSError: a file cannot be written.
    """
    test = Path(path)
    base = test.resolve().parent
    shot = (
        Path(snapshot) if snapshot is not None else test.with_suffix(".snapshot.json")
    )
    spec = replay_spec(
        result,
        base,
        source=source,
        build_options=build_options,
        callouts=callouts,
        artifact_dir=base,
    )
    if trace:
        spec["trace"] = True
    if result.interrupted:
        raise ValueError("an interrupted replay cannot be a regression test")
    name = "test_" + "".join(
        c if c.isalnum() else "_" for c in test.stem.removeprefix("test_")
    )
    text = _TEST.format(
        filter=json.dumps(spec["filter"], sort_keys=True),
        captures=", ".join(spec["captures"]),
        rebuild=" (rebuilt from source through the build cache)"
        if "source" in spec["filter"]
        else "",
        snapshot=_relative(shot, base),
        snapshot_literal=json.dumps(_relative(shot, base)),
        spec=_pyliteral(spec),
        name=name,
    )
    write_snapshot(json.loads(dumps(snapshot_records(result, trace=trace))), shot)
    from wasmkit.traffic import _atomic

    _atomic.write_text(test, text)
    return test, shot


def _pyliteral(value: Any, indent: int = 0) -> str:
    # JSON data as Python source (True/False/None), one key per line.
    pad = "    " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{pad}{json.dumps(k)}: {_pyliteral(v, indent + 1)},"
            for k, v in value.items()
        ]
        return "{\n" + "\n".join(items) + "\n" + "    " * indent + "}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            return "[]"
        items = [f"{pad}{_pyliteral(v, indent + 1)}," for v in value]
        return "[\n" + "\n".join(items) + "\n" + "    " * indent + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a valid Python literal too
    return repr(value)
