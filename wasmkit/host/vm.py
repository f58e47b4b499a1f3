"""Filter instances on wasmtime (with :mod:`wasmkit.host.engine`, the adapter).

These two are the only modules of wasmkit that import wasmtime. Two call paths
cross the Python/wasm boundary:

* the *public* path, through ``wasmtime.Func`` (about 15 µs a call into wasm and
  7 µs a host call on the development machine);
* the *fast* path, through wasmtime's unchecked C entry points
  (``wasmtime_func_call_unchecked`` and ``wasmtime_func_new_unchecked``, about
  1.5 µs and 0.4 µs), bound here against the exact wasmtime version pinned in
  ``pyproject.toml``. Both paths give identical results (tested).

Traps, deadlines and memory exhaustion become :class:`FilterTrapError` in
exactly one place, :meth:`WasmtimeVm.call`.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import wasmtime
from wasmtime import _ffi as ffi

from wasmkit.abi.constants import WASM_PAGE
from wasmkit.abi.signatures import Signature
from wasmkit.errors import ErrorKind, FilterLoadError, FilterTrapError
from wasmkit.host.engine import (
    ENGINE_SETTINGS,
    EPOCH_TICK_MS,
    MODULES_KEPT,
    WASMTIME_VERSION,
    CompiledModule,
    ExportSpec,
    ImportSpec,
    ModuleOrigin,
    _engine,
    _functype_sig,
    _start_ticker,
    compile_module,
    forget_compiled,
    read_binary,
)
from wasmkit.host.limits import Limits

__all__ = [
    "ENGINE_SETTINGS",
    "EPOCH_TICK_MS",
    "MODULES_KEPT",
    "WASMTIME_VERSION",
    "CompiledModule",
    "ExportSpec",
    "GuestExit",
    "HostFunction",
    "ImportSpec",
    "Limits",
    "ModuleOrigin",
    "WasmVm",
    "WasmtimeVm",
    "compile_module",
    "demangle",
    "forget_compiled",
    "read_binary",
]

HostFunction = Callable[..., int | None]
"""A host function: called with the guest's integer arguments, returns the result."""


class GuestExit(Exception):
    """Raised by a host function to stop the guest (``proc_exit``, ``abort``)."""

    def __init__(
        self, message: str, code: int | None = None, *, kind: ErrorKind = "trap"
    ) -> None:
        super().__init__(message)
        self.code = code
        self.kind: ErrorKind = kind


class WasmVm(Protocol):
    """What the host needs of a wasm engine instance."""

    def has_export(self, name: str) -> bool:
        """Whether the instance exports function ``name``."""
        ...

    def call(self, name: str, args: Sequence[int], *, context_id: int) -> int | None:
        """Call export ``name``; i32 results come back unsigned."""
        ...

    def memory_region(self) -> tuple[int, int]:
        """Address and size (bytes) of the guest's linear memory."""
        ...

    def close(self) -> None:
        """Release the instance."""
        ...


# --- the fast path's C bindings, our own prototypes on wasmtime's library ---


class _Raw(ctypes.Union):
    # Same layout as wasmtime_val_raw_t, read as unsigned for i32.
    _fields_ = [
        ("u32", ctypes.c_uint32),
        ("i64", ctypes.c_int64),
        ("pad", ctypes.c_uint8 * 16),
    ]


_UncheckedCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(_Raw),
    ctypes.c_size_t,
)


