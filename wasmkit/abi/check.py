"""Whether a module is a proxy-wasm filter the host can load, before compiling.

:func:`check_filter` gives the verdict on a :class:`~wasmkit.abi.wasm_binary.
ModuleInfo`: the ABI it declares (standard markers and vendor ones such as
Higress's ``proxy_abi_version_0_2_100``), its allocator, the callbacks it
exports and their types, and the imports the host lacks. :func:`precheck`
does it on bytes and raises :class:`~wasmkit.errors.FilterLoadError` listing
every problem, so a host refuses a module without paying for its compile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wasmkit.abi import wasm_binary
from wasmkit.abi.constants import VENDOR_MARKERS, AbiVersion
from wasmkit.abi.signatures import (
    EXTRA_ENV_IMPORTS,
    WASI_IMPORTS,
    WASI_MODULES,
    Signature,
    callback_signature,
    host_imports,
    vendor_imports,
)
from wasmkit.errors import FilterLoadError, WasmFormatError

ALLOCATORS = ("malloc", "proxy_on_memory_allocate")
"""The guest allocators, in the order Envoy (cpp-host) looks for them."""

VENDORS = {"higress": "Higress"}
"""Vendor profiles and their display names."""

AbiChoice = AbiVersion | str | None
"""A forced ABI: a version, ``"0.2.1"``, or a vendor profile (``"higress"``)."""


@dataclass(frozen=True, slots=True)
class FilterCheck:
    """The verdict on a module: what it declares and what stops it loading."""

    abi_version: AbiVersion | None
    """The ABI the host uses for it (``None``: no known marker, none forced)."""
    vendor: str | None
    """The vendor profile (``"higress"``), or ``None`` for the standard ABI."""
    marker: str | None
    """The ``proxy_abi_version_*`` export found, if any."""
    forced: bool
    """Whether the ABI was forced by the caller rather than read from a marker."""
    allocator: str | None
    """``malloc`` or ``proxy_on_memory_allocate`` as Envoy picks it, if exported."""
    start: str | None
    """``_initialize`` or ``_start`` if exported."""
    start_section: bool
    """Whether a wasm start function runs at instantiation."""
    callbacks: tuple[str, ...]
    """The ``proxy_on_*`` functions exported."""
    toolchain: str | None
    """Who built it, from the ``producers`` section or telltale exports:
    ``Go``, ``TinyGo``, ``Rust``, ``AssemblyScript``, ``C++ (Emscripten)``..."""
    problems: tuple[str, ...]
    """Every reason the host refuses it; empty when it loads."""
    missing: tuple[str, ...]
    """The imports the host does not provide (``module.name``)."""

    @property
    def ok(self) -> bool:
        """Whether the host can load it."""
        return not self.problems

    @property
    def label(self) -> str:
        """``ABI 0.2.1``, ``ABI 0.2.1 (Higress 0_2_100)``, ``no ABI marker``."""
        if self.abi_version is None:
            return "no ABI marker"
        text = f"ABI {self.abi_version.value}"
        if self.vendor is not None:
            shown = VENDORS.get(self.vendor, self.vendor)
            if self.marker is not None and self.marker in VENDOR_MARKERS:
                shown += " " + self.marker.removeprefix("proxy_abi_version_")
            text += f" ({shown})"
        if self.forced:
            text += " (forced)"
        return text


def resolve_abi(choice: AbiChoice) -> tuple[AbiVersion, str | None] | None:
    """A forced ABI choice as ``(version, vendor)``; ``None`` stays ``None``.

    Raises:
        ValueError: not a known version or vendor profile.
    """
    if choice is None:
        return None
    if isinstance(choice, AbiVersion):
        return choice, None
    if choice in VENDORS:
        return next(v for v in VENDOR_MARKERS.values() if v[1] == choice)
    try:
        return AbiVersion(choice), None
    except ValueError:
        known = [v.value for v in AbiVersion] + sorted(VENDORS)
        raise ValueError(
            f"unknown ABI {choice!r}: use one of {', '.join(known)}"
        ) from None


def detect_abi(
    exports: wasm_binary.ModuleInfo,
) -> tuple[AbiVersion, str | None, str] | None:
    """``(version, vendor, marker)`` from the first marker a function export names.

    As cpp-host: export order decides; Higress's ``proxy_abi_version_0_2_100``
    means 0.2.1 with the ``higress`` profile.
    """
    standard = {v.marker: v for v in AbiVersion}
    for name, export in exports.exports.items():
        if export.kind != "func":
            continue
        if name in standard:
            return standard[name], None, name
        if name in VENDOR_MARKERS:
            version, vendor = VENDOR_MARKERS[name]
            return version, vendor, name
    return None


def host_provides(
    version: AbiVersion, vendor: str | None = None
) -> dict[str, Signature]:
    """The ``env`` functions wasmkit links for a module of this ABI."""
    return {
        **host_imports(version),
        **vendor_imports(vendor),
        **EXTRA_ENV_IMPORTS,
    }


def import_problem(
    spec: wasm_binary.ImportSpec, env: dict[str, Signature]
) -> str | None:
    """Why the host cannot link ``spec``, or ``None`` if it can."""
    sig = spec.signature
    if spec.module == "env":
        want = env.get(spec.name)
        if (
            spec.name == "proxy_get_buffer_status"
            and sig is not None
            and sig == env.get("proxy_set_buffer_bytes")
        ):
            # @solo-io/proxy-runtime 0.1.8 binds set_buffer_bytes to this name.
            return None
    elif spec.module in WASI_MODULES:
        want = WASI_IMPORTS.get(spec.name)
    else:
        return f"{spec.qualname} ({spec.kind})"
    if spec.kind != "func" or want is None:
        return f"{spec.qualname} ({spec.kind})"
    if sig != want:
        return f"{spec.qualname}: imported as {sig}, the host has {want}"
    return None


def _toolchain(info: wasm_binary.ModuleInfo) -> str | None:
    producers = info.producers
    if producers is not None:
        names = producers.names()
        if any("tinygo" in n for n in names):
            return "TinyGo"
        if "go" in names:
            return "Go"
        if "rust" in names or "rustc" in names:
            return "Rust"
        if any("emscripten" in n for n in names):
            return "C++ (Emscripten)"
        if "c++" in names or "c" in names or "c99" in names:
            return "C/C++"
        if names:
            return producers.language[0][0] if producers.language else names[0]
    exported = info.exports
    if "__rtti_base" in exported or {"__new", "__pin"} <= exported.keys():
        return "AssemblyScript"
    return None


def check_filter(
    info: wasm_binary.ModuleInfo,
    *,
    abi: AbiChoice = None,
    profile: str = "envoy",
) -> FilterCheck:
    """The ABI and compatibility verdict on a parsed module.

    Args:
        info: the module, from :func:`wasmkit.abi.wasm_binary.parse`.
        abi: force an ABI (a version, ``"0.2.1"``, or ``"higress"``) whatever
            marker the module exports, e.g. for a vendor marker wasmkit does
            not know.
        profile: ``envoy`` picks ``malloc`` before ``proxy_on_memory_allocate``
            as cpp-host does, ``spec`` the other way round.

    Raises:
        ValueError: ``abi`` is not a known version or profile.
    """
    found = detect_abi(info)
    forced = resolve_abi(abi)
    marker = found[2] if found else None
    if forced is not None:
        version: AbiVersion | None = forced[0]
        vendor = forced[1]
    elif found is not None:
        version, vendor = found[0], found[1]
    else:
        version, vendor = None, None
    funcs = info.func_exports()
    order = ALLOCATORS[::-1] if profile == "spec" else ALLOCATORS
    allocator = next((n for n in order if n in funcs), None)
    start = next((n for n in ("_initialize", "_start") if n in funcs), None)
    callbacks = tuple(
        n
        for n, e in info.exports.items()
        if e.kind == "func" and n.startswith("proxy_on_")
    )
    problems: list[str] = []
    if version is None:
        problems.append(
            "missing or unknown proxy-wasm ABI version: the module exports none "
            "of proxy_abi_version_0_1_0, _0_2_0, _0_2_1 (nor Higress's _0_2_100); "
            "FilterVm(abi=...) forces one"
        )
    if allocator is None:
        problems.append(
            "missing malloc: the module exports neither malloc nor "
            "proxy_on_memory_allocate, so the host cannot pass it data"
        )
    effective = version or AbiVersion.V0_2_1
    for name, export in info.exports.items():
        want = callback_signature(name, effective, vendor)
        if want is not None and export.kind == "func" and export.signature != want:
            problems.append(
                f"bad function signature: {name} is {export.signature}, "
                f"ABI {effective.value} wants {want}"
            )
    env = host_provides(effective, vendor)
    missing = []
    for spec in info.imports:
        problem = import_problem(spec, env)
        if problem is not None:
            missing.append(problem)
    if missing:
        problems.append(
            f"the host does not provide {len(missing)} import(s) "
            f"(ABI {effective.value}): " + ", ".join(missing)
        )
    return FilterCheck(
        abi_version=version,
        vendor=vendor,
        marker=marker,
        forced=forced is not None,
        allocator=allocator,
        start=start,
        start_section=info.has_start_section,
        callbacks=callbacks,
        toolchain=_toolchain(info),
        problems=tuple(problems),
        missing=tuple(missing),
    )


def precheck(
    data: bytes | bytearray | memoryview,
    name: str = "<bytes>",
    *,
    abi: AbiChoice = None,
    profile: str = "envoy",
) -> FilterCheck:
    """Check a module's bytes before compiling them; raise if it cannot load.

    Args:
        data: the wasm binary.
        name: what to call it in messages (a path).
        abi: force an ABI (see :func:`check_filter`).
        profile: ``envoy`` or ``spec`` (allocator order).

    Returns:
        The verdict, when the module can load.

    Raises:
        WasmFormatError: the bytes are not a well-formed wasm module.
        FilterLoadError: it is not a filter the host can load: the message
            lists every problem; ``.missing`` the imports the host lacks.
        ValueError: ``abi`` is not a known version or profile.
    """
    try:
        info = wasm_binary.parse(data)
    except WasmFormatError as exc:
        raise WasmFormatError(
            f"{name}: invalid wasm module: {exc}", offset=exc.offset
        ) from exc
    verdict = check_filter(info, abi=abi, profile=profile)
    if verdict.problems:
        raise FilterLoadError(
            f"{name}: " + "; ".join(verdict.problems), missing=verdict.missing
        )
    return verdict


def compile_gate(
    *, abi: AbiChoice = None, profile: str = "envoy"
) -> Callable[[bytes, str], None]:
    """:func:`precheck` as a ``check(binary, name)`` hook run before a compile.

    For ``wasmkit.host.vm.compile_module(..., check=compile_gate(abi=...))``:
    it raises as :func:`precheck` does and returns nothing.

    Raises:
        ValueError: ``abi`` is not a known version or profile (at once).
    """
    resolve_abi(abi)

    def gate(data: bytes, name: str) -> None:
        precheck(data, name, abi=abi, profile=profile)

    return gate
