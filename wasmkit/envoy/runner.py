"""Captured exchanges through a real Envoy, as the replay engine's results.

:class:`EnvoyRunner` owns one Envoy process with the filter, the local
upstream and one callout server per callout cluster. :meth:`EnvoyRunner.run`
sends one exchange and turns what happened into the same
:class:`~wasmkit.replay.results.FlowResult` the in-process engine makes:

* ``request_before``: the captured request (as the engine hands it to the
  filter);
* ``request_after``: what the upstream received (``None`` if nothing);
* ``response_before``: the captured response, when the upstream was asked;
* ``response_after``: what the client got;
* ``local_reply``: when the upstream received nothing and the client got a
  response (its details from Envoy's ``http`` debug log);
* ``error``: Envoy's own words when the filter failed in V8 (fail-closed:
  the client's 503 is ``response_after``);
* ``logs``: the filter's ``wasm log`` lines, attributed by markers (see
  :mod:`wasmkit.envoy.collector`); ``trace`` stays empty (Envoy does not
  show its host calls at this log level).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from wasmkit.envoy import config, outcome, sender
from wasmkit.envoy.collector import EnvoyLine
from wasmkit.envoy.process import START_TIMEOUT_S, EnvoyProcess
from wasmkit.envoy.servers import CalloutServer, UpstreamServer
from wasmkit.errors import EnvoyError
from wasmkit.host import connection_manager as hcm
from wasmkit.host import failure
from wasmkit.host.callouts import Callout, Responder, TableResponder, table_responder
from wasmkit.host.capabilities import Capabilities
from wasmkit.host.connection_manager import ENVOY_DEFAULTS, ConnectionManager
from wasmkit.host.context import LogRecord
from wasmkit.replay.results import FlowCollector, FlowResult, Keep, ReplayResult
from wasmkit.traffic.model import Headers

REQUEST_TIMEOUT_S = 10.0
"""Wall-clock limit for one exchange through Envoy (s)."""

DETAILS_WAIT_S = 2.0
"""How long an exchange's access line (its response code details) may come
after its marker (s)."""


_ENVOY_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")

ResponderArg = Responder | Mapping[str, Any] | None


def _binary(filter: Any, workdir: Path) -> tuple[str, Path]:
    # Envoy reads the module from a file: a path (an Artifact is path-like)
    # is used in place, bytes are written out.
    if isinstance(filter, bytes | bytearray):
        data = bytes(filter)
        name = "<bytes>"
    else:
        path = Path(os.fspath(filter)).resolve()
        try:
            data = path.read_bytes()[:4]
        except OSError as exc:
            raise EnvoyError(f"cannot read filter {path}: {exc}") from exc
        if data == b"\0asm":
            return str(filter), path
        raise ValueError(f"{path}: Envoy loads wasm binaries only (no \\0asm header)")
    if not data.startswith(b"\0asm"):
        raise ValueError("Envoy loads wasm binaries only (no \\0asm header)")
    out = workdir / "filter.wasm"
    out.write_bytes(data)
    return name, out


def _closed_port() -> socket.socket:
    # A loopback port nobody listens on: bound and kept without listening,
    # so connections to it are refused and no other process (a test's
    # server, a Dask worker) can take it while Envoy runs.
    sock = socket.socket()
    sock.bind((config.LOOPBACK, 0))
    return sock


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _capabilities(names: Iterable[str] | None) -> tuple[str, ...]:
    # The same forms wasmkit's VM takes (Capabilities.of): names or a
    # mapping's keys; a lone string is refused there too.
    return tuple(sorted(Capabilities.of(names).allowed or ()))


def _responder(responder: ResponderArg) -> Responder | None:
    if responder is None or callable(responder):
        return responder
    return table_responder(responder)


class EnvoyRunner:
    """A real Envoy with one filter, ready to take captured exchanges.

    Started and stopped explicitly (:meth:`start`, :meth:`stop`) or as a
    context manager; Envoy is stopped by its pid on :meth:`stop`, on any
    error while starting, when an exchange gets no answer in time, and at
    interpreter exit.

    Args:
        filter: a ``.wasm`` path (or a built ``Artifact``) or wasm bytes.
        config: the plugin configuration.
        root_id: the plugin's root id.
        vm_config: the VM configuration.
        fail_open: Envoy's deprecated ``fail_open: true``: the failing stream
            and later ones go on without the filter.
        failure_policy: Envoy's ``failure_policy`` (``fail_closed``, the
            default; ``fail_open``; ``fail_reload``), as wasmkit's replay
            takes it (see :mod:`wasmkit.host.failure`).
        reload_backoff_ms: ``fail_reload``'s backoff base (ms; Envoy's
            default 1 s when ``None``).
        responder: answers the filter's HTTP callouts: a table (``cluster``,
            ``cluster path``, ``cluster authority path`` keys, as
            :func:`~wasmkit.host.callouts.table_responder` takes) or a
            function of a :class:`~wasmkit.host.callouts.Callout`.
        clusters: callout cluster names to configure besides the table's
            (needed for a function responder: Envoy only knows named clusters).
        environment: VM environment variables
            (``environment_variables.key_values``).
        host_env_keys: names of Envoy's own environment variables the VM
            sees (``environment_variables.host_env_keys``); Envoy runs with
            this process's environment.
        request_timeout_s: wall-clock limit for one exchange (s).
        start_timeout_s: how long Envoy may take to be ready (s).
        binary: the Envoy binary (default: :func:`wasmkit.envoy.find_envoy`).
        log_level: Envoy's ``wasm`` log level (``trace`` ... ``critical``):
            the filter's logs below it are dropped, and ``proxy_get_log_level``
            reports it. Give wasmkit's replay the same ``log_level`` to
            compare logs.
        connection_manager: the connection manager, router and route knobs
            written into Envoy's config (the same object wasmkit's replay
            takes; default: Envoy's defaults).
        allowed_capabilities: the ABI functions the filter may use, written
            as the VM's ``capability_restriction_config`` (names, or a
            mapping whose keys are names, as wasmkit's
            ``allowed_capabilities``; ``None`` or empty: no restriction).
    """

    def __init__(
        self,
        filter: Any,
        *,
        config: bytes | str = b"",
        root_id: str = "",
        vm_config: bytes | str = b"",
        fail_open: bool = False,
        responder: ResponderArg = None,
        clusters: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        failure_policy: str | None = None,
        reload_backoff_ms: int | None = None,
        host_env_keys: Sequence[str] = (),
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
        binary: Path | None = None,
        log_level: str = "debug",
        connection_manager: ConnectionManager = ENVOY_DEFAULTS,
        allowed_capabilities: Iterable[str] | None = None,
    ) -> None:
        self.connection_manager = connection_manager
        self.allowed_capabilities = _capabilities(allowed_capabilities)
        """The names written into ``capability_restriction_config`` (sorted;
        empty: no restriction)."""
        level = log_level.lower()
        level = {"warn": "warning"}.get(level, level)
        if level not in _ENVOY_LEVELS:
            raise ValueError(
                f"log_level must be one of {_ENVOY_LEVELS}, not {log_level!r}"
            )
        self._components = f"wasm:{level},http:debug,lua:info"
        self._filter = filter
        self.root_id = root_id
        self._plugin_config = _bytes(config)
        self._vm_config = _bytes(vm_config)
        self._fail_open = fail_open
        self._environment = dict(environment or {})
        self.failure_policy = failure.resolve_policy(failure_policy, fail_open)
        self._reload_backoff_ms = reload_backoff_ms
        self._host_env_keys = tuple(host_env_keys)
        self.responder = _responder(responder)
        names = set(clusters)
        if isinstance(self.responder, TableResponder):
            names |= self.responder.clusters
        self.clusters = sorted(names)
        self.request_timeout_s = request_timeout_s
        self.start_timeout_s = start_timeout_s
        self._binary = binary
        self.name = ""
        self.process: EnvoyProcess | None = None
        self.upstream = UpstreamServer()
        self.callout_servers: list[CalloutServer] = []
        self.callouts: list[Callout] = []
        """Every callout the filter made, in order."""
        self.startup_logs: list[LogRecord] = []
        """The filter's logs while Envoy started (canary and worker VMs)."""
        self.start_seconds = 0.0
        """How long Envoy took to be ready (s): mostly V8 compiling the module."""
        self._workdir: Path | None = None
        self._refuser: socket.socket | None = None
        self._access_seen = 0
        """Envoy's stderr lines before the next exchange's access line."""
        self._ports: dict[str, int] = {}

    # -- start and stop ----------------------------------------------------------

    def start(self) -> None:
        """Start the local servers and Envoy; wait until Envoy is ready.

        Raises:
            EnvoyNotFoundError: no Envoy binary.
            EnvoyError: Envoy refused the configuration or the filter (the
                message is Envoy's), or was not ready in time.
        """
        if self.process is not None:
            return
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="wasmkit-envoy-"))
        self._access_seen = 0
        # Also removed at interpreter exit if stop() never runs.
        weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self.name, module = _binary(self._filter, self._workdir)
        self.upstream.start()
        self._refuser = _closed_port()
        assert self.responder is not None or not self.clusters
        for cluster in self.clusters:
            assert self.responder is not None
            server = CalloutServer(cluster, self.responder, self.callouts.append)
            server.start()
            self.callout_servers.append(server)
        wasm = config.WasmFilterConfig(
            module,
            root_id=self.root_id,
            configuration=self._plugin_config,
            vm_configuration=self._vm_config,
            fail_open=self._fail_open,
            environment=self._environment,
            failure_policy=self.failure_policy,
            reload_backoff_ms=self._reload_backoff_ms,
            host_env_keys=self._host_env_keys,
            allowed_capabilities=self.allowed_capabilities,
        )
        boot = config.bootstrap(
            wasm,
            upstream_port=self.upstream.port,
            refused_port=int(self._refuser.getsockname()[1]),
            callout_ports={s.cluster: s.port for s in self.callout_servers},
            connection_manager=self.connection_manager,
        )
        path = config.write_bootstrap(self._workdir / "envoy.json", boot)
        process = EnvoyProcess(
            path, self._workdir, binary=self._binary, component_levels=self._components
        )
        self.process = process
        process.start(self.start_timeout_s)
        self.start_seconds = process.start_seconds
        self._ports = process.listener_ports()
        # The worker thread may start its VM (and log) after Envoy reports
        # ready: a first marker, which that thread logs once it runs, closes
        # the start-up window, so those lines do not fall into flow 0's.
        self.startup_logs = outcome.filter_logs(self._exchange_lines(process, -1, 0))

    def stop(self) -> None:
        """Stop Envoy (by its pid) and the local servers; remove the files."""
        try:
            if self.process is not None:
                self.process.stop()
        finally:
            self.upstream.stop()
            for server in self.callout_servers:
                server.stop()
            self.callout_servers = []
            if self._refuser is not None:
                self._refuser.close()
                self._refuser = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> EnvoyRunner:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- one exchange -------------------------------------------------------------

    def _running(self) -> EnvoyProcess:
        process = self.process
        if process is None or process.proc is None:
            raise EnvoyError("Envoy is not running (call start())")
        if not process.alive():
            tail = process.collector.tail() if process.collector else ""
            raise EnvoyError(f"Envoy exited: {process.refusal()}", stderr=tail)
        return process

    def run(self, exchange: Any) -> FlowResult:
        """Send one captured exchange through Envoy and report what it did.

        Raises:
            EnvoyError: Envoy did not answer within ``request_timeout_s``
                (Envoy is stopped: V8 cannot interrupt a looping filter), or
                exited.
        """
        process = self._running()
        start_line = len(process.lines)
        start_call = len(self.callouts)
        # The same index comes again when the runner replays another capture.
        start_arrival = len(self.upstream.arrivals)
        index = exchange.index
        captured = None if exchange.request_only else exchange.response
        self.upstream.expect(index, captured)
        request = exchange.request
        extra: list[tuple[bytes, bytes]] = []
        cm = self.connection_manager
        if (
            getattr(exchange, "tls", False)
            and cm.scheme is None
            and not (cm.use_remote_address and cm.xff_num_trusted_hops == 0)
            and not any(
                k.lower() == b"x-forwarded-proto" for k, _ in request.headers.fields
            )
        ):
            # Envoy's listener is plain text: a TLS flow's scheme comes in as
            # the x-forwarded-proto Envoy keeps (where wasmkit's connection
            # manager adds it: after the client's headers).
            extra.append((b"x-forwarded-proto", b"https"))
        error = getattr(exchange, "error", None)
        if captured is None and hcm.reset_reason(error) == hcm.REFUSED_REASON:
            # The capture's upstream refused the connection: so does Envoy's.
            extra.append((config.UPSTREAM_MARK_HEADER.encode(), b"refused"))
        if extra:
            request = dataclasses.replace(
                request, headers=Headers((*request.headers.fields, *extra))
            )
        began = time.perf_counter()
        answer = sender.send(
            self._ports[config.FILTER_LISTENER],
            request,
            self.request_timeout_s,
        )
        micros = (time.perf_counter() - began) * 1e6
        if answer.timed_out:
            process.kill()
            request = exchange.request
            raise EnvoyError(
                f"flow {index} ({request.method} {request.path}): no answer from "
                f"Envoy within {self.request_timeout_s:g} s; Envoy was stopped "
                "(V8 has no per-callback deadline: does the filter loop?)",
                stderr=process.collector.tail() if process.collector else "",
            )
        lines = self._exchange_lines(process, index, start_line)
        result = outcome.stream_result(
            exchange,
            self.upstream.received(index, start_arrival),
            answer,
            lines,
            self.callouts[start_call:],
            fail_open=self._fail_open,
        )
        result.details = self._details(process)
        return FlowResult(index, exchange, result, micros, exchange.request_only)

    def _details(self, process: EnvoyProcess) -> str:
        # The filter listener logs one access line per stream, in order: the
        # exchange's is the next one (flushed within a millisecond).
        assert process.collector is not None
        found = process.collector.wait_for(
            lambda ln: (
                ln.logger == "access" and ln.message.startswith(config.DETAILS_PREFIX)
            ),
            DETAILS_WAIT_S,
            self._access_seen,
        )
        if found is None:
            return ""
        self._access_seen = found.seq + 1
        details = found.message[len(config.DETAILS_PREFIX) :].strip()
        return "" if details == "-" else details

    def _exchange_lines(
        self, process: EnvoyProcess, index: int, start: int
    ) -> list[EnvoyLine]:
        mark = f"{index}@{start}"
        wanted = config.MARK_PREFIX + mark
        marker_port = self._ports[config.MARKER_LISTENER]
        found = None
        if sender.mark(marker_port, mark, self.request_timeout_s):
            assert process.collector is not None
            found = process.collector.wait_for(
                lambda ln: ln.logger == "lua" and ln.message.endswith(wanted),
                self.request_timeout_s,
                start,
            )
        self._running()
        end = found.seq if found is not None else len(process.lines)
        return process.lines[start:end]

    # -- a whole capture ----------------------------------------------------------

    def replay(
        self,
        exchanges: Iterable[Any],
        *,
        keep: Keep = "all",
        max_kept: int | None = None,
    ) -> ReplayResult:
        """Run every exchange, in order, and collect the results."""
        collector = FlowCollector(keep, max_kept)
        first_call = len(self.callouts)
        for exchange in exchanges:
            collector.add(self.run(exchange))
        return ReplayResult(
            filter=self.name,
            flows=collector.flows,
            callouts=self.callouts[first_call:],
            keep=keep,
            counted=collector.counted(),
            runtime="envoy",
        )
