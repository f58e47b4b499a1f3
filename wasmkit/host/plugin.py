"""A filter VM and its plugins: start-up as Envoy does it, calls, trace, logs."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal, cast

from wasmkit.abi import pairs
from wasmkit.abi.check import compile_gate, resolve_abi
from wasmkit.abi.constants import (
    VENDOR_MARKERS,
    AbiVersion,
    BufferType,
    LogLevel,
    MapType,
    MetricType,
    PeerType,
    StreamType,
    WasmResult,
)
from wasmkit.abi.signatures import (
    EXTRA_ENV_IMPORTS,
    WASI_IMPORTS,
    WASI_MODULES,
    Signature,
    callback_signature,
    host_imports,
    vendor_imports,
)
from wasmkit.errors import FilterLoadError, FilterStartError, FilterTrapError
from wasmkit.host import capabilities, higress, native, properties
from wasmkit.host import imports as host_imports_mod
from wasmkit.host.callouts import Callout, Responder, table_responder
from wasmkit.host.connection_manager import (
    ENVOY_DEFAULTS,
    ConnectionManager,
    UpstreamReset,
)
from wasmkit.host.context import (
    Context,
    HttpContext,
    LogRecord,
    RootContext,
    TraceEvent,
)
from wasmkit.host.events import VmEvents
from wasmkit.host.failure import (
    RELOAD_BACKOFF_MS,
    FailurePolicy,
    ReloadBackoff,
    VmFailure,
    resolve_policy,
)
from wasmkit.host.grpc import GrpcResponder
from wasmkit.host.memory import GuestMemory
from wasmkit.host.message import Connection, HeaderPairs, HttpMessage
from wasmkit.host.metrics import Metrics
from wasmkit.host.properties import StreamInfo
from wasmkit.host.quotas import Budget
from wasmkit.host.scheduler import Scheduler
from wasmkit.host.shared import SharedState
from wasmkit.host.vm import (
    CompiledModule,
    GuestExit,
    HostFunction,
    Limits,
    WasmtimeVm,
    compile_module,
)
from wasmkit.host.wasi import Wasi
from wasmkit.progress import Progress

Profile = Literal["envoy", "spec"]

DEFAULT_EPOCH_NS = 1_700_000_000_000_000_000
"""Where the virtual wall clock starts: 2023-11-14T22:13:20Z (ns)."""


MONOTONIC_START_NS = 1_000_000_000
"""Where the virtual monotonic clock starts (ns)."""


class VirtualClock:
    """The host's clock: moves only when told to, so runs are reproducible.

    Args:
        start_ns: wall-clock start (ns since the Unix epoch).
    """

    def __init__(self, start_ns: int = DEFAULT_EPOCH_NS) -> None:
        self._start = start_ns
        self._elapsed = 0

    def now_ns(self) -> int:
        """Wall-clock time (ns since the epoch)."""
        return self._start + self._elapsed

    def monotonic_ns(self) -> int:
        """Monotonic time (ns): an "uptime" that starts at one second.

        Never zero: the Go runtime treats a zero monotonic clock as fatal.
        """
        return MONOTONIC_START_NS + self._elapsed

    def advance(self, ms: float) -> None:
        """Move time forward by ``ms`` milliseconds.

        Prefer ``FilterVm.advance``, which also fires the ticks and replies due
        on the way.
        """
        if ms < 0:
            raise ValueError("time cannot go backwards")
        self._elapsed += int(ms * 1_000_000)

    def set_ns(self, now_ns: int) -> None:
        """Move the wall clock to ``now_ns``; never backwards."""
        if now_ns < self.now_ns():
            raise ValueError("time cannot go backwards")
        self._elapsed = now_ns - self._start


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One plugin (root context) of a VM, as Envoy's plugin configuration."""

    root_id: str = ""
    """The root id the filter registered its root context under."""
    configuration: bytes = b""
    """Plugin configuration bytes, read by the filter in ``on_configure``."""
    name: str = ""
    """Plugin name (property ``plugin_name``); defaults to the root id."""
    fail_open: bool = False
    """Envoy's deprecated ``fail_open: true``: on a filter failure the stream
    goes on without the filter, and so do later streams (unlike
    ``failure_policy="fail_open"``, whose failing stream gets the 503)."""
    allow_on_headers_stop_iteration: bool = False
    """Envoy's knob: Pause on headers stops only the headers, not the body."""
    failure_policy: FailurePolicy | str | None = None
    """Envoy's ``failure_policy``: ``fail_closed`` (the default), ``fail_open``
    or ``fail_reload`` (see :mod:`wasmkit.host.failure`); ``None``:
    ``fail_closed``, or ``fail_open`` with ``fail_open=True``."""
    reload_backoff_ms: int = RELOAD_BACKOFF_MS
    """``fail_reload``: Envoy's ``reload_config.backoff.base_interval`` (ms)."""

    def __post_init__(self) -> None:
        policy = resolve_policy(self.failure_policy, self.fail_open)
        if self.reload_backoff_ms <= 1:
            raise ValueError(
                f"reload_backoff_ms must be over 1 ms, not {self.reload_backoff_ms}"
            )
        object.__setattr__(self, "failure_policy", policy)

    @property
    def policy(self) -> FailurePolicy:
        """The failure policy in force (``failure_policy`` resolved)."""
        return cast("FailurePolicy", self.failure_policy or "fail_closed")

    @property
    def display_name(self) -> str:
        """``name``, or the root id, or ``wasmkit``."""
        return self.name or self.root_id or "wasmkit"


@functools.cache
def _callback_arg_names(name: str, count: int) -> tuple[str, ...]:
    known = {
        "proxy_on_context_create": ("context_id", "parent_context_id"),
        "proxy_on_vm_start": ("context_id", "vm_configuration_size"),
        "proxy_on_configure": ("context_id", "plugin_configuration_size"),
        "proxy_validate_configuration": ("context_id", "plugin_configuration_size"),
        "proxy_on_request_headers": ("context_id", "num_headers", "end_of_stream"),
        "proxy_on_response_headers": ("context_id", "num_headers", "end_of_stream"),
        "proxy_on_request_body": ("context_id", "body_size", "end_of_stream"),
        "proxy_on_response_body": ("context_id", "body_size", "end_of_stream"),
        "proxy_on_request_trailers": ("context_id", "num_trailers"),
        "proxy_on_response_trailers": ("context_id", "num_trailers"),
        "proxy_on_http_call_response": (
            "context_id",
            "token",
            "num_headers",
            "body_size",
            "num_trailers",
        ),
        "proxy_on_queue_ready": ("context_id", "queue_id"),
        "proxy_on_downstream_data": ("context_id", "data_size", "end_of_stream"),
        "proxy_on_upstream_data": ("context_id", "data_size", "end_of_stream"),
        "proxy_on_downstream_connection_close": ("context_id", "peer_type"),
        "proxy_on_upstream_connection_close": ("context_id", "peer_type"),
        "proxy_on_foreign_function": ("context_id", "function_id", "data_size"),
        "proxy_on_grpc_receive_initial_metadata": (
            "context_id",
            "token",
            "num_elements",
        ),
        "proxy_on_grpc_receive": ("context_id", "token", "message_size"),
        "proxy_on_grpc_receive_trailing_metadata": (
            "context_id",
            "token",
            "num_elements",
        ),
        "proxy_on_grpc_close": ("context_id", "token", "status"),
        "malloc": ("size",),
        "proxy_on_memory_allocate": ("size",),
    }
    names = known.get(name, ("context_id",) if name.startswith("proxy_on_") else ())
    return tuple(names[:count]) + tuple(f"arg{i}" for i in range(len(names), count))