def _bind(name: str, restype: Any, argtypes: list[Any]) -> Any:
    fn = ffi.dll[name]
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_func_new_unchecked = _bind(
    "wasmtime_func_new_unchecked",
    None,
    [
        ctypes.c_void_p,
        ctypes.c_void_p,
        _UncheckedCallback,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ffi.wasmtime_func_t),
    ],
)
_func_call_unchecked = _bind(
    "wasmtime_func_call_unchecked",
    ctypes.c_void_p,
    [
        ctypes.c_void_p,
        ctypes.POINTER(ffi.wasmtime_func_t),
        ctypes.POINTER(_Raw),
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
    ],
)
_memory_data = _bind(
    "wasmtime_memory_data",
    ctypes.c_void_p,
    [ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_memory_t)],
)
_memory_data_size = _bind(
    "wasmtime_memory_data_size",
    ctypes.c_size_t,
    [ctypes.c_void_p, ctypes.POINTER(ffi.wasmtime_memory_t)],
)
_set_epoch_deadline = _bind(
    "wasmtime_context_set_epoch_deadline",
    None,
    [ctypes.c_void_p, ctypes.c_uint64],
)
_trap_new = _bind(
    "wasmtime_trap_new", ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_size_t]
)
_error_new = _bind("wasmtime_error_new", ctypes.c_void_p, [ctypes.c_char_p])
_DeadlineCallback = ctypes.CFUNCTYPE(
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8),
)
_set_deadline_callback = _bind(
    "wasmtime_store_epoch_deadline_callback",
    None,
    [ctypes.c_void_p, _DeadlineCallback, ctypes.c_void_p, ctypes.c_void_p],
)
_TICK_NS = EPOCH_TICK_MS * 1_000_000
_cpu_clock = time.thread_time_ns
"""The time limits' clock: CPU time of the thread running the guest, so a
busy machine does not make a filter run out of time."""
_caller_export_get = _bind(
    "wasmtime_caller_export_get",
    ctypes.c_bool,
    [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ffi.wasmtime_extern_t),
    ],
)


def c_api_addresses(names: Sequence[str]) -> dict[str, int]:
    """Addresses of wasmtime C API functions in the library the wheel loaded."""
    return {
        name: ctypes.cast(getattr(ffi.dll, name), ctypes.c_void_p).value or 0
        for name in names
    }


def c_struct_sizes() -> tuple[int, int]:
    """Sizes of ``wasmtime_memory_t`` and ``wasmtime_func_t`` in the wheel's API."""
    return ctypes.sizeof(ffi.wasmtime_memory_t), ctypes.sizeof(ffi.wasmtime_func_t)


def _valtypes(types: Sequence[str]) -> list[Any]:
    return [
        wasmtime.ValType.i64() if t == "i64" else wasmtime.ValType.i32() for t in types
    ]


def _trap_message(text: str, code: str | None) -> str:
    # wasmtime's text leads with the backtrace; the causes follow "Caused by:".
    _, sep, tail = text.partition("Caused by:")
    causes = []
    for line in tail.splitlines() if sep else []:
        line = line.strip()
        head, colon, rest = line.partition(": ")
        causes.append(rest if colon and head.isdigit() else line)
    causes = [c for c in causes if c]
    if causes:
        return "; ".join(reversed(causes))
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first or (code or "trap").lower().replace("_", " ")


_RUST_ESCAPES = {
    "$LT$": "<", "$GT$": ">", "$RF$": "&", "$BP$": "*", "$C$": ",",
    "$SP$": "@", "$u20$": " ", "$u27$": "'", "$u5b$": "[", "$u5d$": "]",
    "$u7b$": "{", "$u7d$": "}", "$u7e$": "~", "$u3b$": ";", "$u2b$": "+",
    "$u22$": '"',
}  # fmt: skip


def demangle(name: str) -> str:
    """Readable form of a legacy Rust (``_ZN...E``) symbol; others unchanged."""
    if not (name.startswith("_ZN") and name.endswith("E")):
        return name
    body, parts, pos = name[3:-1], [], 0
    while pos < len(body) and body[pos].isdigit():
        end = pos
        while body[end].isdigit():
            end += 1
        size = int(body[pos:end])
        parts.append(body[end : end + size])
        pos = end + size
    if pos != len(body) or not parts:
        return name
    if len(parts[-1]) == 17 and parts[-1].startswith("h"):
        parts.pop()  # the hash
    text = "::".join(p.removeprefix("_") if p.startswith("_$") else p for p in parts)
    for code, char in _RUST_ESCAPES.items():
        text = text.replace(code, char)
    return text.replace("..", "::")


_NEVER = 1 << 126
_clock = time.perf_counter_ns


class _NoFailure(Exception):
    # What the native caller raises, on a VM without one: never raised.
    pass


def _to_signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class _Frame:
    # The argument/result slots and the trap out-pointer of one call, viewed as
    # flat u32 and i64 arrays (slot k is u32[4k] / i64[2k]): item assignment
    # there makes no Python object per argument.
    __slots__ = ("buf", "i64", "size", "trap", "trapref", "u32")

    def __init__(self, slots: int) -> None:
        self.buf = (_Raw * slots)()
        self.size = slots
        self.u32 = (ctypes.c_uint32 * (4 * slots)).from_buffer(self.buf)
        self.i64 = (ctypes.c_int64 * (2 * slots)).from_buffer(self.buf)
        self.trap = ctypes.c_void_p()
        self.trapref = ctypes.byref(self.trap)


