"""Compatibility report of a filter module: what it needs and who provides it.

``wasmkit inspect`` prints it: the ABI version, allocator and start function,
the exports, and for each import whether the wasmkit host and Envoy link it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wasmkit.abi.constants import AbiVersion
from wasmkit.abi.signatures import (
    EXTRA_ENV_IMPORTS,
    WASI_IMPORTS,
    WASI_MODULES,
    callback_signature,
    host_imports,
)
from wasmkit.host.vm import ImportSpec, compile_module

# The WASI functions Envoy linked before proxy-wasm-cpp-host #533 (2026-04); the
# rest of WASI_IMPORTS came with it, so older Envoy rejects modules importing them.
_ENVOY_WASI_BEFORE_2026 = frozenset(
    {
        "fd_write",
        "fd_read",
        "fd_seek",
        "fd_close",
        "fd_fdstat_get",
        "fd_fdstat_set_flags",
        "environ_get",
        "environ_sizes_get",
        "args_get",
        "args_sizes_get",
        "clock_time_get",
        "random_get",
        "sched_yield",
        "poll_oneoff",
        "proc_exit",
        "path_open",
        "fd_prestat_get",
        "fd_prestat_dir_name",
    }
)

_ENVOY_EXTRA_ENV = frozenset({"emscripten_notify_memory_growth", "pthread_equal"})
ONLY_NEW_ENVOY = "only Envoy >= 2026"


def _func_export(exports: dict[str, Any], name: str) -> bool:
    spec = exports.get(name)
    return spec is not None and spec.kind == "func"


def inspect_filter(path: str) -> dict[str, Any]:
    """The compatibility report of the module at ``path`` (JSON-ready).

    Raises:
        FilterLoadError: the file is missing or not a wasm module.
    """
    module = compile_module(path)
    version = next(
        (v for v in AbiVersion if _func_export(module.exports, v.marker)), None
    )
    allocator = next(
        (
            name
            for name in ("malloc", "proxy_on_memory_allocate")
            if _func_export(module.exports, name)
        ),
        None,
    )
    start = next(
        (n for n in ("_initialize", "_start") if _func_export(module.exports, n)),
        None,
    )
    imports = [_import_record(spec, version) for spec in module.imports]
    problems = []
    if version is None:
        problems.append(
            "no proxy_abi_version_* export: neither wasmkit nor Envoy loads it"
        )
    if allocator is None:
        problems.append("exports neither malloc nor proxy_on_memory_allocate")
    for name, spec in module.exports.items():
        want = callback_signature(name, version or AbiVersion.V0_2_1)
        if want is not None and spec.kind == "func" and spec.signature != want:
            problems.append(f"callback {name} is {spec.signature}, expected {want}")
    base_ok = not problems
    problems += [
        f"import {i['module']}.{i['name']}: {i['note'] or 'not provided'}"
        for i in imports
        if not (i["wasmkit"] and i["envoy"]) and i["note"] != ONLY_NEW_ENVOY
    ]
    envoy = base_ok and all(i["envoy"] for i in imports)
    return {
        "path": path,
        "size": module.size,
        "sha256": module.sha256,
        "abi_version": None if version is None else version.value,
        "allocator": allocator,
        "start": start,
        "start_section": _has_start_section(Path(path)),
        "loads": {
            "wasmkit": base_ok and all(i["wasmkit"] for i in imports),
            "envoy": envoy,
            "envoy_before_2026": envoy
            and all(i["note"] != ONLY_NEW_ENVOY for i in imports),
        },
        "problems": problems,
        "exports": [
            {
                "name": e.name,
                "kind": e.kind,
                "signature": None if e.signature is None else str(e.signature),
            }
            for e in module.exports.values()
        ],
        "imports": imports,
    }


def _import_record(spec: ImportSpec, version: AbiVersion | None) -> dict[str, Any]:
    env = host_imports(version or AbiVersion.V0_2_1)
    sig = spec.signature
    note: str | None = None
    if spec.module == "env":
        want = env.get(spec.name) or EXTRA_ENV_IMPORTS.get(spec.name)
        wasmkit = spec.kind == "func" and want is not None and sig == want
        envoy = wasmkit and (spec.name in env or spec.name in _ENVOY_EXTRA_ENV)
        if (
            spec.name == "proxy_get_buffer_status"
            and sig is not None
            and sig == env["proxy_set_buffer_bytes"]
        ):
            wasmkit, envoy = True, False
            note = (
                "imported with proxy_set_buffer_bytes' type (proxy-runtime 0.1.8): "
                "wasmkit binds it to set_buffer_bytes, Envoy rejects the type"
            )
        elif wasmkit and not envoy:
            note = "wasmkit only: Envoy lacks it"
            if spec.name == "abort":
                note += " (build AssemblyScript with --use abort=abort_proc_exit)"
        elif want is not None and not wasmkit:
            note = f"imported as {sig}, the host has {want}"
        elif want is None:
            note = f"not an ABI {(version or AbiVersion.V0_2_1).value} host function"
    elif spec.module in WASI_MODULES:
        want = WASI_IMPORTS.get(spec.name)
        wasmkit = envoy = spec.kind == "func" and want is not None and sig == want
        if want is None:
            note = "not a WASI function wasmkit or Envoy provides"
        elif not wasmkit:
            note = f"imported as {sig}, the host has {want}"
        elif spec.name not in _ENVOY_WASI_BEFORE_2026:
            note = ONLY_NEW_ENVOY
    else:
        wasmkit = envoy = False
        note = f"unknown import module {spec.module!r}"
    return {
        "module": spec.module,
        "name": spec.name,
        "kind": spec.kind,
        "signature": None if sig is None else str(sig),
        "wasmkit": wasmkit,
        "envoy": envoy,
        "note": note,
    }


def _has_start_section(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not data.startswith(b"\0asm"):
        return b"(start " in data  # WAT text
    pos = 8
    while pos < len(data):
        section = data[pos]
        pos += 1
        size = shift = 0
        while pos < len(data):
            byte = data[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if section == 8:
            return True
        pos += size
    return False


def render(record: dict[str, Any]) -> str:
    """The report as text."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    loads = record["loads"]
    start = record["start"] or "-"
    if record["start_section"]:
        start = "wasm start section" + ("" if start == "-" else f", then {start}")
    lines = [
        f"filter     {record['filter']} ({record['size']} bytes)",
        f"ABI        {record['abi_version'] or '-'}",
        f"allocator  {record['allocator'] or '-'}",
        f"start      {start}",
        f"loads      wasmkit {yes(loads['wasmkit'])}, Envoy {yes(loads['envoy'])}, "
        f"Envoy before 2026 {yes(loads['envoy_before_2026'])}",
        f"exports    {len(record['exports'])}",
    ]
    for e in record["exports"]:
        shown = f"  {e['name']:<42} {e['kind']:<6} {e['signature'] or ''}"
        lines.append(shown.rstrip())
    lines.append(f"{'imports    ' + str(len(record['imports'])):<55}wasmkit  envoy")
    for i in record["imports"]:
        name = f"{i['module']}.{i['name']}"
        envoy = yes(i["envoy"]) + (" (>= 2026)" if i["note"] == ONLY_NEW_ENVOY else "")
        lines.append(f"  {name:<52} {yes(i['wasmkit']):<8} {envoy}")
        if i["note"] and i["note"] != ONLY_NEW_ENVOY:
            lines.append(f"      {i['note']}")
    for problem in record["problems"]:
        lines.append(f"problem    {problem}")
    return "\n".join(lines)