def _enum_names(enum: type[IntEnum]) -> Callable[[int], str]:
    table = {int(m): m.name.lower() for m in enum}
    return lambda v: table.get(v) or str(v)


_ENUMS: dict[str, Callable[[int], str]] = {
    "level": _enum_names(LogLevel),
    "map_type": _enum_names(MapType),
    "buffer_type": _enum_names(BufferType),
    "stream_type": _enum_names(StreamType),
    "metric_type": _enum_names(MetricType),
}
_STATUS_NAMES = {int(m): m.name for m in WasmResult}


class FilterVm:
    """A filter module running in one wasmtime instance, with its plugins.

    Start-up follows Envoy: the module is instantiated (its start section runs),
    then ``_initialize`` (with ``main`` / ``__main_void``) or ``_start``; each
    plugin added gets a root context: ``proxy_on_context_create``,
    ``proxy_on_vm_start`` with the VM configuration, ``proxy_on_configure`` with
    its plugin configuration. Context ids count from 1 per VM.

    Args:
        module: a compiled module, wasm bytes, WAT text, or a path.
        vm_id: the VM id (property ``plugin_vm_id``).
        vm_configuration: VM configuration bytes (``on_vm_start``).
        limits: time and memory limits per callback.
        fast: use wasmtime's unchecked call path.
        host: ``native`` (the C core of host/native.py makes the crossings
            of the fast path), ``python`` (the pure-Python reference host) or
            ``auto``; ``None`` reads ``WASMKIT_HOST`` (default ``auto``:
            native where it builds).
        profile: ``envoy`` (default) or ``spec`` where the two differ.
        log_level: level below which the filter's logs are dropped and which
            ``proxy_get_log_level`` reports.
        seed: seed of the guest's random numbers.
        clock: the virtual clock (a new one by default).
        trace: record every callback and host call.
        properties: property overrides, ``{"a.b": value}``.
        environment: the VM's environment variables, as Envoy's
            ``vm_config.environment_variables.key_values``: what the guest
            reads through WASI ``environ_get``. The host's own environment
            stays invisible unless named in ``host_env_keys``.
        host_env_keys: names of this process's environment variables the
            guest sees too (``environment_variables.host_env_keys``; an unset
            one is left out, as Envoy does).
        environ: the older name of ``environment``.
        responder: answers HTTP callouts: a function of a ``Callout`` or a
            table keyed by cluster (see :mod:`wasmkit.host.callouts`).
        clusters: the cluster names callouts may use (default: the table's).
        grpc_responder: answers gRPC callouts: a function of a ``GrpcRequest``
            or a table keyed by cluster (see :mod:`wasmkit.host.grpc`).
        shared: shared data and queues, to share between VMs.
        node: the Envoy node (``id``, ``cluster``, ``metadata``...), read as
            ``node.*`` / ``xds.node.*``.
        scheduler: timed events, shared between the VMs of a :class:`Proxy`.
        abi: force the ABI (``"0.1.0"``, ``"0.2.0"``, ``"0.2.1"``, an
            :class:`AbiVersion`, or ``"higress"`` for 0.2.1 with Higress's host
            functions) instead of the module's marker; a module without a
            known marker then loads too.
        redis_responder: answers Higress Redis calls: a function of a
            ``RedisCall`` or a table keyed by cluster (see
            :mod:`wasmkit.host.higress`).
        allowed_capabilities: Envoy's ``capability_restriction_config``: the
            ABI functions (``proxy_log``, ``fd_write``, ``proxy_on_tick``...)
            the filter may use; a restricted host call logs Envoy's error and
            fails, a restricted callback is never called (see
            :mod:`wasmkit.host.capabilities`). ``None`` or empty: no
            restriction.

    Raises:
        FilterLoadError: the module is invalid, declares no ABI version, has no
            allocator, imports what the host lacks, or fails to start.
    """

    def __init__(
        self,
        module: CompiledModule | bytes | str | os.PathLike[str],
        *,
        vm_id: str = "",
        vm_configuration: bytes | str = b"",
        limits: Limits | None = None,
        fast: bool = True,
        profile: Profile = "envoy",
        log_level: LogLevel | str = LogLevel.INFO,
        seed: int = 0,
        clock: VirtualClock | None = None,
        trace: bool = True,
        properties: Mapping[str, properties.PropertyValue] | None = None,
        environ: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        host_env_keys: Iterable[str] = (),
        responder: Responder | Mapping[str, Any] | None = None,
        clusters: Iterable[str] | None = None,
        grpc_responder: GrpcResponder | Mapping[str, Any] | None = None,
        shared: SharedState | None = None,
        node: Mapping[str, Any] | None = None,
        scheduler: Scheduler | None = None,
        abi: AbiVersion | str | None = None,
        redis_responder: higress.RedisResponder | Mapping[str, Any] | None = None,
        allowed_capabilities: Iterable[str] | None = None,
        host: str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.capabilities = capabilities.Capabilities.of(allowed_capabilities)
        """What the filter may use (Envoy's ``allowed_capabilities``)."""
        if not isinstance(module, CompiledModule):
            # The ABI and imports are checked before wasmtime compiles anything.
            compile_ms = self.limits.compile_timeout_ms
            module = compile_module(
                module,
                fuel=self.limits.fuel is not None,
                check=compile_gate(abi=abi, profile=profile),
                timeout_s=None if compile_ms is None else compile_ms / 1000,
            )
        self.module = module
        self.vm_id = vm_id
        self.vm_configuration = (
            vm_configuration.encode()
            if isinstance(vm_configuration, str)
            else vm_configuration
        )
        self.fast = fast
        self.native = native.resolve(host) if fast else None
        """The native core module in use, or ``None`` (pure-Python host)."""
        if profile not in ("envoy", "spec"):
            raise ValueError(f"profile must be 'envoy' or 'spec', not {profile!r}")
        self.profile: Profile = profile
        self.log_level = (
            LogLevel[log_level.upper()]
            if isinstance(log_level, str)
            else LogLevel(log_level)
        )
        self.seed = seed
        self.request_ids = random.Random(seed)
        """Draws the connection manager's ``x-request-id`` values (seeded, so
        replays repeat; apart from the guest's own random numbers)."""
        self.clock = clock or VirtualClock()
        self.tracing = trace
        self.overrides = _parse_overrides(properties)
        node_info = {
            "id": "wasmkit",
            "cluster": "wasmkit",
            "metadata": {},
            **(node or {}),
        }
        xds = {
            "node": node_info,
            "cluster_name": "upstream",
            "route_name": "default",
            "virtual_host_name": "default",
            "listener_direction": 1,  # INBOUND
            "route_metadata": {"filter_metadata": {}},
            "cluster_metadata": {"filter_metadata": {}},
        }
        self._static_properties: dict[str, Any] = {
            "plugin_vm_id": vm_id,
            "xds": xds,
            # The names Envoy used before the xds.* group, still read by filters.
            "node": node_info,
            "cluster_name": xds["cluster_name"],
            "route_name": xds["route_name"],
            "listener_direction": xds["listener_direction"],
            "route_metadata": xds["route_metadata"],
            "cluster_metadata": xds["cluster_metadata"],
            "metadata": {"filter_metadata": {}},  # dynamic metadata
        }
        if environ is not None and environment is not None:
            raise ValueError("give environment or environ (its older name), not both")
        self.environ = vm_environment(
            environment if environment is not None else environ, host_env_keys
        )
        """The guest's environment variables (WASI ``environ_get``)."""
        self.foreign_functions: dict[str, Callable[[bytes], bytes]] = dict(
            host_imports_mod.BUILTIN_FOREIGN
        )
        self.abi_version, self.vendor = _detect_abi(module, abi)
        """The ABI used, and the vendor profile (``"higress"``) or ``None``."""
        exported = frozenset(
            name for name, export in module.exports.items() if export.kind == "func"
        )
        self.exported = exported - self.capabilities.callbacks_removed(exported)
        """The functions the module exports (callbacks it does not are skipped),
        less the callbacks ``allowed_capabilities`` restricts."""
        self.allocator = _allocator(module, profile)
        _check_callbacks(module, self.abi_version, self.vendor)
        self._bindings = self._resolve_imports()
        self.logs: list[LogRecord] = []
        self.trace: list[TraceEvent] = []
        self.stream_info: dict[int, StreamInfo] = {}
        """Envoy's stream info per context id (timing, details, flags), where
        one was given (the driver, a replayed exchange)."""
        self.next_stream_info: StreamInfo | None = None
        """Stream info the next HTTP context created takes (a replay sets it
        from the captured exchange before the stream starts)."""
        self.budget = Budget()
        """What the filter made the host keep in this window (quotas)."""
        self.plugins: list[Plugin] = []
        self.failed: FilterTrapError | None = None
        self.failure: VmFailure | None = None
        """Where the VM failed (``failed`` with the callback and flow)."""
        self.flow: int | None = None
        """The replayed flow running now (set by the replay loops), named
        when the VM fails on it."""
        self._backoff: ReloadBackoff | None = None
        self.out: Any = None
        self.call_data: bytes | None = None
        self.finished_roots: list[RootContext] = []
        self._quirks: list[str] = []
        self.current_callback = ""
        self.shared = shared if shared is not None else SharedState()
        if responder is not None and not callable(responder):
            responder = table_responder(responder)
        self.events = VmEvents(self, responder, clusters, scheduler)
        self.higress = higress.Higress(self, redis_responder)
        """Higress state: Redis calls, unemulated calls (see ``host.higress``)."""
        self.events.set_grpc_responder(grpc_responder)
        self._start()
        for name in self.capabilities.unknown(
            spec.name for spec in self.module.imports
        ):
            self.log_host(
                LogLevel.WARN,
                f"allowed_capabilities: {name!r} is no proxy-wasm or WASI "
                "function this module uses or Envoy knows; it allows nothing",
            )
        self.loaded_ns = self.clock.monotonic_ns()
        """When the instance was last loaded (virtual monotonic ns)."""

    # -- loading ------------------------------------------------------------------

    def _resolve_imports(self) -> list[tuple[str, Signature, Callable[..., Any]]]:
        env = {
            **host_imports(self.abi_version),
            **vendor_imports(self.vendor),
            **EXTRA_ENV_IMPORTS,
        }
        bindings: list[tuple[str, Signature, Callable[..., Any]]] = []
        missing: list[str] = []
        for spec in self.module.imports:
            sig = spec.signature
            want: Signature | None = None
            impl: Callable[..., Any] | None = None
            if spec.module == "env":
                want = env.get(spec.name)
                impl = host_imports_mod.lookup(spec.name) if want else None
                if want and self.vendor == "higress":
                    impl = higress.lookup(spec.name) or impl
                if (
                    spec.name == "proxy_get_buffer_status"
                    and sig is not None
                    and sig == env["proxy_set_buffer_bytes"]
                ):
                    # @solo-io/proxy-runtime 0.1.8 binds its set_buffer_status
                    # (really set_buffer_bytes) to this name.
                    want, impl = sig, host_imports_mod.set_buffer_bytes
            elif spec.module in WASI_MODULES:
                want = WASI_IMPORTS.get(spec.name)
                impl = None if want is None else _wasi_placeholder(spec.name)
            if spec.kind != "func" or want is None or impl is None:
                missing.append(f"{spec.qualname} ({spec.kind})")
            elif sig != want:
                missing.append(
                    f"{spec.qualname}: imported as {sig}, the host has {want}"
                )
            else:
                bindings.append((spec.qualname, want, impl))
        if missing:
            raise FilterLoadError(
                f"{self.module.name}: the host does not provide "
                f"{len(missing)} import(s) (ABI {self.abi_version.value}): "
                + ", ".join(missing),
                missing=missing,
            )
        return bindings

    def _link(self) -> list[HostFunction]:
        funcs: list[HostFunction] = []
        wasi = self.wasi.functions()
        caps = self.capabilities
        for qualname, _sig, impl in self._bindings:
            module, name = qualname.split(".", 1)
            if module in WASI_MODULES:
                fn: HostFunction = wasi[name]
                params = [f"a{i}" for i in range(len(_sig.params))]
                if not caps.allows(name):
                    fn = capabilities.wasi_stub(name, _sig, self.log_host)
            else:
                fn = _bind(impl, self, name)
                if self.native is not None:
                    fn = (
                        self.native.host_call(
                            name, self, self.mem, fn, HttpContext, AbiVersion.V0_1_0
                        )
                        or fn
                    )
                params = list(inspect.signature(impl).parameters)[1:]
                if name.startswith("proxy_") and not caps.allows(name):
                    fn = capabilities.proxy_stub(name, self.log_host)
            funcs.append(self._traced(name, fn, params) if self.tracing else fn)
        return funcs

    def _start(self) -> None:
        self.metrics = Metrics()
        self.contexts: dict[int, Context] = {}
        self.streams: dict[int, HttpStream | TcpStream] = {}
        self._next_id = 1
        self._vm_ctx = Context(0, None)
        self._stack: list[Context] = [self._vm_ctx]
        self.effective: Context | None = None
        self._depth = 0
        self.allocating = 0
        self.vm: WasmtimeVm | None = None
        self.mem: Any = (
            GuestMemory(self.memory_region, self._allocate)
            if self.native is None
            else self.native.Memory(self._allocate)
        )
        self.wasi = Wasi(
            self.mem,
            self.log_guest,
            self.clock.now_ns,
            self.clock.monotonic_ns,
            seed=self.seed,
            environ=self.environ,
            room=self.log_room,
        )
        self.vm = WasmtimeVm(
            self.module,
            self._link(),
            limits=self.limits,
            fast=self.fast,
            native=self.native,
        )
        if self.native is None:
            self.mem.bind(self.vm.memory_region, self.vm.memory_seen)
        else:
            self.mem.bind(self.vm.core)
        try:
            if self.vm.has_export("_initialize"):
                self.invoke("_initialize", (), self._vm_ctx, startup=True)
                if self.vm.has_export("main"):
                    self.invoke("main", (0, 0), self._vm_ctx, startup=True)
                elif self.vm.has_export("__main_void"):
                    self.invoke("__main_void", (), self._vm_ctx, startup=True)
            elif self.vm.has_export("_start"):
                self.invoke("_start", (), self._vm_ctx, startup=True)
        except FilterTrapError as exc:
            raise FilterLoadError(
                f"{self.module.name}: start-up failed: {exc}"
            ) from exc

    def memory_region(self) -> tuple[int, int]:
        """The guest's memory (address, bytes); ``(0, 0)`` before instantiation."""
        return (0, 0) if self.vm is None else self.vm.memory_region()

    def _allocate(self, size: int) -> int:
        ctx = self._stack[-1]
        self.allocating += 1
        try:
            result = self.invoke(self.allocator, (size,), ctx)
        finally:
            self.allocating -= 1
        return result or 0

    def reload(self) -> None:
        """Start a fresh instance after a failure and restart every plugin.

        Envoy does the same with ``failure_policy: FAIL_RELOAD``; state in
        the old instance is lost, as it is there; shared data and metrics
        stay.
        """
        if self.vm is not None:
            self.vm.close()
        self.failed = None
        self.failure = None
        self.events.reset()
        self.loaded_ns = self.clock.monotonic_ns()
        metrics = self.metrics
        self._start()
        # Envoy's stats outlive the VM: the new one's metrics of the same
        # names count on (measured with fail_reload).
        self.metrics = metrics
        for plugin in self.plugins:
            plugin._start_root()

    def admits(self, config: PluginConfig) -> bool:
        """Whether a new stream of a plugin with ``config`` may call the filter.

        A failed VM admits none, except that under ``fail_reload`` it is
        reloaded first when the backoff since its last load has passed and no
        other stream uses the instance (see :mod:`wasmkit.host.failure`). A
        reload that fails leaves the VM failed.
        """
        if self.failed is None:
            return True
        if config.policy != "fail_reload":
            return False
        backoff = self._backoff
        if backoff is None or backoff.base_ms != config.reload_backoff_ms:
            backoff = self._backoff = ReloadBackoff(config.reload_backoff_ms, self.seed)
        since_ms = (self.clock.monotonic_ns() - self.loaded_ns) / 1e6
        if not backoff.due(since_ms) or self.streams:
            return False
        failed, failure = self.failed, self.failure
        try:
            self.reload()
        except (FilterTrapError, FilterLoadError, FilterStartError) as exc:
            self.log_host(LogLevel.ERROR, f"fail_reload: the reload failed: {exc}")
            if isinstance(exc, FilterStartError):
                # Refused, not trapped: the old failure stands.
                self.failed, self.failure = failed, failure
            return False
        return True

    def close(self) -> None:
        """Shut the plugins down (``on_done``, ``on_delete``) and drop the VM."""
        if self.vm is None:
            return
        if self.failed is None:
            for plugin in self.plugins:
                if plugin.root is not None and not plugin.root.done_pending:
                    plugin.shutdown()
        self.vm.close()
        self.vm = None

    def __enter__(self) -> FilterVm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plugins and contexts -----------------------------------------------------

    def add_plugin(self, config: PluginConfig | None = None) -> Plugin:
        """Create a plugin's root context and start it.

        Raises:
            FilterStartError: ``on_vm_start`` or ``on_configure`` returned false.
            FilterTrapError: the filter trapped while starting.
        """
        plugin = Plugin(self, config or PluginConfig())
        plugin._start_root()
        self.plugins.append(plugin)
        return plugin

    def new_context_id(self) -> int:
        """The next context id of this VM."""
        cid = self._next_id
        self._next_id += 1
        return cid

    def open_http_context(
        self, root: RootContext, connection: Connection | None, stream: Any
    ) -> HttpContext:
        """A new HTTP context under ``root``, registered for ``stream``.

        It starts now on the VM's clock and takes :attr:`next_stream_info`
        when one is pending (whether or not the module exports
        ``proxy_on_context_create``).
        """
        ctx = HttpContext(self.new_context_id(), root)
        ctx.start_ns = self.clock.now_ns()
        ctx.connection = connection
        self.contexts[ctx.id] = ctx
        self.streams[ctx.id] = stream
        if self.next_stream_info is not None:
            self.stream_info[ctx.id] = self.next_stream_info
            self.next_stream_info = None
        return ctx

    @property
    def ctx(self) -> Context:
        """The context host calls act on now (the effective one if switched)."""
        return self.effective if self.effective is not None else self._stack[-1]

    def invoke(
        self,
        name: str,
        args: Sequence[int],
        ctx: Context,
        *,
        startup: bool = False,
    ) -> int | None:
        """Call export ``name`` for ``ctx``; ``None`` if not exported.

        Raises:
            FilterTrapError: the guest failed; the VM is marked failed.
        """
        if name == "proxy_on_log" and isinstance(ctx, HttpContext):
            self._note_stream(ctx)
        vm = self.vm
        if vm is None or name not in self.exported:
            # Envoy (cpp-host) skips a callback the module does not export.
            return None
        tracing = self.tracing
        start = time.perf_counter_ns() if tracing else 0
        index = len(self.trace)
        first_log = len(self.logs)
        depth = self._depth
        if depth == 0:
            self.current_callback = name
            self.wasi.stderr_tail = b""
        self._depth = depth + 1
        stack = self._stack
        stack.append(ctx)
        saved = self.effective
        self.effective = None
        try:
            result = vm.call(name, args, context_id=ctx.id, startup=startup)
        except FilterTrapError as exc:
            self.wasi.flush()
            self._explain(exc, first_log, name, ctx)
            if tracing:
                self._trace_callback(name, ctx, args, exc.kind, start, index, depth)
            self.failed = exc
            if depth == 0:
                self.failure = VmFailure(exc, name, ctx.id, self.flow)
            raise
        finally:
            self._depth = depth
            stack.pop()
            self.effective = saved
        if tracing:
            self._trace_callback(name, ctx, args, result, start, index, depth)
        if depth == 0:
            if self.wasi.pending:
                self.wasi.flush()  # a write without a final newline is a line too
            if self.finished_roots:
                # proxy_done() finished a root: on_delete follows the VM call.
                root = self.finished_roots.pop(0)
                self.invoke("proxy_on_delete", (root.id,), root)
        return result

    def _note_stream(self, ctx: HttpContext) -> None:
        # The request is complete (Envoy's onRequestComplete) when the access
        # log runs.
        info = self.stream_info.get(ctx.id) or StreamInfo()
        if info.end_ns is None:
            self.stream_info[ctx.id] = dataclasses.replace(
                info, end_ns=self.clock.now_ns()
            )

    def _explain(
        self, exc: FilterTrapError, first_log: int, name: str, ctx: Context
    ) -> None:
        # SDKs say why they abort (Rust panics, Go fatal errors, AS aborts) on
        # stderr or in an error log just before trapping: carry that along.
        said = [
            r.message
            for r in self.logs[first_log:]
            if r.level >= LogLevel.ERROR and r.source not in ("host", "stderr")
        ]
        # stderr comes a write at a time (Go's runtime writes a panic in
        # pieces): its first whole line is the cause.
        lines = self.wasi.stderr_tail.decode("utf-8", "replace").splitlines()
        first = next((line.strip() for line in lines if line.strip()), None)
        if first is not None:
            said.insert(0, first)
        if said:
            # The first line is the cause (Rust's panic, Go's "fatal error").
            exc.args = (f"{exc.args[0]}\nthe filter said: {said[0]}", *exc.args[1:])
        if (
            name == "proxy_on_configure"
            and isinstance(ctx, RootContext)
            and not ctx.plugin.configuration
            and "__retain" in self.module.exports
        ):
            exc.args = (
                f"{exc.args[0]}\nhint: @solo-io/proxy-runtime 0.1.8 cannot read an "
                "empty plugin configuration (Envoy fails the same way); give one, "
                "e.g. {}",
                *exc.args[1:],
            )
        if exc.kind != "trap":
            return
        oom = ("out of memory", "allocation failed", "memory allocation of")
        if any(any(m in text.lower() for m in oom) for text in said):
            exc.kind = "memory"

    def _trace_callback(
        self,
        name: str,
        ctx: Context,
        args: Sequence[int],
        result: Any,
        start: int,
        index: int,
        depth: int,
    ) -> None:
        budget = self.budget
        if budget.trace_events >= self.limits.trace_events:
            budget.dropped_trace += 1
            return
        budget.trace_events += 1
        names = _callback_arg_names(name, len(args))
        event = TraceEvent(
            "callback",
            name,
            ctx.id,
            dict(zip(names, args, strict=True)),
            result,
            time.perf_counter_ns() - start,
            depth,
        )
        self.trace.insert(index, event)

    def _traced(self, name: str, fn: HostFunction, params: list[str]) -> HostFunction:
        decoders = _decoders(params, self)
        is_proxy = name.startswith("proxy_")

        budget = self.budget
        limits = self.limits

        is_log = name in ("proxy_log", "fd_write")

        def traced(*args: int) -> int | None:
            if budget.trace_events >= limits.trace_events or (
                is_log and budget.dropped_logs
            ):
                # Over the trace quota, or a log call whose record is dropped.
                budget.dropped_trace += 1
                return fn(*args)
            budget.trace_events += 1
            start = time.perf_counter_ns()
            decoded = {k: d(args) for k, d in decoders}
            self.out = None
            result = fn(*args)
            if self.out is not None:
                decoded["returned"] = self.out
            if self._quirks:
                decoded["quirk"] = "; ".join(self._quirks)
                self._quirks.clear()
            status: Any = result
            if is_proxy and result is not None:
                status = _STATUS_NAMES.get(result, result)
            self.trace.append(
                TraceEvent(
                    "hostcall",
                    name,
                    self.ctx.id,
                    decoded,
                    status,
                    time.perf_counter_ns() - start,
                    self._depth,
                )
            )
            return result

        return traced

    # -- services for host functions ---------------------------------------------

    def log_guest(
        self, level: LogLevel, message: str, source: str, *, size: int | None = None
    ) -> None:
        """Record a log line from the filter, if at or above the log level.

        Past ``Limits.log_records`` / ``log_bytes`` in the current stream the
        record is dropped (and counted, see :class:`~wasmkit.host.quotas.Budget`);
        ``size`` is the message's whole size when only its start was read.
        """
        if level < self.log_level:
            return
        whole = len(message) if size is None else max(size, len(message))
        kept = self.budget.take_log(whole, self.limits)
        if kept is None:
            return
        if kept < whole:
            message = message[:kept] + f" [cut: {whole - kept:,} more bytes]"
        self.logs.append(
            LogRecord(
                level,
                message,
                self.ctx.id,
                source,
                self.clock.now_ns(),
                self.current_callback if self._depth else "",
            )
        )

    def log_room(self) -> int:
        """Bytes of log message the current stream may still keep (0: none)."""
        budget, limits = self.budget, self.limits
        if budget.log_records >= limits.log_records:
            return 0
        return max(0, limits.log_bytes - budget.log_bytes)

    def new_window(self) -> None:
        """Start counting quotas afresh (a stream starts or the last one ended).

        Records kept outside streams (ticks between flows) are trimmed to the
        last ``Limits.log_records`` / ``trace_events``.
        """
        self.budget.reset()
        if self.stream_info:
            self.stream_info = {
                k: v for k, v in self.stream_info.items() if k in self.contexts
            }
        limits = self.limits
        if len(self.logs) > limits.log_records:
            del self.logs[: len(self.logs) - limits.log_records]
        if len(self.trace) > limits.trace_events:
            del self.trace[: len(self.trace) - limits.trace_events]

    def log_host(self, level: LogLevel, message: str) -> None:
        """Record a message from the host about the filter."""
        self.logs.append(
            LogRecord(level, message, self.ctx.id, "host", self.clock.now_ns())
        )

    def note_quirk(self, text: str) -> None:
        """Note, in the trace, a known SDK bug the host worked around."""
        self._quirks.append(text)

    def lookup_property(self, path: tuple[bytes, ...]) -> bytes | None:
        """Resolve a property for the current context."""
        ctx = self.ctx
        root = ctx.root
        plugin = root.plugin.config if isinstance(root, RootContext) else None
        values: dict[str, Any] = {**self._static_properties}
        if plugin is not None:
            values["plugin_root_id"] = plugin.root_id
            values["plugin_name"] = plugin.display_name
        stream = self.streams.get(ctx.id)
        return properties.resolve(
            path,
            ctx,
            values,
            self.overrides,
            self.stream_info.get(ctx.id),
            now_ns=self.clock.now_ns(),
            stream_details=str(getattr(stream, "details", "") or ""),
        )

    def callout_map(self, map_type: int) -> HeaderPairs | None:
        """Maps 4-7 (gRPC metadata, callout replies) while one is delivered."""
        return self.events.reply_map(map_type)

    def register_foreign_function(
        self, name: str, fn: Callable[[bytes], bytes]
    ) -> None:
        """Make ``fn`` callable by the filter with ``proxy_call_foreign_function``.

        ``fn`` takes the argument bytes and returns the result bytes; raising
        ``ValueError`` answers ``SERIALIZATION_FAILURE``. Envoy's ``compress``
        and ``uncompress`` (zlib) are registered already.
        """
        self.foreign_functions[name] = fn

    def advance(self, ms: float) -> None:
        """Let ``ms`` milliseconds of virtual time pass.

        Ticks, callout replies and timeouts that fall due on the way fire.
        """
        self.events.advance(ms)

    @property
    def callouts(self) -> list[Callout]:
        """Every HTTP callout the filter made, in order."""
        return self.events.callouts


def vm_environment(
    key_values: Mapping[str, str] | None, host_env_keys: Iterable[str] = ()
) -> dict[str, str]:
    """The VM's environment as Envoy builds it from ``environment_variables``.

    ``key_values`` as given, then each of ``host_env_keys`` that is set in
    this process's environment, with its value here.

    Raises:
        ValueError: a key named twice (Envoy refuses the configuration:
            "Key K is duplicated in ...environment_variables ... All the keys
            must be unique.").
    """
    env = {str(k): str(v) for k, v in (key_values or {}).items()}
    seen = set(env)
    for key in host_env_keys:
        if key in seen:
            raise ValueError(
                f"Key {key} is duplicated in envoy.extensions.wasm.v3.VmConfig."
                "environment_variables (environment and host_env_keys). All the "
                "keys must be unique."
            )
        seen.add(key)
        value = os.environ.get(key)
        if value is not None:
            env[key] = value
    return env


def _parse_overrides(
    items: Mapping[str, properties.PropertyValue] | None,
) -> dict[tuple[bytes, ...], properties.PropertyValue]:
    return properties.parse_overrides(items or {})


ALLOCATOR_SAFE = frozenset({"proxy_log"})
"""``env`` functions a guest allocator may call; Envoy (V8) traps on others."""


def _bind(impl: Callable[..., Any], h: FilterVm, name: str) -> HostFunction:
    if name in ALLOCATOR_SAFE:
        return functools.partial(impl, h)

    def refuse() -> GuestExit:
        return GuestExit(
            f"{name} called from inside the guest allocator "
            f"({h.allocator}); Envoy forbids host calls there",
            kind="abi",
        )

    params = list(inspect.signature(impl).parameters.values())[1:]
    if any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in params):

        def bound(*args: int) -> int | None:
            if h.allocating:
                raise refuse()
            result: int | None = impl(h, *args)
            return result

        return bound
    # Generated per arity: one frame, no argument tuple, per host call.
    names = ", ".join(f"a{i}" for i in range(len(params)))
    src = (
        f"def bound({names}):\n"
        "    if h.allocating:\n"
        "        raise refuse()\n"
        f"    return impl(h, {names})\n"
    )
    scope: dict[str, Any] = {"h": h, "impl": impl, "refuse": refuse}
    exec(src, scope)
    made: HostFunction = scope["bound"]
    return made


