"""Helpers for writing proxy-wasm test filters in WAT.

:func:`filter_wat` wraps hand-written functions in a module that has what a
host needs: an ABI marker, a memory, a bump allocator exported as ``malloc``,
typed imports for the host functions used, and named string constants.

Example::

    wat = filter_wat(
        '''
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_add_header_map_value (i32.const 0)
                 (global.get $s_key) (global.get $s_key_len)
                 (global.get $s_val) (global.get $s_val_len)))
          (i32.const 0))
        ''',
        strings={"key": "x-added", "val": "yes"},
    )
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from wasmkit.abi.constants import AbiVersion
from wasmkit.abi.signatures import WASI_IMPORTS, host_imports

DATA_BASE = 1024
"""Where string constants start in memory."""
HEAP_BASE = 65536
"""Where the bump allocator starts (page 1)."""
SCRATCH = 512
"""A scratch area (bytes 512..1023) for out-parameters in test code."""


def _wat_string(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def filter_wat(
    body: str,
    *,
    strings: Mapping[str, str | bytes] | None = None,
    abi: AbiVersion = AbiVersion.V0_2_1,
    memory_pages: int = 2,
    allocator: str | None = "malloc",
    wasi: bool = False,
) -> str:
    """A complete filter module around ``body``.

    Imports are added for every ``$proxy_*`` (and, with ``wasi``, every WASI)
    function that ``body`` calls, with the types of ``abi``. Each string
    constant ``name`` becomes globals ``$s_name`` (address) and
    ``$s_name_len`` (bytes).

    Args:
        body: WAT module fields (functions, exports).
        strings: string constants to place in memory.
        abi: the ABI version to declare and import from.
        memory_pages: initial memory size (64 KiB pages).
        allocator: export name of the bump allocator, or ``None`` for none.
        wasi: import WASI functions ``body`` calls as ``$wasi_<name>`` from
            ``wasi_snapshot_preview1``.
    """
    sigs = host_imports(abi)
    lines = ["(module"]
    for name in sorted(set(re.findall(r"\$(proxy_[a-z_0-9]+)", body))):
        if name not in sigs:
            continue
        sig = sigs[name]
        params = " ".join(sig.params)
        lines.append(
            f'  (import "env" "{name}" (func ${name} (param {params}) (result i32)))'
            if params
            else f'  (import "env" "{name}" (func ${name} (result i32)))'
        )
    if wasi:
        for name in sorted(set(re.findall(r"\$wasi_([a-z_]+)", body))):
            sig = WASI_IMPORTS[name]
            params = f"(param {' '.join(sig.params)})" if sig.params else ""
            results = f"(result {' '.join(sig.results)})" if sig.results else ""
            lines.append(
                f'  (import "wasi_snapshot_preview1" "{name}" '
                f"(func $wasi_{name} {params} {results}))"
            )
    lines.append(f'  (memory (export "memory") {memory_pages})')
    lines.append(f'  (func (export "{abi.marker}"))')
    if allocator:
        lines.append(f"  (global $heap (mut i32) (i32.const {HEAP_BASE}))")
        lines.append(
            f'  (func ${allocator} (export "{allocator}")'
            " (param $size i32) (result i32)\n"
            "    (local $p i32)\n"
            "    (local.set $p (global.get $heap))\n"
            "    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap)"
            " (local.get $size)) (i32.const 7)) (i32.const -8)))\n"
            "    (local.get $p))"
        )
    offset = DATA_BASE
    for name, value in (strings or {}).items():
        data = value.encode() if isinstance(value, str) else value
        lines.append(f"  (global $s_{name} i32 (i32.const {offset}))")
        lines.append(f"  (global $s_{name}_len i32 (i32.const {len(data)}))")
        if data:
            lines.append(f'  (data (i32.const {offset}) "{_wat_string(data)}")')
        offset += len(data) + (8 - len(data) % 8)
    if offset > HEAP_BASE:
        raise ValueError("string constants overflow the data area")
    lines.append(body)
    lines.append(")")
    return "\n".join(lines)
