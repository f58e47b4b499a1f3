"""Compatibility report of a filter module: what it needs and who provides it.

``wasmkit inspect`` prints it: the ABI version (and vendor profile, e.g.
Higress), allocator and start function, who built the module (its
``producers`` section), its custom sections and memories, the exports, and
for each import whether the wasmkit host and Envoy link it. The module is read
with :mod:`wasmkit.abi.wasm_binary`, never compiled, so a 25 MB module is
inspected in milliseconds. :func:`precheck` is the same check as a gate before
a compile.
"""

from __future__ import annotations

import hashlib
from typing import Any

from wasmkit.abi import wasm_binary
from wasmkit.abi.check import FilterCheck, check_filter, precheck
from wasmkit.abi.constants import AbiVersion
from wasmkit.abi.signatures import (
    EXTRA_ENV_IMPORTS,
    HIGRESS_IMPORTS,
    WASI_IMPORTS,
    WASI_MODULES,
    host_imports,
    vendor_imports,
)
from wasmkit.abi.wasm_binary import ImportSpec
from wasmkit.errors import WasmFormatError
from wasmkit.host import vm

__all__ = ["ONLY_NEW_ENVOY", "FilterCheck", "inspect_filter", "precheck", "render"]

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


def inspect_filter(path: str) -> dict[str, Any]:
    """The compatibility report of the module at ``path`` (JSON-ready).

    ``path`` is a ``.wasm`` binary or ``.wat`` text; the module is parsed, not
    compiled.

    Raises:
        FilterLoadError: the file is missing or not a wasm module
            (:class:`~wasmkit.errors.WasmFormatError` for a malformed binary).
    """
    name, binary = vm.read_binary(path)  # WAT text becomes a binary, uncompiled
    try:
        info = wasm_binary.parse(binary)
    except WasmFormatError as exc:
        raise WasmFormatError(
            f"{name}: invalid wasm module: {exc}", offset=exc.offset
        ) from exc
    verdict = check_filter(info)
    version = verdict.abi_version
    imports = [_import_record(spec, version, verdict.vendor) for spec in info.imports]
    problems = [p for p in verdict.problems if not p.startswith("the host does not")]
    base_ok = not problems
    problems += [
        f"import {i['module']}.{i['name']}: {i['note'] or 'not provided'}"
        for i in imports
        if not (i["wasmkit"] and i["envoy"]) and i["note"] != ONLY_NEW_ENVOY
    ]
    # Upstream Envoy knows no vendor marker: a Higress module loads only in
    # Higress's Envoy.
    envoy = base_ok and verdict.vendor is None and all(i["envoy"] for i in imports)
    return {
        "path": path,
        "size": info.size,
        "sha256": hashlib.sha256(binary).hexdigest(),
        "abi_version": None if version is None else version.value,
        "abi": verdict.label,
        "vendor": verdict.vendor,
        "allocator": verdict.allocator,
        "start": verdict.start,
        "start_section": verdict.start_section,
        "toolchain": verdict.toolchain,
        "producers": _producers(info.producers),
        "custom_sections": [{"name": c.name, "size": c.size} for c in info.customs],
        "memories": [_limits(m) for m in info.memories]
        + [_limits(i.limits) for i in info.imports if i.kind == "memory" and i.limits],
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
            for e in info.exports.values()
        ],
        "imports": imports,
    }


def _limits(limits: wasm_binary.Limits) -> dict[str, Any]:
    return {
        "min_pages": limits.minimum,
        "max_pages": limits.maximum,
        "shared": limits.shared,
        "memory64": limits.is64,
    }


def _producers(producers: wasm_binary.Producers | None) -> dict[str, Any] | None:
    if producers is None:
        return None
    return {
        "language": [list(p) for p in producers.language],
        "processed-by": [list(p) for p in producers.processed_by],
        "sdk": [list(p) for p in producers.sdk],
    }


def _import_record(
    spec: ImportSpec, version: AbiVersion | None, vendor: str | None = None
) -> dict[str, Any]:
    env = host_imports(version or AbiVersion.V0_2_1)
    extra = vendor_imports(vendor)
    sig = spec.signature
    note: str | None = None
    if spec.module == "env":
        want = env.get(spec.name) or extra.get(spec.name)
        want = want or EXTRA_ENV_IMPORTS.get(spec.name)
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
        elif wasmkit and spec.name in extra:
            note = "Higress only: upstream Envoy lacks it"
        elif wasmkit and not envoy:
            note = "wasmkit only: Envoy lacks it"
            if spec.name == "abort":
                note += " (build AssemblyScript with --use abort=abort_proc_exit)"
        elif want is not None and not wasmkit:
            note = f"imported as {sig}, the host has {want}"
        elif want is None:
            note = f"not an ABI {(version or AbiVersion.V0_2_1).value} host function"
            if spec.name in HIGRESS_IMPORTS:
                note += " (a Higress function: the module lacks Higress's marker)"
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


def _built_by(record: dict[str, Any]) -> str:
    producers = record.get("producers") or {}
    parts = [
        f"{name} {version}".strip()
        for key in ("language", "processed-by", "sdk")
        for name, version in producers.get(key, [])
    ]
    text = record.get("toolchain") or "-"
    return text + (f" ({', '.join(parts)})" if parts else "")


def render(record: dict[str, Any]) -> str:
    """The report as text."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    loads = record["loads"]
    abi = record.get("abi") or record["abi_version"] or "-"
    start = record["start"] or "-"
    if record["start_section"]:
        start = "wasm start section" + ("" if start == "-" else f", then {start}")
    lines = [
        f"filter     {record['filter']} ({record['size']} bytes)",
        f"ABI        {abi.removeprefix('ABI ')}",
        f"allocator  {record['allocator'] or '-'}",
        f"start      {start}",
        f"loads      wasmkit {yes(loads['wasmkit'])}, Envoy {yes(loads['envoy'])}, "
        f"Envoy before 2026 {yes(loads['envoy_before_2026'])}",
    ]
    if record.get("toolchain") or record.get("producers"):
        lines.append(f"built by   {_built_by(record)}")
    for memory in record.get("memories", []):
        top = memory["max_pages"]
        lines.append(
            f"memory     {memory['min_pages']} pages"
            + (f", at most {top}" if top is not None else ", no maximum")
            + (", shared" if memory["shared"] else "")
            + (", 64-bit" if memory["memory64"] else "")
        )
    customs = record.get("custom_sections", [])
    if customs:
        lines.append(
            "custom     "
            + ", ".join(f"{c['name']} ({c['size']} bytes)" for c in customs)
        )
    lines.append(f"exports    {len(record['exports'])}")
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