def _wasi_placeholder(name: str) -> Callable[..., Any]:
    def placeholder(*args: int) -> int:
        raise AssertionError(f"WASI {name} is bound per instance")

    return placeholder


_TRACED_BYTES = 256
"""Bytes of a buffer argument a trace event shows."""
_TRACED_MAP = 16384
"""Largest serialized header map a trace event decodes."""


def _decoders(
    params: list[str], h: FilterVm
) -> list[tuple[str, Callable[[Sequence[int]], Any]]]:
    out: list[tuple[str, Callable[[Sequence[int]], Any]]] = []
    names = list(params)
    for i, pname in enumerate(names):
        if pname.startswith("ret"):
            continue
        if pname in _ENUMS:

            def enum(a: Sequence[int], i: int = i, conv: Any = _ENUMS[pname]) -> Any:
                return conv(a[i])

            out.append((pname, enum))
        elif (
            pname.endswith("_ptr")
            and i + 1 < len(names)
            and names[i + 1].endswith("_size")
        ):
            label = pname[: -len("_ptr")]

            def read(a: Sequence[int], i: int = i, label: str = label) -> Any:
                # The trace shows the start of a buffer: only that is copied.
                ptr, size = a[i], a[i + 1]
                if not h.mem.writable(ptr, size):
                    return f"<invalid {ptr:#x}+{size}>"
                if label in ("headers", "pairs", "trailers") and size <= _TRACED_MAP:
                    raw = h.mem.read(ptr, size) or b""
                    try:
                        return [[k, v] for k, v in pairs.decode(raw)]
                    except pairs.PairsError:
                        return raw[:_TRACED_BYTES]
                return h.mem.read(ptr, min(size, _TRACED_BYTES)) or b""

            out.append((label, read))
        elif pname.endswith("_size") and i > 0 and names[i - 1].endswith("_ptr"):
            continue
        else:

            def plain(a: Sequence[int], i: int = i) -> Any:
                return a[i]

            out.append((pname, plain))
    return out