class _Export:
    # An export prepared for repeated calls on the fast path.
    __slots__ = (
        "all32",
        "busy",
        "frame",
        "func",
        "kinds",
        "native",
        "ref",
        "result",
        "sig",
    )

    def __init__(self, func: Any, sig: Signature) -> None:
        self.func = func
        self.sig = sig
        self.ref = ctypes.byref(func._func)
        self.kinds = tuple(t == "i32" for t in sig.params)
        self.all32 = all(self.kinds)
        self.result = sig.results[0] if sig.results else None
        self.frame = _Frame(max(len(sig.params), len(sig.results), 1))
        self.busy = False
        self.native: Any = None


def _native_params(sig: Signature) -> bytes | None:
    # One byte per parameter (1: i64) for the native core; None when it
    # cannot take them (floats, too many): the ctypes path does.
    if any(t not in ("i32", "i64") for t in sig.params) or len(sig.params) > 31:
        return None
    return bytes(t == "i64" for t in sig.params)


def _native_kinds(sig: Signature) -> bytes | None:
    # The parameters and one byte for the result, for the native trampoline;
    # None when it cannot take the signature (see _native_params, an i64
    # result).
    params = _native_params(sig)
    if params is None or (
        sig.results and (len(sig.results) > 1 or sig.results[0] != "i32")
    ):
        return None
    return params + bytes([bool(sig.results)])


def _native_export(core: Any, export: _Export) -> Any:
    # The native caller of an export, when the core can take its signature.
    sig = export.sig
    params = _native_params(sig)
    if params is None or (
        len(sig.results) > 1 or any(t not in ("i32", "i64") for t in sig.results)
    ):
        return None
    result = 0 if not sig.results else 1 if sig.results[0] == "i32" else 2
    return core.export(bytes(export.func._func), params, result)


