"""Drive a filter callback by callback, as Envoy's own Wasm tests do.

A :class:`Driver` holds one plugin of a :class:`~wasmkit.host.FilterVm`. It
makes contexts (:meth:`Driver.http`, :meth:`Driver.tcp`, the plugin's root
context as :attr:`Driver.root`) and calls any callback on them directly, in
any order, also on a fresh context (``on_response_headers`` with no request,
``on_downstream_data`` without ``on_new_connection``, ``on_log`` on a stream
the filter never saw). The maps and buffers a callback sees are set before
the call and read after it; each call returns a :class:`CallResult`: the
callback's value, the action as Envoy converts it
(``StopAllIterationAndWatermark`` ...), the logs, trace, callouts and local
reply of that call, and the failure, if any.

The calls run through the VM exactly as streams do (limits, quotas, trace,
logs); a trap is reported in the result, not raised, and handled as Envoy's
``CHECK_FAIL`` does: under ``fail_closed`` an HTTP stream gets the 503 local
reply (``wasm_fail_stream``) and a TCP connection is closed.

Example::

    with Driver("filter.wasm", config="{}") as d:
        http = d.http()
        r = http.on_request_headers({":path": "/", "x-user": "a"})
        assert r.action == "Continue"
        assert http.request_headers["x-added"] == "yes"
        assert r.logs.info == ["saw /"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wasmkit.abi.constants import StreamType
from wasmkit.host.callouts import Callout
from wasmkit.host.message import Connection
from wasmkit.host.plugin import FilterVm, Plugin, PluginConfig, load
from wasmkit.host.properties import StreamInfo
from wasmkit.host.vm import CompiledModule
from wasmkit.testing._calls import RootDriver
from wasmkit.testing._views import (
    CallResult,
    HeaderMap,
    Logs,
    headers,
    metrics_by_name,
)
from wasmkit.testing.streams import HttpDriver
from wasmkit.testing.tcp import TcpDriver

__all__ = [
    "CallResult",
    "Driver",
    "HeaderMap",
    "HttpDriver",
    "Logs",
    "RootDriver",
    "TcpDriver",
    "built",
    "headers",
]

FilterSource = Plugin | FilterVm | CompiledModule | bytes | str | os.PathLike[str]
"""What a :class:`Driver` drives: a plugin, a VM (its first plugin), or a
filter to load (wasm bytes, WAT text, a path, a build artifact, or a source
folder or file, built through the build cache)."""

_SOURCE_SUFFIXES = (".rs", ".go", ".ts")


def built(source: Any, **build_options: Any) -> Any:
    """``source`` itself, or, for a source folder or file, its build artifact.

    Source goes through :func:`wasmkit.build` (and its cache), with
    ``build_options`` (``lang``, ``tags``, ``go_flags``, ``extra_args``).

    Raises:
        BuildError: the build failed.
    """
    if isinstance(source, str | os.PathLike) and not (
        isinstance(source, str) and source.lstrip().startswith("(")
    ):
        path = Path(source)
        if path.is_dir() or path.suffix in _SOURCE_SUFFIXES:
            from wasmkit.build import build

            build_options.setdefault("progress", False)
            return build(path, **build_options)
    return source


class Driver:
    """Calls a filter's callbacks one by one, as Envoy's unit tests do.

    Args:
        filter: a :class:`~wasmkit.host.Plugin`, a
            :class:`~wasmkit.host.FilterVm` (its first plugin, or a new one
            with ``config`` / ``root_id``), or a filter to load (a source
            folder or file is built first, see :func:`built`).
        config: the plugin configuration (when the driver loads or adds it).
        root_id: the plugin's root id (likewise).
        **options: for :func:`wasmkit.load` (``clusters``,
            ``failure_policy``, ``environment``, ``limits``, ``responder``,
            ``allowed_capabilities`` ...), when the driver loads the filter.

    Raises:
        FilterLoadError, FilterStartError: as :func:`wasmkit.load`.
    """

    def __init__(
        self,
        filter: FilterSource,
        *,
        config: bytes | str = b"",
        root_id: str = "",
        **options: Any,
    ) -> None:
        self._owns = False
        if isinstance(filter, Plugin):
            plugin = filter
        elif isinstance(filter, FilterVm):
            if filter.plugins and not config and not root_id:
                plugin = filter.plugins[0]
            else:
                raw = config.encode() if isinstance(config, str) else config
                plugin = filter.add_plugin(
                    PluginConfig(root_id=root_id, configuration=raw)
                )
        else:
            options.setdefault("progress", False)
            plugin = load(built(filter), config=config, root_id=root_id, **options)
            self._owns = True
        self.plugin = plugin
        """The plugin driven."""
        self.vm = plugin.vm
        """Its VM."""
        self.calls: list[CallResult] = []
        """Every call made through this driver, in order."""
        self.actions: list[tuple[str, StreamType]] = []
        """``("continue" | "close", stream type)`` the filter asked for on
        any of the driver's contexts, in order."""
        self._root: RootDriver | None = None
        root = plugin.root
        self.startup_logs = Logs(
            r
            for r in self.vm.logs
            if r.context_id == 0 or (root is not None and r.context_id == root.id)
        )
        """Log records of the VM's start-up and the plugin's configuration."""

    @property
    def root(self) -> RootDriver:
        """The plugin's root context (a new one after a reload)."""
        if self._root is None or self._root.ctx is not self.plugin.root:
            self._root = RootDriver(self)
        return self._root

    def admit(self) -> bool:
        """Whether a new stream may call the filter, as Envoy decides it.

        A failed VM admits none, except under ``failure_policy=
        "fail_reload"`` once the backoff has passed on the virtual clock
        (:meth:`advance`): the VM is then reloaded, its plugins restarted.
        New contexts ask this first.
        """
        return self.vm.admits(self.plugin.config)

    def http(
        self,
        connection: Connection | None = None,
        *,
        create: bool = True,
        stream_info: StreamInfo | None = None,
    ) -> HttpDriver:
        """A new HTTP stream context (``proxy_on_context_create`` runs).

        ``create=False``: the context exists, ``proxy_on_context_create`` has
        not run (an access-log-only stream, see :meth:`HttpDriver.log`).
        ``stream_info``: its timing, details and flags (see
        :class:`~wasmkit.host.properties.StreamInfo`).
        """
        return HttpDriver(self, connection, create=create, stream_info=stream_info)

    def tcp(
        self,
        connection: Connection | None = None,
        *,
        create: bool = True,
        stream_info: StreamInfo | None = None,
    ) -> TcpDriver:
        """A new TCP context: only ``proxy_on_context_create`` runs.

        Call ``on_new_connection`` next, or go straight to the data.
        ``create=False``: not even that (Envoy's filter before
        ``onNewConnection``: its ``on_data``, ``on_write`` and ``on_event``
        call nothing). ``stream_info``: the connection's start, flags and
        details (see :mod:`wasmkit.testing.tcp`).
        """
        return TcpDriver(self, connection, create=create, stream_info=stream_info)

    @property
    def logs(self) -> Logs:
        """Every log record of the calls made through this driver."""
        return Logs(r for c in self.calls for r in c.logs)

    @property
    def callouts(self) -> list[Callout]:
        """Every HTTP callout the filter made (also outside driver calls)."""
        return list(self.vm.callouts)

    @property
    def metrics(self) -> dict[str, Any]:
        """The VM's metrics now, by name (with Envoy's ``wasmcustom.`` prefix)."""
        return metrics_by_name(self.vm)

    def metric(self, name: str) -> Any:
        """One metric's value, by its name with or without ``wasmcustom.``.

        Raises:
            KeyError: no such metric.
        """
        metrics = self.metrics
        if name in metrics:
            return metrics[name]
        return metrics["wasmcustom." + name]

    def advance(self, ms: float) -> None:
        """Let ``ms`` of virtual time pass: due ticks and replies fire."""
        self.vm.advance(ms)

    def close(self) -> None:
        """Close the VM if the driver loaded it."""
        if self._owns:
            self.vm.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