def _detect_abi(
    module: CompiledModule, forced: AbiVersion | str | None = None
) -> tuple[AbiVersion, str | None]:
    choice = resolve_abi(forced)
    if choice is not None:
        return choice
    standard = {v.marker: v for v in AbiVersion}
    for name, export in module.exports.items():
        if export.kind != "func":
            continue
        if name in standard:
            return standard[name], None
        if name in VENDOR_MARKERS:
            return VENDOR_MARKERS[name]
    raise FilterLoadError(
        f"{module.name}: missing or unknown proxy-wasm ABI version: the module "
        "exports none of proxy_abi_version_0_1_0, _0_2_0, _0_2_1 (nor Higress's "
        "_0_2_100); FilterVm(abi=...) forces one"
    )


def _check_callbacks(
    module: CompiledModule, version: AbiVersion, vendor: str | None = None
) -> None:
    wrong = []
    for name, export in module.exports.items():
        expected = callback_signature(name, version, vendor)
        if (
            expected is not None
            and export.kind == "func"
            and export.signature != expected
        ):
            wrong.append(
                f"{name} is {export.signature}, ABI {version.value} wants {expected}"
            )
    if wrong:
        raise FilterLoadError(
            f"{module.name}: bad function signature: " + "; ".join(wrong)
        )


