"""Capability restriction, as Envoy's ``capability_restriction_config``.

Envoy's ``PluginConfig.capability_restriction_config.allowed_capabilities``
is a map keyed by ABI function names; proxy-wasm-cpp-host applies it when the
VM is created (``WasmBase::capabilityAllowed`` in ``include/proxy-wasm/wasm.h``,
``registerCallbacks`` and ``getFunctions`` in ``src/wasm.cc``):

* An empty map restricts nothing (every function allowed).
* Otherwise a ``proxy_*`` host function not named is linked to a stub that
  logs ``Attempted call to restricted proxy-wasm capability: proxy_<name>``
  at error level and returns ``InternalFailure`` (``exports.h``,
  ``_CREATE_PROXY_WASM_STUB``).
* A WASI function not named (``wasi_snapshot_preview1`` and
  ``wasi_unstable`` alike) logs ``Attempted call to restricted WASI
  capability: <name>`` and returns 76 (``__WASI_ENOTCAPABLE``); one without a
  result (``proc_exit``) only logs.
* A module callback not named (``proxy_on_vm_start``, ``proxy_on_log``, ...)
  is never called: Envoy treats it as not exported.
* Always allowed: the start functions (``_initialize``, ``_start``, ``main``,
  ``__main_void``), the allocator (``malloc``, ``proxy_on_memory_allocate``),
  the ABI marker, and ``pthread_equal`` / ``emscripten_notify_memory_growth``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from wasmkit.abi.constants import LogLevel, WasmResult
from wasmkit.abi.signatures import CALLBACKS, WASI_IMPORTS, Signature

WASI_ENOTCAPABLE = 76
"""What a restricted WASI function returns (``__WASI_ENOTCAPABLE``)."""

ALWAYS_ALLOWED = frozenset(
    {
        "_initialize",
        "_start",
        "main",
        "__main_void",
        "malloc",
        "proxy_on_memory_allocate",
        "pthread_equal",
        "emscripten_notify_memory_growth",
    }
)
"""Functions cpp-host links or calls whatever the restriction says."""

_RESTRICTABLE_CALLBACKS = frozenset(CALLBACKS) - ALWAYS_ALLOWED


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Which ABI functions a VM may use (Envoy's ``allowed_capabilities``).

    ``allowed`` ``None`` or empty: no restriction (Envoy's empty map).
    """

    allowed: frozenset[str] | None = None
    """The names allowed; ``None`` or empty: every one."""

    @classmethod
    def of(cls, names: Iterable[str] | None) -> Capabilities:
        """From ``allowed_capabilities`` as given (names, or a mapping's keys)."""
        if names is None:
            return cls()
        if isinstance(names, str):
            raise TypeError(
                "allowed_capabilities takes function names (a list or a "
                f"mapping), not the string {names!r}"
            )
        return cls(frozenset(str(n) for n in names))

    @property
    def restricted(self) -> bool:
        """Whether any function is restricted."""
        return bool(self.allowed)

    def allows(self, name: str) -> bool:
        """Whether ``name`` (``proxy_log``, ``fd_write``, ``proxy_on_tick``) may run."""
        return not self.allowed or name in ALWAYS_ALLOWED or name in self.allowed

    def callbacks_removed(self, exported: Iterable[str]) -> frozenset[str]:
        """The exported callbacks Envoy would not call."""
        return frozenset(
            n for n in exported if n in _RESTRICTABLE_CALLBACKS and not self.allows(n)
        )

    def unknown(self, known_imports: Iterable[str]) -> list[str]:
        """Allowed names that are no host function or callback (likely typos)."""
        known = set(known_imports) | set(CALLBACKS) | set(WASI_IMPORTS)
        return sorted(n for n in self.allowed or () if n not in known)


def proxy_stub(name: str, log: Callable[[LogLevel, str], None]) -> Callable[..., int]:
    """The stub linked for a restricted ``proxy_*`` host function."""
    message = f"Attempted call to restricted proxy-wasm capability: {name}"
    failure = int(WasmResult.INTERNAL_FAILURE)

    def stub(*args: int) -> int:
        log(LogLevel.ERROR, message)
        return failure

    return stub


def wasi_stub(
    name: str, sig: Signature, log: Callable[[LogLevel, str], None]
) -> Callable[..., int | None]:
    """The stub linked for a restricted WASI function."""
    message = f"Attempted call to restricted WASI capability: {name}"
    result = WASI_ENOTCAPABLE if sig.results else None

    def stub(*args: int) -> int | None:
        log(LogLevel.ERROR, message)
        return result

    return stub
