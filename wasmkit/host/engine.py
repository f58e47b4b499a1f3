"""Compiling modules: the wasmtime engines, compiled modules, the module cache.

With :mod:`wasmkit.host.vm` (the instances) this is the wasmtime adapter: the
only modules of wasmkit that import wasmtime. A module's code comes from this
process's last compiles of the same bytes, else from the compiled-module
cache on disk (:mod:`wasmkit.host.module_cache`), else from wasmtime.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import wasmtime

from wasmkit.abi.signatures import Signature
from wasmkit.errors import FilterLoadError, ModuleCacheWarning
from wasmkit.host import module_cache

WASMTIME_VERSION = "50.0.1"
"""The wasmtime-py release the fast path is written against."""

EPOCH_TICK_MS = 5
"""How often the engine's epoch advances (ms): the granularity of time limits."""

ModuleOrigin = Literal["compiled", "disk", "memory"]
"""Where a :class:`CompiledModule`'s code came from."""


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One import of a module."""

    module: str
    """Import module, e.g. ``env``."""
    name: str
    """Field name, e.g. ``proxy_log``."""
    kind: str
    """``func``, ``memory``, ``table`` or ``global``."""
    signature: Signature | None
    """The function type for ``func`` imports."""

    @property
    def qualname(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """One export of a module."""

    name: str
    """Export name."""
    kind: str
    """``func``, ``memory``, ``table`` or ``global``."""
    signature: Signature | None
    """The function type for ``func`` exports."""


class CompiledModule:
    """A compiled wasm module, reusable by many VMs.

    Attributes:
        imports: the module's imports in order.
        exports: the module's exports by name, in order.
        sha256: hex digest of the binary.
        size: the binary's size (bytes).
        origin: where the code came from: ``compiled`` (now, by wasmtime),
            ``disk`` (the compiled-module cache) or ``memory`` (this process had
            it already).
        load_ms: how long getting the code took (ms): the compile, or reading
            it back.
    """

    def __init__(
        self,
        raw: Any,
        binary: bytes,
        fuel: bool,
        name: str,
        *,
        sha256: str | None = None,
        origin: ModuleOrigin = "compiled",
        load_ms: float = 0.0,
    ) -> None:
        self._raw = raw
        self.fuel = fuel
        self.name = name
        self.size = len(binary)
        self.sha256 = sha256 or hashlib.sha256(binary).hexdigest()
        self.origin: ModuleOrigin = origin
        self.load_ms = load_ms
        self.imports = [_import_spec(i) for i in raw.imports]
        self.exports = {e.name: _export_spec(e) for e in raw.exports}

    def _again(self, name: str, load_ms: float) -> CompiledModule:
        twin = copy.copy(self)
        twin.name = name
        twin.origin = "memory"
        twin.load_ms = load_ms
        return twin


def _valtype(ty: Any) -> str:
    text = str(ty)
    return {"i32": "i32", "i64": "i64", "f32": "f32", "f64": "f64"}.get(text, text)


def _functype_sig(ty: Any) -> Signature:
    return Signature(
        tuple(_valtype(p) for p in ty.params), tuple(_valtype(r) for r in ty.results)
    )


def _kind(ty: Any) -> str:
    if isinstance(ty, wasmtime.FuncType):
        return "func"
    if isinstance(ty, wasmtime.MemoryType):
        return "memory"
    if isinstance(ty, wasmtime.TableType):
        return "table"
    return "global"


def _import_spec(imp: Any) -> ImportSpec:
    ty = imp.type
    sig = _functype_sig(ty) if isinstance(ty, wasmtime.FuncType) else None
    return ImportSpec(imp.module, imp.name or "", _kind(ty), sig)


def _export_spec(exp: Any) -> ExportSpec:
    ty = exp.type
    sig = _functype_sig(ty) if isinstance(ty, wasmtime.FuncType) else None
    return ExportSpec(exp.name, _kind(ty), sig)


_engines: dict[bool, Any] = {}
_engine_lock = threading.Lock()
_ticker_started = False

_MEMORY_RESERVATION = 1 << 32

ENGINE_SETTINGS: dict[str, object] = {
    "epoch_interruption": True,
    "memory_reservation": _MEMORY_RESERVATION,
    "memory_may_move": False,
}
"""The engine configuration (besides fuel): part of the compiled-module key."""


def _engine(fuel: bool) -> Any:
    with _engine_lock:
        engine = _engines.get(fuel)
        if engine is None:
            config = wasmtime.Config()
            config.epoch_interruption = True
            config.consume_fuel = fuel
            # A 32-bit memory reserves its whole 4 GiB and never moves when it
            # grows: its address stays valid, only its size changes (see
            # WasmtimeVm.memory_seen).
            config.memory_reservation = _MEMORY_RESERVATION
            config.memory_may_move = False
            engine = wasmtime.Engine(config)
            _engines[fuel] = engine
        return engine


def _start_ticker() -> None:
    global _ticker_started
    with _engine_lock:
        if _ticker_started:
            return
        _ticker_started = True

    def tick() -> None:
        event = threading.Event()
        while True:
            event.wait(EPOCH_TICK_MS / 1000)
            for engine in list(_engines.values()):
                engine.increment_epoch()

    threading.Thread(target=tick, name="wasmkit-epoch", daemon=True).start()


MODULES_KEPT = 8
"""Compiled modules a process keeps in memory for the next load of the same bytes."""

_kept: OrderedDict[tuple[str, bool], CompiledModule] = OrderedDict()
_kept_lock = threading.Lock()


def compile_module(
    source: bytes | str | os.PathLike[str],
    *,
    fuel: bool = False,
    check: Callable[[bytes, str], None] | None = None,
    timeout_s: float | None = None,
) -> CompiledModule:
    r"""Compile a module from wasm bytes, WAT text, or a ``.wasm`` / ``.wat`` path.

    The code comes from this process's last compiles of the same bytes, else
    from the compiled-module cache on disk (:mod:`wasmkit.host.module_cache`),
    else from wasmtime, which compiles it (and the cache keeps it).

    Args:
        source: the binary, WAT text (``str`` or bytes not starting with
            ``\\0asm``), or a path.
        fuel: compile for fuel metering (``Limits.fuel``).
        check: called with the binary and its name before wasmtime compiles
            it (not when the code comes from a cache); it raises to refuse
            the module without paying for the compile.
        timeout_s: how long the compile may take (s); past it the load fails
            (the compile itself finishes in the background and its code is
            kept in the cache, so a later load is quick).

    Raises:
        FilterLoadError: the file is missing or the module is invalid.
    """
    started = time.perf_counter()
    name, binary = read_binary(source)
    digest = hashlib.sha256(binary).hexdigest()
    with _kept_lock:
        known = _kept.get((digest, fuel))
        if known is not None:
            _kept.move_to_end((digest, fuel))
    if known is not None:
        return known._again(name, (time.perf_counter() - started) * 1000)
    settings = {
        "wasmtime": WASMTIME_VERSION,
        "wasmtime_py": getattr(wasmtime, "__version__", ""),
        "fuel": fuel,
        **ENGINE_SETTINGS,
    }
    entry = module_cache.key(digest, settings)
    raw = _from_disk(entry, fuel)
    origin: ModuleOrigin = "disk"
    if raw is None:
        origin = "compiled"
        if check is not None:
            check(binary, name)
        raw = _compile(binary, name, fuel, entry, timeout_s)
    module = CompiledModule(
        raw,
        binary,
        fuel,
        name,
        sha256=digest,
        origin=origin,
        load_ms=(time.perf_counter() - started) * 1000,
    )
    with _kept_lock:
        _kept[(digest, fuel)] = module
        while len(_kept) > MODULES_KEPT:
            _kept.popitem(last=False)
    return module


def _compile(
    binary: bytes, name: str, fuel: bool, entry: str, timeout_s: float | None
) -> Any:
    # wasmtime cannot stop a compile: it runs in a thread (the C call releases
    # the GIL) that is waited for at most ``timeout_s``.
    done = threading.Event()
    box: list[Any] = []

    def work() -> None:
        try:
            raw = wasmtime.Module(_engine(fuel), binary)
            module_cache.write(entry, raw.serialize())
            box.append(raw)
        except BaseException as exc:  # handed to the caller
            box.append(exc)
        finally:
            done.set()

    if timeout_s is None:
        work()
    else:
        threading.Thread(target=work, name="wasmkit-compile", daemon=True).start()
        if not done.wait(timeout_s):
            raise FilterLoadError(
                f"{name}: compiling the module took longer than {timeout_s:g} s "
                "(Limits.compile_timeout_ms); it goes on in the background and "
                "is cached when done"
            )
    result = box[0]
    if isinstance(result, wasmtime.WasmtimeError):
        raise FilterLoadError(f"{name}: invalid wasm module: {result}") from result
    if isinstance(result, BaseException):
        raise result
    return result


def _from_disk(entry: str, fuel: bool) -> Any:
    try:
        payload = module_cache.read(entry)
    except module_cache.Corrupt as exc:
        warnings.warn(f"{exc}; compiling the module again", ModuleCacheWarning, 3)
        return None
    if payload is None:
        return None
    try:
        return wasmtime.Module.deserialize(_engine(fuel), payload)
    except wasmtime.WasmtimeError as exc:
        module_cache.discard(entry)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        warnings.warn(
            f"compiled-module cache entry {entry[:16]} was made for another "
            f"engine ({first}); compiling the module again",
            ModuleCacheWarning,
            3,
        )
        return None


def forget_compiled() -> None:
    """Drop the compiled modules this process keeps (the disk cache stays)."""
    with _kept_lock:
        _kept.clear()


def read_binary(source: bytes | str | os.PathLike[str]) -> tuple[str, bytes]:
    r"""The name and wasm binary of ``source`` (WAT text is assembled, not compiled).

    Raises:
        FilterLoadError: a path that cannot be read, or neither ``\0asm`` nor
            valid WAT text.
    """
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and not source.lstrip().startswith("(")
    ):
        path = Path(source)
        name = str(path)
        try:
            data: bytes | str = path.read_bytes()
        except OSError as exc:
            raise FilterLoadError(f"cannot read filter {path}: {exc}") from exc
    else:
        data = source
        name = "<wat>" if isinstance(source, str) else "<bytes>"
    if isinstance(data, bytes) and not data.startswith(b"\0asm"):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FilterLoadError(
                f"{name}: not a wasm binary (no \\0asm header) nor WAT text"
            ) from exc
    if isinstance(data, str):
        try:
            return name, bytes(wasmtime.wat2wasm(data))
        except wasmtime.WasmtimeError as exc:
            raise FilterLoadError(f"{name}: invalid wasm module: {exc}") from exc
    return name, bytes(data)