def _allocator(module: CompiledModule, profile: Profile = "envoy") -> str:
    # cpp-host (Envoy) looks for malloc first; the spec prefers the SDK's.
    order = ("malloc", "proxy_on_memory_allocate")
    if profile == "spec":
        order = order[::-1]
    for name in order:
        export = module.exports.get(name)
        if export is not None and export.kind == "func":
            return name
    raise FilterLoadError(
        f"{module.name}: missing malloc: the module exports neither malloc nor "
        "proxy_on_memory_allocate, so the host cannot pass it data"
    )


_SAID_LINES = 5
"""Log lines at warn and above a start error carries."""


class Plugin:
    """One plugin (root context) in a :class:`FilterVm`."""

    def __init__(self, vm: FilterVm, config: PluginConfig) -> None:
        self.vm = vm
        self.config = config
        self.root: RootContext | None = None
        self.load_ms: float | None = None
        """How long :func:`load` took to make this plugin (ms): the module's
        code (compiled or from the cache), instantiation and start-up."""

    @property
    def configuration(self) -> bytes:
        """The plugin configuration bytes."""
        return self.config.configuration

    def _start_root(self) -> None:
        vm = self.vm
        root = RootContext(vm.new_context_id(), self)
        vm.contexts[root.id] = root
        self.root = root
        first_log = len(vm.logs)
        vm.invoke("proxy_on_context_create", (root.id, 0), root, startup=True)
        ok = vm.invoke(
            "proxy_on_vm_start", (root.id, len(vm.vm_configuration)), root, startup=True
        )
        if ok == 0:
            raise self._refused("proxy_on_vm_start", vm.vm_configuration, first_log)
        first_log = len(vm.logs)
        root.configuring = True
        try:
            ok = vm.invoke(
                "proxy_on_configure",
                (root.id, len(self.configuration)),
                root,
                startup=True,
            )
        finally:
            root.configuring = False
        if ok == 0:
            raise self._refused("proxy_on_configure", self.configuration, first_log)

    def _refused(self, callback: str, data: bytes, first_log: int) -> FilterStartError:
        # Filters say why they refuse a configuration in a warn/error log line.
        said = [
            r.message
            for r in self.vm.logs[first_log:]
            if r.level >= LogLevel.WARN and r.source != "host"
        ][-_SAID_LINES:]
        what = "VM" if callback == "proxy_on_vm_start" else "plugin"
        text = data.decode("utf-8", "replace")
        shown = text if len(text) <= 300 else text[:300] + f"... ({len(data)} bytes)"
        message = (
            f"{self.vm.module.name}: {callback} returned false for root id "
            f"{self.config.root_id!r} ({what} configuration: "
            + (shown if text else "empty")
            + ")"
        )
        if said:
            message += "\nthe filter said: " + "\n  ".join(said)
        return FilterStartError(
            message,
            callback=callback,
            root_id=self.config.root_id,
            configuration=text,
            said=said,
        )

    def shutdown(self) -> None:
        """Stop the plugin as Envoy does: ``proxy_on_done`` on its root context.

        If the filter answers true, ``proxy_on_delete`` follows; if false, it
        follows when the filter calls ``proxy_done()``.
        """
        root = self.root
        if root is None:
            return
        done = self.vm.invoke("proxy_on_done", (root.id,), root)
        if done == 0:
            root.done_pending = True
            return
        self.vm.invoke("proxy_on_delete", (root.id,), root)

    def call_foreign(self, function_id: int, data: bytes = b"") -> None:
        """Call the filter's ``proxy_on_foreign_function`` on this root.

        ``data`` is readable as buffer 8 (``FOREIGN_FUNCTION_ARGUMENTS``) during
        the call. A failure is kept in ``vm.events.errors``.
        """
        root = self.root
        if root is None:
            raise RuntimeError("plugin is not started")
        vm = self.vm
        vm.call_data = data
        try:
            vm.events.call_root(
                "proxy_on_foreign_function", (root.id, function_id, len(data)), root
            )
        finally:
            vm.call_data = None

    def http_stream(self) -> HttpStream:
        """A new HTTP stream through this plugin (its context is made lazily)."""
        from wasmkit.host.stream import HttpStream

        return HttpStream(self)

    def run_http(
        self,
        request: HttpMessage,
        response: HttpMessage
        | Callable[[HttpMessage], HttpMessage | UpstreamReset]
        | UpstreamReset
        | None = None,
        *,
        chunk_size: int | None = None,
        connection: Connection | None = None,
        wait_ms: float = 15_000,
        connection_manager: ConnectionManager | None = ENVOY_DEFAULTS,
    ) -> StreamResult:
        """Run one exchange through the filter, as Envoy would.

        The request goes through the request callbacks; if the filter passes it
        on, ``response`` (a message, or a function of the request as the
        filter passed it) comes back through the response callbacks; then
        ``on_log``, ``on_done`` and ``on_delete`` run.

        Args:
            request: the request as the client sent it.
            response: the upstream's answer; ``None`` means an empty 200;
                an :class:`~wasmkit.host.connection_manager.UpstreamReset`
                means none (Envoy's router answers 503).
            chunk_size: deliver bodies in chunks of this many bytes (default:
                one chunk).
            connection: the client connection (addresses, TLS) the filter sees
                as ``source.*``, ``connection.*`` ... properties.
            wait_ms: virtual time a paused stream may wait for callout replies
                and ticks before it counts as stalled (ms).
            connection_manager: what Envoy's HTTP connection manager and
                router do around the filter (default: Envoy 1.40's defaults,
                see :mod:`wasmkit.host.connection_manager`): the filter sees
                ``request_before`` (the client's request with
                ``x-forwarded-proto``, ``x-request-id``, hop-by-hop headers
                removed ...); ``upstream_request`` and ``client_response``
                say what the upstream and the client got. ``None``: the
                filter sees ``request`` as given.

        Returns:
            What happened: before/after of both messages, local reply, logs,
            trace and error. A filter failure is reported there, not raised.
        """
        from wasmkit.host.stream import run_exchange

        return run_exchange(
            self,
            request,
            response,
            chunk_size=chunk_size,
            connection=connection,
            wait_ms=wait_ms,
            connection_manager=connection_manager,
        )

    def tcp_stream(self, connection: Connection | None = None) -> TcpStream:
        """A new TCP connection through this plugin (a network filter).

        The client connects at once: the filter's ``on_context_create`` and
        ``on_new_connection`` run. Drive it with ``downstream_data``,
        ``upstream_data``, ``downstream_close``; end it with ``finish()``.
        """
        from wasmkit.host.tcp import TcpStream

        stream = TcpStream(self, connection)
        stream.connect()
        return stream

    def run_tcp(
        self,
        downstream: Chunks = (),
        upstream: Chunks | Callable[[bytes], Chunks] = (),
        *,
        downstream_end: bool = False,
        upstream_end: bool = True,
        close: PeerType = PeerType.REMOTE,
        wait_ms: float = 15_000,
        connection: Connection | None = None,
    ) -> TcpResult:
        """Run one TCP connection through the filter, as Envoy would.

        The client connects and sends ``downstream`` chunk by chunk; once its
        data flows (a pause may wait on virtual time for a callout or a tick),
        the upstream answers with ``upstream`` chunk by chunk; then the
        downstream connection closes and ``on_done``, ``on_log``,
        ``on_delete`` run.

        Args:
            downstream: the client's bytes: one chunk or a list of chunks.
            upstream: the upstream's bytes, or a function of the bytes the
                filter passed upstream that returns them. Not asked when the
                client data stays paused or the connection closed.
            downstream_end: the client half-closes with its last chunk
                (``end_of_stream``).
            upstream_end: the upstream ends with its last chunk; Envoy then
                tells the filter of an upstream close (peer UNKNOWN).
            close: who closes the downstream connection at the end: REMOTE
                (the client) or LOCAL (the proxy).
            wait_ms: how much virtual time paused client data may wait (ms).
            connection: the client connection the filter sees as
                ``source.*``, ``connection.*`` ... properties.

        Returns:
            What happened: bytes before/after in both directions, who closed,
            logs, trace and error. A filter failure is reported there, not
            raised.
        """
        from wasmkit.host.tcp import run_connection

        return run_connection(
            self,
            downstream,
            upstream,
            downstream_end=downstream_end,
            upstream_end=upstream_end,
            close=close,
            wait_ms=wait_ms,
            connection=connection,
        )


