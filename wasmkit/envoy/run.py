"""Replay capture files through a real Envoy: the one-call entry point."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wasmkit.envoy.process import START_TIMEOUT_S
from wasmkit.envoy.runner import REQUEST_TIMEOUT_S, EnvoyRunner, ResponderArg
from wasmkit.errors import CaptureReadError
from wasmkit.host.connection_manager import ENVOY_DEFAULTS, ConnectionManager
from wasmkit.replay.results import FlowCollector, Keep, ReplayResult
from wasmkit.traffic import load_capture

PathArg = str | os.PathLike[str]


def replay(
    filter: Any,
    captures: PathArg | Sequence[PathArg],
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
    decoded: bool = False,
    limit: int | None = None,
    filter_expr: str | None = None,
    keep: Keep = "all",
    max_kept: int | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    start_timeout_s: float = START_TIMEOUT_S,
    binary: Path | None = None,
    log_level: str = "debug",
    connection_manager: ConnectionManager = ENVOY_DEFAULTS,
    allowed_capabilities: Iterable[str] | None = None,
) -> ReplayResult:
    """Replay captured traffic through a real Envoy with the filter.

    The same exchanges :func:`wasmkit.replay.run.replay` replays in-process
    (``load_capture`` with the same ``decoded``, ``limit`` and
    ``filter_expr``) go one at a time through Envoy's listener; the result is
    the same :class:`~wasmkit.replay.results.ReplayResult`, so its tables,
    explorer, exports and :func:`wasmkit.compare` work unchanged (see
    :mod:`wasmkit.envoy.runner` for what each field holds). Envoy is started
    for the call and stopped by its pid before it returns, also on errors.

    Args:
        filter: a ``.wasm`` path (or a built ``Artifact``) or wasm bytes.
        captures: mitmproxy ``.flow`` or HAR files.
        config: the plugin configuration.
        root_id: the plugin's root id.
        vm_config: the VM configuration.
        fail_open: Envoy's deprecated ``fail_open: true``.
        failure_policy: Envoy's ``failure_policy`` (see
            :class:`~wasmkit.envoy.runner.EnvoyRunner`).
        reload_backoff_ms: ``fail_reload``'s backoff base (ms).
        host_env_keys: Envoy's own environment variables the VM sees.
        responder: answers the filter's HTTP callouts (a table keyed by
            ``cluster``, ``cluster path`` or ``cluster authority path``, or
            a function of a ``Callout``); each cluster it names becomes an
            Envoy cluster.
        clusters: more callout cluster names (for a function responder).
        environment: VM environment variables.
        decoded: hand Envoy decoded bodies.
        limit: replay at most this many exchanges.
        filter_expr: only flows matching this mitmproxy filter expression.
        keep: which flows to keep in full (as the engine's ``keep``).
        max_kept: keep at most this many flows in full.
        request_timeout_s: wall-clock limit for one exchange (s); when it
            passes, Envoy is stopped and :class:`~wasmkit.errors.EnvoyError`
            raised.
        start_timeout_s: how long Envoy may take to be ready (s).
        binary: the Envoy binary (default: :func:`wasmkit.envoy.find_envoy`).
        log_level: Envoy's ``wasm`` log level (the filter's logs below it are
            dropped); wasmkit's replay defaults to ``info``, so pass the same
            level to both to compare logs.
        connection_manager: Envoy's connection manager, router and route
            knobs (the same object :func:`wasmkit.replay.run.replay` takes).
        allowed_capabilities: Envoy's ``capability_restriction_config``: the
            ABI functions the filter may use (as wasmkit's
            ``allowed_capabilities``; ``None`` or empty: no restriction).

    Raises:
        EnvoyNotFoundError: no Envoy binary.
        EnvoyError: Envoy refused the filter or its configuration (Envoy's
            own message), exited, or did not answer in time.
        CaptureFormatError: a file is not a capture wasmkit reads.
    """
    capture = load_capture(
        captures, decoded=decoded, limit=limit, filter_expr=filter_expr
    )
    runner = EnvoyRunner(
        filter,
        config=config,
        root_id=root_id,
        vm_config=vm_config,
        fail_open=fail_open,
        responder=responder,
        clusters=clusters,
        environment=environment,
        failure_policy=failure_policy,
        reload_backoff_ms=reload_backoff_ms,
        host_env_keys=host_env_keys,
        request_timeout_s=request_timeout_s,
        start_timeout_s=start_timeout_s,
        binary=binary,
        log_level=log_level,
        connection_manager=connection_manager,
        allowed_capabilities=allowed_capabilities,
    )
    collector = FlowCollector(keep, max_kept)
    capture_error: str | None = None
    try:
        runner.start()
        try:
            for exchange in capture:
                collector.add(runner.run(exchange))
        except CaptureReadError as exc:
            capture_error = str(exc)
    finally:
        runner.stop()
        capture.close()
    return ReplayResult(
        filter=runner.name,
        flows=collector.flows,
        callouts=list(runner.callouts),
        skipped=dict(capture.stats.skipped),
        capture_error=capture_error,
        keep=keep,
        counted=collector.counted(),
        runtime="envoy",
    )
