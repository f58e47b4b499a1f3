"""After a compile: is the module a proxy-wasm filter at all?

A compiler can succeed and still write a module no proxy-wasm host loads: a Go
``main`` that never imports an SDK, a Rust crate without the SDK's entry
points, or a Go module built with Go against an SDK written for TinyGo (the
tetratelabs ``proxy-wasm-go-sdk`` up to v0.24 marks its exports with TinyGo's
``//export`` comments and keeps its host calls behind ``//go:build tinygo``, so
Go drops every callback). :func:`check_module` reads the module with
:mod:`wasmkit.abi.wasm_binary` (no compile) and raises :class:`BuildError`
naming what is missing and why.
"""

from __future__ import annotations

import re
from pathlib import Path

from wasmkit.abi import check, wasm_binary
from wasmkit.errors import BuildError, WasmFormatError

TINYGO_SDK = "github.com/tetratelabs/proxy-wasm-go-sdk"
"""The TinyGo-only Go SDK (``//export`` callbacks)."""

TINYGO_HINT = (
    "exports carry TinyGo //export: use proxy-wasm-go-sdk for Go >= 1.24, or TinyGo"
)

_HINTS = {
    "go": "does the main package import a proxy-wasm SDK "
    "(github.com/proxy-wasm/proxy-wasm-go-sdk) and register its contexts in init()?",
    "tinygo": "does the main package import a proxy-wasm SDK and register its "
    "contexts?",
    "rust": "is the crate a cdylib using the proxy-wasm crate (proxy_wasm::main! "
    "or set_root_context)?",
    "assemblyscript": "does assembly/index.ts export * from "
    '"@solo-io/proxy-runtime/proxy"?',
}

_REQUIRE = re.compile(rf"^\s*(?:require\s+)?{re.escape(TINYGO_SDK)}\s+v", re.M)
_EXPORT_COMMENT = re.compile(r"^//export\s+proxy_", re.M)
_MAX_SCANNED = 200
"""Most ``.go`` files read looking for ``//export`` comments."""


def uses_tinygo_sdk(root: Path) -> bool:
    """Whether the Go project at ``root`` builds against a TinyGo-only SDK.

    True when its ``go.mod`` requires tetratelabs' ``proxy-wasm-go-sdk`` or one
    of its own ``.go`` files (or a vendored one) marks callbacks with
    ``//export proxy_...``.
    """
    try:
        go_mod = (root / "go.mod").read_text(errors="replace")
    except OSError:
        go_mod = ""
    if _REQUIRE.search(go_mod):
        return True
    for index, path in enumerate(sorted(root.rglob("*.go"))):
        if index >= _MAX_SCANNED:
            break
        try:
            if _EXPORT_COMMENT.search(path.read_text(errors="replace")):
                return True
        except OSError:
            continue
    return False


def check_module(wasm: bytes, *, lang: str, name: str, root: Path) -> None:
    """Fail unless ``wasm`` is a proxy-wasm filter: ABI marker, allocator, callback.

    Args:
        wasm: the module the compiler wrote.
        lang: the project's language (``go``, ``tinygo``, ``rust``, ...).
        name: the project's name, for the message.
        root: the project folder (read to recognise a TinyGo-only SDK).

    Raises:
        BuildError: the module is malformed, or lacks an ABI marker, an
            allocator or every ``proxy_on_*`` callback; the message names the
            cause.
    """
    try:
        info = wasm_binary.parse(wasm)
    except WasmFormatError as exc:
        raise BuildError(
            f"{name} ({lang}): the compiler wrote a bad module: {exc}"
        ) from exc
    verdict = check.check_filter(info)
    missing = []
    if verdict.abi_version is None:
        missing.append("no proxy_abi_version_* marker")
    if verdict.allocator is None:
        missing.append("no allocator (malloc or proxy_on_memory_allocate)")
    if not verdict.callbacks:
        missing.append("no proxy_on_* callback")
    if not missing:
        return
    exported = [n for n, e in info.exports.items() if e.kind == "func"]
    shown = ", ".join(exported[:8]) + (", ..." if len(exported) > 8 else "")
    text = (
        f"{name} ({lang}) built, but the module is not a proxy-wasm filter: "
        f"{'; '.join(missing)} (it exports {shown or 'no function'})"
    )
    if lang == "go" and not verdict.callbacks and uses_tinygo_sdk(root):
        raise BuildError(
            f"{text}. It is built against {TINYGO_SDK}, whose {TINYGO_HINT}"
        )
    hint = _HINTS.get(lang)
    raise BuildError(f"{text}: {hint}" if hint else text)