# Imported late: stream builds on the classes above.
from wasmkit.host.stream import HttpStream, StreamResult  # noqa: E402
from wasmkit.host.tcp import Chunks, TcpResult, TcpStream  # noqa: E402


def load(
    source: CompiledModule | bytes | str | os.PathLike[str],
    *,
    config: bytes | str = b"",
    root_id: str = "",
    name: str = "",
    fail_open: bool = False,
    failure_policy: str | None = None,
    reload_backoff_ms: int = RELOAD_BACKOFF_MS,
    progress: bool | None = None,
    **options: Any,
) -> Plugin:
    """Load a filter and start one plugin: the quick way in.

    Args:
        source: wasm bytes, WAT text, a ``.wasm`` / ``.wat`` path, or a
            compiled module.
        config: the plugin configuration.
        root_id: the plugin's root id.
        name: the plugin name (defaults to the root id).
        fail_open: Envoy's deprecated ``fail_open: true``: the stream on
            which the filter fails and later ones go on without it.
        failure_policy: Envoy's ``failure_policy``: ``fail_closed`` (the
            default: the failing stream and every later one get a 503),
            ``fail_open`` (the failing stream gets the 503, later ones skip
            the filter) or ``fail_reload`` (later streams reload the VM after
            a backoff); see :mod:`wasmkit.host.failure`.
        reload_backoff_ms: ``fail_reload``'s backoff base (ms).
        progress: a load that takes over a second (a compile, a slow
            ``proxy_on_configure``) shows what it is doing with the time, then
            one line (``loaded waf.wasm in 13.1 s: compiled 12.0 s, started
            1.1 s``); ``None``: in a notebook or a terminal (see
            :class:`wasmkit.progress.Progress`).
        **options: passed to :class:`FilterVm` (``vm_configuration``,
            ``limits``, ``log_level``, ``profile``, ...).

    Raises:
        FilterLoadError: the module cannot be loaded or started.
        FilterStartError: the filter rejected its configuration.
    """
    what = _source_name(source)
    started = time.perf_counter()
    plugin_config = PluginConfig(  # a bad policy fails before any compile
        root_id=root_id,
        configuration=config.encode() if isinstance(config, str) else config,
        name=name,
        fail_open=fail_open,
        failure_policy=failure_policy,
        reload_backoff_ms=reload_backoff_ms,
    )
    with Progress(
        desc=f"loading {what}",
        unit="",
        enabled=progress,
        ticker=True,
        bar_format="{desc} {elapsed}",
    ) as bar:
        vm = FilterVm(source, **options)
        loaded = time.perf_counter()
        try:
            plugin = vm.add_plugin(plugin_config)
        except FilterTrapError as exc:
            raise FilterLoadError(
                f"{vm.module.name}: plugin start-up failed: {exc}"
            ) from exc
        module = vm.module
        how = "compiled" if module.origin == "compiled" else "cached code"
        bar.done(
            f"loaded {what}",
            f"{how} {module.load_ms / 1000:.1f} s, started "
            f"{time.perf_counter() - loaded:.1f} s",
        )
    plugin.load_ms = (time.perf_counter() - started) * 1000
    return plugin


def _source_name(source: object) -> str:
    if isinstance(source, CompiledModule):
        return os.path.basename(source.name)
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and not source.lstrip().startswith("(")
    ):
        return os.path.basename(os.fspath(source))
    return "<wat>" if isinstance(source, str) else "<bytes>"
