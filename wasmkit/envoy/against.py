"""``ReplayResult.against_envoy()``: the same replay again, through a real Envoy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wasmkit.abi.constants import LogLevel
from wasmkit.envoy import differ, run
from wasmkit.envoy.process import START_TIMEOUT_S
from wasmkit.envoy.runner import REQUEST_TIMEOUT_S
from wasmkit.host import engine
from wasmkit.host.callouts import TableResponder
from wasmkit.replay.results import ReplayResult

# What a wasmkit replay may use that Envoy's replay cannot reproduce; said in
# the comparison's notes.
_NOT_REPRODUCED = {
    "chunk_size": "bodies delivered in chunks of {} bytes (Envoy's reads decide "
    "the chunks)",
    "properties": "property overrides {} (Envoy reports its own properties)",
    "workers": "{} worker processes (Envoy replays in one)",
}


def _filter(value: Any) -> Any:
    # Envoy reads a wasm binary: a .wasm path (or Artifact) as it is, WAT
    # assembled; a compiled module has no binary left to give it.
    if isinstance(value, engine.CompiledModule):
        raise ValueError(
            "against_envoy: the replay was given a compiled module; Envoy needs "
            "the .wasm file or bytes"
        )
    if isinstance(value, bytes | bytearray) and bytes(value).startswith(b"\0asm"):
        return bytes(value)
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and not value.lstrip().startswith("(")
    ):
        path = Path(os.fspath(value))
        if path.suffix != ".wat":
            return value
    return engine.read_binary(value)[1]


def _environment(inputs: dict[str, Any]) -> Any:
    # ``environ`` is the older name of ``environment``.
    value = inputs.get("environment")
    return value if value is not None else inputs.get("environ")


def _log_level(value: Any) -> str:
    if isinstance(value, str):
        return value.lower()
    return LogLevel(value).name.lower()


def _timeouts(limits: Any) -> dict[str, float]:
    # Envoy has no per-callback deadline: the exchange gets the callback
    # limit as a wall-clock limit (at least the default), start-up likewise.
    out: dict[str, float] = {}
    timeout_ms = getattr(limits, "timeout_ms", None)
    if timeout_ms:
        out["request_timeout_s"] = max(REQUEST_TIMEOUT_S, timeout_ms / 1000)
    startup_ms = getattr(limits, "startup_timeout_ms", None)
    if startup_ms:
        out["start_timeout_s"] = max(START_TIMEOUT_S, startup_ms / 1000)
    return out


def envoy_arguments(result: ReplayResult) -> tuple[dict[str, Any], list[str]]:
    """The :func:`wasmkit.envoy.replay` arguments for ``result``'s replay.

    Returns the keyword arguments (``filter`` and ``captures`` included) and
    notes on what Envoy does not reproduce.

    Raises:
        ValueError: the inputs were not recorded, the result is Envoy's, or
            the replay used an ``upstream=`` function or a compiled module.
    """
    if result.runtime == "envoy":
        raise ValueError("against_envoy: this result is already Envoy's")
    inputs = result.inputs
    if inputs is None:
        raise ValueError(
            "against_envoy: this result does not say how it was made (replay "
            "with wasmkit.replay.run.replay, Filter.replay or %wasmkit replay)"
        )
    if inputs.get("upstream") is not None:
        raise ValueError(
            "against_envoy: the replay answered requests with an upstream= "
            "function; Envoy's upstream answers with the captured responses"
        )
    notes = []
    for key, text in _NOT_REPRODUCED.items():
        value = inputs.get(key)
        if value and not (key == "workers" and value == 1):
            notes.append(text.format(value))
    responder = inputs.get("responder")
    clusters = list(inputs.get("clusters") or ())
    if responder is not None and not isinstance(responder, TableResponder | dict):
        # Envoy only routes callouts to named clusters: those the filter used.
        clusters += sorted({c.cluster for c in result.callouts} - set(clusters))
    kwargs: dict[str, Any] = {
        "filter": _filter(inputs["filter"]),
        "captures": inputs["captures"],
        "config": inputs.get("config", b""),
        "root_id": inputs.get("root_id", ""),
        "vm_config": inputs.get("vm_configuration", b""),
        "fail_open": inputs.get("fail_open", False),
        "responder": responder,
        "clusters": clusters,
        "environment": _environment(inputs),
        "host_env_keys": tuple(inputs.get("host_env_keys") or ()),
        "failure_policy": inputs.get("failure_policy"),
        "decoded": inputs.get("decoded", False),
        "limit": inputs.get("limit"),
        "filter_expr": inputs.get("filter_expr"),
        "log_level": _log_level(inputs.get("log_level", LogLevel.INFO)),
        **_timeouts(inputs.get("limits")),
    }
    if inputs.get("allowed_capabilities"):
        # The same restriction, as the VM's capability_restriction_config.
        kwargs["allowed_capabilities"] = inputs["allowed_capabilities"]
    if inputs.get("reload_backoff_ms") is not None:
        kwargs["reload_backoff_ms"] = inputs["reload_backoff_ms"]
    if "connection_manager" in inputs:
        manager = inputs["connection_manager"]
        if manager is None:
            notes.append(
                "wasmkit modelled no connection manager (connection_manager="
                "None); Envoy always has one"
            )
        else:
            # The same knobs, written into Envoy's config.
            kwargs["connection_manager"] = manager
    return kwargs, notes


def against_envoy(result: ReplayResult, **overrides: Any) -> differ.EnvoyComparison:
    """Replay ``result``'s capture through Envoy and compare.

    See :meth:`wasmkit.replay.results.ReplayResult.against_envoy`.
    """
    kwargs, notes = envoy_arguments(result)
    kwargs.update(overrides)
    filter, captures = kwargs.pop("filter"), kwargs.pop("captures")
    envoy_result = run.replay(filter, captures, **kwargs)
    if result.keep != "all" or len(result.flows) < result.done_flows:
        # A compact replay kept only some flows in full: compare those.
        kept = {f.index for f in result.flows}
        envoy_result.flows = [f for f in envoy_result.flows if f.index in kept]
        notes.append(
            f"wasmkit kept {len(kept)} of {result.done_flows} flows in full "
            f"(keep={result.keep!r}): only those are compared"
        )
    comparison = differ.compare_envoy(result, envoy_result, notes=notes)
    result.envoy_comparison = comparison
    return comparison
