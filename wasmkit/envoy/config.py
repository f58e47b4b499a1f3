"""Envoy's bootstrap configuration for one replay, written as JSON.

One listener on loopback with an HTTP connection manager left at Envoy's
defaults, the Wasm HTTP filter (V8) and the router; a cluster for the local
upstream and one per callout target; a second listener, without the filter,
that only answers the runner's markers (see :mod:`wasmkit.envoy.collector`);
an admin endpoint for readiness. Ports 0 let Envoy pick free ports, read back
from the admin endpoint.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmkit.host import failure

LOOPBACK = "127.0.0.1"
UPSTREAM_CLUSTER = "wasmkit_upstream"
"""The cluster the route sends every request to (the local upstream)."""
FILTER_LISTENER = "wasmkit"
"""The listener with the Wasm filter."""
MARKER_LISTENER = "wasmkit_marker"
"""The listener without it, answering the runner's markers."""
MARK_HEADER = "x-wasmkit-mark"
"""The header a marker request carries; Envoy logs its value."""
MARK_PREFIX = "wasmkit-mark "
"""How a marker's log line starts."""
PLUGIN_NAME = "wasmkit"
"""The plugin's name (Envoy's ``wasm log <name> <root id> <vm id>:`` prefix)."""
VM_ID = "wasmkit"
"""The VM id."""
RUNTIME = "envoy.wasm.runtime.v8"

_TYPES = "type.googleapis.com/"
_HCM = _TYPES + (
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)

_MARK_LUA = f"""
function envoy_on_request(handle)
  local mark = handle:headers():get("{MARK_HEADER}") or ""
  handle:logInfo("{MARK_PREFIX}" .. mark)
end
"""


@dataclass(frozen=True, slots=True)
class WasmFilterConfig:
    """The Wasm filter as the Envoy config names it."""

    module: Path
    """The ``.wasm`` file Envoy loads (``vm_config.code.local.filename``)."""
    root_id: str = ""
    """The plugin's root id."""
    configuration: bytes = b""
    """The plugin configuration (given to ``proxy_on_configure``)."""
    vm_configuration: bytes = b""
    """The VM configuration (given to ``proxy_on_vm_start``)."""
    fail_open: bool = False
    """Envoy's deprecated ``fail_open: true`` (the failing stream too goes on
    without the filter); written instead of ``failure_policy``."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """``vm_config.environment_variables.key_values``."""
    failure_policy: str | None = None
    """``failure_policy``: ``fail_closed`` (``None``), ``fail_open``,
    ``fail_reload`` (see :mod:`wasmkit.host.failure`)."""
    reload_backoff_ms: int | None = None
    """``reload_config.backoff.base_interval`` (ms) for ``fail_reload``;
    ``None``: Envoy's 1 s."""
    host_env_keys: tuple[str, ...] = ()
    """``vm_config.environment_variables.host_env_keys``: Envoy's own
    environment variables the VM sees."""


def _any_bytes(data: bytes) -> dict[str, Any]:
    # Envoy hands a StringValue / BytesValue to the filter as its raw bytes.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {
            "@type": _TYPES + "google.protobuf.BytesValue",
            "value": base64.b64encode(data).decode(),
        }
    return {"@type": _TYPES + "google.protobuf.StringValue", "value": text}


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": LOOPBACK, "port_value": port}}


def _cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _address(port)}}]}
            ],
        },
    }


def wasm_filter(wasm: WasmFilterConfig) -> dict[str, Any]:
    """The ``envoy.filters.http.wasm`` entry of the HTTP filter chain."""
    vm: dict[str, Any] = {
        "vm_id": VM_ID,
        "runtime": RUNTIME,
        "code": {"local": {"filename": str(wasm.module)}},
    }
    if wasm.vm_configuration:
        vm["configuration"] = _any_bytes(wasm.vm_configuration)
    env: dict[str, Any] = {}
    if wasm.host_env_keys:
        env["host_env_keys"] = list(wasm.host_env_keys)
    if wasm.environment:
        env["key_values"] = dict(wasm.environment)
    if env:
        vm["environment_variables"] = env
    plugin: dict[str, Any] = {
        "name": PLUGIN_NAME,
        "root_id": wasm.root_id,
        "vm_config": vm,
    }
    # Envoy refuses both fields at once; fail_open is the deprecated one.
    policy = failure.resolve_policy(wasm.failure_policy, wasm.fail_open)
    if wasm.fail_open:
        plugin["fail_open"] = True
    else:
        plugin["failure_policy"] = policy.upper()
    if policy == "fail_reload" and wasm.reload_backoff_ms is not None:
        seconds = wasm.reload_backoff_ms / 1000
        plugin["reload_config"] = {"backoff": {"base_interval": f"{seconds:.3f}s"}}
    if wasm.configuration:
        plugin["configuration"] = _any_bytes(wasm.configuration)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": _TYPES + "envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": plugin,
        },
    }


def _router() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": _TYPES + "envoy.extensions.filters.http.router.v3.Router"
        },
    }


def _listener(name: str, prefix: str, filters: list[Any], route: Any) -> Any:
    return {
        "name": name,
        "address": _address(0),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _HCM,
                            "stat_prefix": prefix,
                            "route_config": {
                                "name": prefix,
                                "virtual_hosts": [
                                    {
                                        "name": prefix,
                                        "domains": ["*"],
                                        "routes": [{"match": {"prefix": "/"}, **route}],
                                    }
                                ],
                            },
                            "http_filters": filters,
                        },
                    }
                ]
            }
        ],
    }


def bootstrap(
    wasm: WasmFilterConfig,
    *,
    upstream_port: int,
    callout_ports: Mapping[str, int],
) -> dict[str, Any]:
    """The whole bootstrap: listeners, clusters and admin.

    Args:
        wasm: the filter.
        upstream_port: where the local upstream listens (loopback).
        callout_ports: callout cluster name -> the port of its local server.
    """
    if UPSTREAM_CLUSTER in callout_ports:
        raise ValueError(f"{UPSTREAM_CLUSTER!r} is reserved for the upstream")
    lua = {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": _TYPES + "envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": _MARK_LUA},
        },
    }
    listeners = [
        _listener(
            FILTER_LISTENER,
            "wasmkit",
            [wasm_filter(wasm), _router()],
            {"route": {"cluster": UPSTREAM_CLUSTER}},
        ),
        _listener(
            MARKER_LISTENER,
            "wasmkit_marker",
            [lua, _router()],
            {"direct_response": {"status": 200}},
        ),
    ]
    clusters = [_cluster(UPSTREAM_CLUSTER, upstream_port)]
    clusters += [_cluster(name, port) for name, port in sorted(callout_ports.items())]
    return {
        "node": {"id": "wasmkit", "cluster": "wasmkit"},
        "admin": {"address": _address(0)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def write_bootstrap(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` as JSON (Envoy reads ``.json`` bootstraps) to ``path``."""
    path.write_text(json.dumps(config, indent=1))
    return path