class WasmtimeVm:
    """One instance of a module in its own store, with limits applied.

    Args:
        module: the compiled module.
        imports: one host function per entry of ``module.imports`` (all must be
            functions), in the same order.
        limits: time and memory limits.
        fast: use the unchecked C call path.
        native: the native core module (host/native.py) for the crossings of
            the fast path, or ``None`` for the ctypes ones.

    Raises:
        FilterLoadError: instantiation failed (a non-function import, a trap in
            the start section).
    """

    def __init__(
        self,
        module: CompiledModule,
        imports: Sequence[HostFunction],
        *,
        limits: Limits | None = None,
        fast: bool = True,
        native: Any = None,
    ) -> None:
        self.module = module
        self.limits = limits or Limits()
        self.fast = fast
        if self.limits.fuel is not None and not module.fuel:
            raise ValueError("module was compiled without fuel metering")
        if self.limits.fuel is None and self.limits.timeout_ms is not None:
            _start_ticker()
        if self.limits.startup_timeout_ms is not None:
            _start_ticker()
        self._store = wasmtime.Store(_engine(module.fuel))
        self._store.set_limits(
            memory_size=-1
            if self.limits.memory_bytes is None
            else self.limits.memory_bytes,
            table_elements=self.limits.table_elements,
        )
        self._ctx = ctypes.cast(self._store._context(), ctypes.c_void_p).value
        self._native = native if fast else None
        self._core: Any = None
        self._call_failed: type[Exception] = _NoFailure
        if self._native is not None:
            self._call_failed = self._native.CallFailed
            self._core = self._native.Core(
                self._ctx, self._overdue, self._bind_caller_memory, self._raise_in_guest
            )
        # At each epoch deadline (wall-clock ticks) the callback looks at the
        # CPU time the call has used: under its limit, the call goes on.
        self._timeout_exit: GuestExit | None = None
        self._cpu_deadline = _NEVER
        on_deadline = _DeadlineCallback(self._on_epoch_deadline)
        self._on_deadline = on_deadline
        _set_deadline_callback(
            ctypes.cast(self._store.ptr(), ctypes.c_void_p), on_deadline, None, None
        )
        self._keep: list[Any] = []
        self._pending: BaseException | None = None
        self._mem: Any = None
        self._depth = 0
        self.fuel_used = 0
        """Fuel (wasm instructions, roughly) the calls into the guest consumed
        so far; stays 0 unless the module was compiled for fuel metering."""
        self._fuel_armed = 0
        self._startup_call = True
        self._deadline = _NEVER
        self._funcs: dict[str, _Export] = {}
        # The memory's (address, size), re-checked after anything that may
        # have run wasm (a call, a host call's entry): see memory_region.
        self._region: tuple[int, int] | None = None
        self._stale = True
        startup = self.limits.startup_timeout_ms
        timeout = self.limits.timeout_ms
        self._startup_ticks = (
            1 << 62 if startup is None else math.ceil(startup / EPOCH_TICK_MS) + 1
        )
        self._ticks = (
            1 << 62 if timeout is None else math.ceil(timeout / EPOCH_TICK_MS) + 1
        )
        externs = []
        for spec, fn in zip(module.imports, imports, strict=True):
            if spec.kind != "func" or spec.signature is None:
                raise FilterLoadError(
                    f"{module.name}: imports {spec.kind} {spec.qualname}; "
                    "the host provides functions only",
                    missing=[spec.qualname],
                )
            externs.append(self._host_func(spec.signature, fn))
        self._arm(startup=True)
        if startup is not None:
            self._cpu_deadline_ns = _cpu_clock() + startup * 1_000_000
        try:
            self._instance = wasmtime.Instance(self._store, module._raw, externs)
        except (wasmtime.Trap, wasmtime.WasmtimeError, GuestExit) as exc:
            err = self._convert(self._take_timeout() or exc, "(start section)", 0)
            raise FilterLoadError(
                f"{module.name}: instantiation failed: {err}"
            ) from exc
        for name, item in self._instance.exports(self._store).items():
            if isinstance(item, wasmtime.Func):
                export = _Export(item, _functype_sig(item.type(self._store)))
                if self._core is not None:
                    export.native = _native_export(self._core, export)
                self._funcs[name] = export
            elif isinstance(item, wasmtime.Memory) and (
                self._mem is None or name == "memory"
            ):
                self._mem = item._memory
        self._region = None
        if self._core is not None:
            if self._mem is not None:
                self._core.set_memory(bytes(self._mem))
            if not module.fuel:
                timeout = self.limits.timeout_ms
                self._core.configure(
                    None if timeout is None else timeout * 1_000_000, self._ticks
                )

    @property
    def _deadline_ns(self) -> int:
        # When the running call is overdue (perf_counter_ns); host functions
        # check it, since the epoch ticker barely runs while they hold the GIL.
        if self._core is not None:
            value: int = self._core.deadline_ns
            return value
        return self._deadline

    @_deadline_ns.setter
    def _deadline_ns(self, value: int) -> None:
        self._deadline = value
        if self._core is not None:
            self._core.deadline_ns = value

    @property
    def _cpu_deadline_ns(self) -> int:
        # The thread CPU time (thread_time_ns) past which the call stops.
        if self._core is not None:
            value: int = self._core.cpu_deadline_ns
            return value
        return self._cpu_deadline

    @_cpu_deadline_ns.setter
    def _cpu_deadline_ns(self, value: int) -> None:
        self._cpu_deadline = value
        if self._core is not None:
            self._core.cpu_deadline_ns = value

    @property
    def core(self) -> Any:
        """The native core's state of this VM, or ``None`` (ctypes crossings)."""
        return self._core

    # -- host functions -------------------------------------------------------

    def _host_func(self, sig: Signature, fn: HostFunction) -> Any:
        ty = wasmtime.FuncType(_valtypes(sig.params), _valtypes(sig.results))
        if not self.fast:
            return wasmtime.Func(
                self._store, ty, self._public_trampoline(sig, fn), access_caller=True
            )
        kinds = _native_kinds(sig)
        if self._core is not None and kinds is not None:
            store_id, private = self._core.host_func(
                ctypes.cast(ty.ptr(), ctypes.c_void_p).value, fn, kinds
            )
            self._keep.append(ty)
            raw = ffi.wasmtime_func_t(store_id, private)
            return wasmtime.Func._from_raw(raw)
        callback = _UncheckedCallback(self._fast_trampoline(sig, fn))
        self._keep.append(callback)
        raw = ffi.wasmtime_func_t()
        _func_new_unchecked(
            self._ctx,
            ctypes.cast(ty.ptr(), ctypes.c_void_p),
            callback,
            None,
            None,
            ctypes.byref(raw),
        )
        self._keep.append(ty)
        return wasmtime.Func._from_raw(raw)

    def _public_trampoline(self, sig: Signature, fn: HostFunction) -> Any:
        unsigned = [t == "i32" for t in sig.params]
        has_result = bool(sig.results)

        def call(caller: Any, *args: int) -> int | None:
            self._stale = True
            if self._mem is None:
                mem = caller.get("memory")
                if isinstance(mem, wasmtime.Memory):
                    self._mem = mem._memory
                    self._region = None
            if _clock() > self._deadline_ns:
                self._overdue()
            fixed = [
                a & 0xFFFFFFFF if u else a for a, u in zip(args, unsigned, strict=True)
            ]
            result = fn(*fixed)
            return _to_signed32(result or 0) if has_result else None

        return call

    def _fast_trampoline(self, sig: Signature, fn: HostFunction) -> Callable[..., int]:
        # Generated per arity so that a host call costs one Python frame here.
        fields = ["u32" if t == "i32" else "i64" for t in sig.params]
        argv = ", ".join(f"a[{i}].{f}" for i, f in enumerate(fields))
        store = "a[0].u32 = r & 0xFFFFFFFF" if sig.results else "pass"
        src = (
            "def trampoline(env, caller, a, n):\n"
            "    try:\n"
            "        vm._stale = True\n"
            "        if clock() > vm._deadline:\n"
            "            vm._overdue()\n"
            "        if vm._mem is None:\n"
            "            vm._bind_caller_memory(caller)\n"
            f"        r = fn({argv})\n"
            f"        {store}\n"
            "        return 0\n"
            "    except BaseException as exc:\n"
            "        return vm._raise_in_guest(exc)\n"
        )
        scope: dict[str, Any] = {"vm": self, "fn": fn, "clock": _clock}
        exec(src, scope)
        trampoline: Callable[..., int] = scope["trampoline"]
        return trampoline

    def _bind_caller_memory(self, caller: int) -> None:
        item = ffi.wasmtime_extern_t()
        if _caller_export_get(caller, b"memory", 6, ctypes.byref(item)) and (
            item.kind == ffi.WASMTIME_EXTERN_MEMORY
        ):
            self._mem = item.of.memory
            self._region = None
            if self._core is not None:
                self._core.set_memory(bytes(self._mem))

    def _on_epoch_deadline(
        self, ctx: int, data: int, delta: Any, update: Any
    ) -> int | None:
        # Called by wasmtime in the guest's thread when the epoch deadline
        # passes: go on for the CPU time left, or stop the call.
        try:
            left = self._cpu_deadline_ns - _cpu_clock()
            if left > 0:
                delta[0] = max(1, -(-left // _TICK_NS))
                update[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
                return None
            self._timeout_exit = GuestExit(
                f"ran past {self.limits.describe(startup=self._startup_call)}",
                kind="timeout",
            )
        except BaseException as exc:  # never into C
            self._timeout_exit = GuestExit(f"host: {exc}")
        error: int = _error_new(b"wasmkit: time limit")
        return error

    def _take_timeout(self) -> GuestExit | None:
        # The time limit the epoch callback stopped the call for, once.
        stopped, self._timeout_exit = self._timeout_exit, None
        return stopped

    def _overdue(self) -> None:
        # The wall-clock trigger in host calls passed: a filter that keeps
        # calling the host past its CPU-time limit (the epoch could not stop
        # it in wasm) is stopped here, as a timeout; with CPU time left, the
        # trigger moves on by what is left.
        left = self._cpu_deadline_ns - _cpu_clock()
        if left > 0:
            self._deadline_ns = _clock() + left
            return
        self._deadline_ns = _NEVER  # nested allocator calls may finish
        startup = self._startup_call
        raise GuestExit(
            f"ran past {self.limits.describe(startup=startup)} (stopped in a host "
            "call)",
            kind="timeout",
        )

    def _raise_in_guest(self, exc: BaseException) -> int:
        self._pending = exc
        msg = f"host: {exc}".encode()
        trap: int = _trap_new(msg, len(msg))
        return trap

    # -- calls into the guest ---------------------------------------------------

    def has_export(self, name: str) -> bool:
        """Whether the instance exports function ``name``."""
        return name in self._funcs

    def export_signature(self, name: str) -> Signature | None:
        """The type of exported function ``name``, if any."""
        export = self._funcs.get(name)
        return None if export is None else export.sig

    def _arm(self, *, startup: bool = False) -> None:
        if self.module.fuel:
            fuel = self.limits.fuel if not startup else None
            self._fuel_armed = (1 << 63) - 1 if fuel is None else fuel
            self._store.set_fuel(self._fuel_armed)
            if fuel is not None:
                _set_epoch_deadline(self._ctx, 1 << 62)
                return
        _set_epoch_deadline(self._ctx, self._startup_ticks if startup else self._ticks)

    def call(
        self,
        name: str,
        args: Sequence[int],
        *,
        context_id: int = 0,
        startup: bool = False,
    ) -> int | None:
        """Call export ``name`` with integer arguments.

        Nested calls (the guest allocator, called while a host function runs)
        share the outer call's deadline.

        Returns:
            The result (i32 results unsigned), or ``None`` for no result.

        Raises:
            FilterTrapError: the guest trapped, exited, overran its time, or ran
                out of memory. ``kind`` says which.
            KeyError: no such export.
        """
        export = self._funcs[name]
        core = self._core
        if (
            core is not None
            and export.native is not None
            and not startup
            and self._depth == 0
            and core.arms
        ):
            # The whole call in C, which arms the deadlines at its depth 0
            # (nested calls share the outer call's).
            if core.depth == 0:
                self._startup_call = False
                self._timeout_exit = None
            try:
                return self._call_native(export, args)
            except (wasmtime.Trap, wasmtime.WasmtimeError, GuestExit) as exc:
                raise self._convert(
                    self._take_timeout() or exc, name, context_id
                ) from exc
        if self._depth == 0 and (core is None or core.depth == 0):
            self._startup_call = startup
            limits = self.limits
            limit = limits.startup_timeout_ms if startup else limits.timeout_ms
            if limits.fuel is not None and not startup:
                limit = None  # instructions, not time, bound this call
            self._deadline_ns = (
                _NEVER if limit is None else _clock() + limit * 1_000_000
            )
            self._cpu_deadline_ns = (
                _NEVER if limit is None else _cpu_clock() + limit * 1_000_000
            )
            self._timeout_exit = None
            if startup or self.module.fuel:
                self._arm(startup=startup)
            else:
                _set_epoch_deadline(self._ctx, self._ticks)
        self._depth += 1
        if core is not None:
            core.depth += 1  # the deadlines are armed here, not in C
        try:
            if export.native is not None:
                return self._call_native(export, args)
            if self.fast:
                return self._call_fast(export, args)
            return self._call_public(export.func, export.sig, args)
        except (wasmtime.Trap, wasmtime.WasmtimeError, GuestExit) as exc:
            self._stale = True  # the guest may have grown its memory since
            raise self._convert(self._take_timeout() or exc, name, context_id) from exc
        finally:
            self._depth -= 1
            if core is not None:
                core.depth -= 1
            self._stale = True
            if self._depth == 0 and self.module.fuel:
                self.fuel_used += self._fuel_armed - self._store.get_fuel()

    def _call_fast(self, export: _Export, args: Sequence[int]) -> int | None:
        kinds = export.kinds
        if len(args) != len(kinds):
            raise TypeError(f"expected {len(kinds)} arguments, got {len(args)}")
        # A preallocated frame, unless this export is already running.
        busy = export.busy
        frame = _Frame(export.frame.size) if busy else export.frame
        if export.all32:
            u32 = frame.u32
            for i, v in enumerate(args):
                u32[i << 2] = v & 0xFFFFFFFF
        else:
            for i, (is32, v) in enumerate(zip(kinds, args, strict=True)):
                if is32:
                    frame.u32[i << 2] = v & 0xFFFFFFFF
                else:
                    frame.i64[i << 1] = v
        trap = frame.trap
        trap.value = 0
        export.busy = True
        try:
            error = _func_call_unchecked(
                self._ctx, export.ref, frame.buf, frame.size, frame.trapref
            )
        finally:
            export.busy = busy
        if error:
            err = wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t))
            )
            self._reraise_pending()
            raise err
        if trap.value:
            trap_obj = wasmtime.Trap._from_ptr(
                ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t))
            )
            self._reraise_pending()
            raise trap_obj
        kind = export.result
        if kind is None:
            return None
        return frame.u32[0] if kind == "i32" else frame.i64[0]

    def _call_native(self, export: _Export, args: Sequence[int]) -> int | None:
        try:
            result: int | None = export.native(*args)
        except self._call_failed as failed:
            error, trap = failed.args
            self._reraise_pending()
            if error:
                raise wasmtime.WasmtimeError._from_ptr(
                    ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t))
                ) from None
            raise wasmtime.Trap._from_ptr(
                ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t))
            ) from None
        return result

    def _reraise_pending(self) -> None:
        exc, self._pending = self._pending, None
        if exc is not None:
            raise exc

    def _call_public(
        self, func: Any, sig: Signature, args: Sequence[int]
    ) -> int | None:
        fixed = [
            _to_signed32(v) if t == "i32" else v
            for t, v in zip(sig.params, args, strict=True)
        ]
        result = func(self._store, *fixed)
        if not sig.results:
            return None
        return int(result) & 0xFFFFFFFF if sig.results[0] == "i32" else int(result)

    def _convert(
        self, exc: BaseException, name: str, context_id: int
    ) -> FilterTrapError:
        backtrace: list[str] = []
        code_name: str | None = None
        kind: ErrorKind = "trap"
        if isinstance(exc, GuestExit):
            message = str(exc)
            kind = exc.kind
        elif isinstance(exc, wasmtime.Trap):
            code = exc.trap_code
            code_name = code.name if code is not None else None
            message = _trap_message(exc.message, code_name)
            for i, frame in enumerate(exc.frames):
                func = demangle(frame.func_name or f"<func {frame.func_index}>")
                backtrace.append(
                    f"#{i} {func} ({frame.module_name or 'module'}) "
                    f"@ {frame.module_offset:#x}"
                )
            if code_name in ("INTERRUPT", "OUT_OF_FUEL"):
                kind = "timeout"
                startup = self._startup_call and code_name == "INTERRUPT"
                message = f"ran past {self.limits.describe(startup=startup)}"
        else:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if kind == "trap" and self.memory_exhausted():
            kind = "memory"
            message = (
                f"out of memory: linear memory reached the "
                f"{self.limits.memory_bytes} byte limit ({message})"
            )
        where = f"{name} (context {context_id})"
        text = f"{where}: {message}"
        if backtrace:
            text += "\nwasm backtrace:\n  " + "\n  ".join(backtrace)
        return FilterTrapError(
            text,
            kind=kind,
            callback=name,
            context_id=context_id,
            trap_code=code_name,
            wasm_backtrace=backtrace,
        )

    # -- memory -----------------------------------------------------------------

    def memory_region(self) -> tuple[int, int]:
        """Address and size (bytes) of linear memory; ``(0, 0)`` without one."""
        if self._core is not None:
            found: tuple[int, int] = self._core.region()
            return found
        region = self._region
        if region is not None and not self._stale:
            return region
        mem = self._mem
        if mem is None:
            return 0, 0
        # Wasm may have run since the last look: memory can only have moved if
        # it grew, so the size (one C call) tells whether the address is current.
        ref = ctypes.byref(mem)
        size = _memory_data_size(self._ctx, ref)
        if region is None or region[1] != size:
            region = (_memory_data(self._ctx, ref) or 0, size)
            self._region = region
        self._stale = False
        return region

    def memory_seen(self) -> tuple[int, int]:
        """The memory's address and its size when last looked at.

        The address is current (memories do not move here); the size may have
        grown since, if wasm ran: a bounds check that fails against it asks
        :meth:`memory_region` before it refuses an access.
        """
        region = self._region
        if region is None or self._core is not None:
            return self.memory_region()
        return region

    def memory_exhausted(self) -> bool:
        """Whether a trap now is likely due to the memory limit.

        wasmtime reports a refused ``memory.grow`` to the guest only (it returns
        -1, and the guest then traps or exits), so the host infers it: memory is
        past half the limit, where an allocator's next growth step (often a
        doubling) no longer fits, or within a page of it.
        """
        cap = self.limits.memory_bytes
        if cap is None:
            return False
        size = self.memory_region()[1]
        return size + WASM_PAGE > cap or size > cap // 2

    def close(self) -> None:
        """Drop the instance and its store."""
        self._funcs.clear()
        self._mem = None
        if self._core is not None:
            self._core.set_memory(None)
        self._region = None
        self._keep.clear()

    def __enter__(self) -> WasmtimeVm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
