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
from wasmkit.host.connection_manager import ENVOY_DEFAULTS, ConnectionManager

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

REFUSED_CLUSTER = "wasmkit_refused"
"""The cluster on a closed port (flows whose upstream refused the connection)."""
UPSTREAM_MARK_HEADER = "x-wasmkit-upstream"
"""Request header ``refused`` sends a flow to :data:`REFUSED_CLUSTER`; Envoy's
Lua filter takes it off before the Wasm filter sees the request."""

_UPSTREAM_LUA = f"""
function envoy_on_request(handle)
  local upstream = handle:headers():get("{UPSTREAM_MARK_HEADER}")
  if upstream then
    handle:headers():remove("{UPSTREAM_MARK_HEADER}")
    handle:streamInfo():dynamicMetadata():set("wasmkit", "upstream", upstream)
    handle:clearRouteCache()
  end
end
"""

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
    allowed_capabilities: tuple[str, ...] = ()
    """``vm_config.capability_restriction_config.allowed_capabilities``: the ABI
    functions the filter may use (empty: no restriction), as wasmkit's
    ``allowed_capabilities`` (see :mod:`wasmkit.host.capabilities`)."""


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


DETAILS_PREFIX = "wasmkit-details "
"""How the filter listener's access log line starts; then the stream's
response code details (``%RESPONSE_CODE_DETAILS%``)."""


def _details_log() -> list[dict[str, Any]]:
    # One line per stream on stderr, in the collector's format (logger
    # "access"), written when the stream ends, before the next marker.
    line = f"@wk|info|access|{DETAILS_PREFIX}%RESPONSE_CODE_DETAILS%\n"
    return [
        {
            "name": "envoy.access_loggers.stderr",
            "typed_config": {
                "@type": _TYPES
                + "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
                "log_format": {"text_format_source": {"inline_string": line}},
            },
        }
    ]


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
    if wasm.allowed_capabilities:
        # A map of names to (not yet implemented) SanitizationConfig, on the
        # VM: Envoy 1.40 deprecates the PluginConfig field of the same name.
        vm["capability_restriction_config"] = {
            "allowed_capabilities": {
                name: {} for name in sorted(set(wasm.allowed_capabilities))
            }
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": _TYPES + "envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": plugin,
        },
    }


def _router(cm: ConnectionManager = ENVOY_DEFAULTS) -> dict[str, Any]:
    config: dict[str, Any] = {
        "@type": _TYPES + "envoy.extensions.filters.http.router.v3.Router"
    }
    if cm.suppress_envoy_headers:
        config["suppress_envoy_headers"] = True
    return {"name": "envoy.filters.http.router", "typed_config": config}


def hcm_options(cm: ConnectionManager) -> dict[str, Any]:
    """The HTTP connection manager fields that differ from Envoy's defaults."""
    out: dict[str, Any] = {}
    if not cm.generate_request_id:
        out["generate_request_id"] = False
    if cm.preserve_external_request_id:
        out["preserve_external_request_id"] = True
    if cm.use_remote_address:
        out["use_remote_address"] = True
    if cm.xff_num_trusted_hops:
        out["xff_num_trusted_hops"] = cm.xff_num_trusted_hops
    if cm.skip_xff_append:
        out["skip_xff_append"] = True
    if cm.server_name != ENVOY_DEFAULTS.server_name:
        out["server_name"] = cm.server_name
    if cm.server_header_transformation != "OVERWRITE":
        out["server_header_transformation"] = cm.server_header_transformation
    if cm.upgrade_types:
        out["upgrade_configs"] = [{"upgrade_type": t} for t in cm.upgrade_types]
    if cm.proxy_100_continue:
        out["proxy_100_continue"] = True
    if cm.enable_trailers:
        out["http_protocol_options"] = {"enable_trailers": True}
    return out


def _listener(
    name: str,
    prefix: str,
    filters: list[Any],
    route: Any,
    cm: ConnectionManager = ENVOY_DEFAULTS,
) -> Any:
    listener: dict[str, Any] = {
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
                            **hcm_options(cm),
                            "route_config": {
                                "name": prefix,
                                "virtual_hosts": [
                                    {
                                        "name": prefix,
                                        "domains": ["*"],
                                        "routes": route
                                        if isinstance(route, list)
                                        else [{"match": {"prefix": "/"}, **route}],
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
    limit = cm.per_connection_buffer_limit_bytes
    if limit != ENVOY_DEFAULTS.per_connection_buffer_limit_bytes:
        listener["per_connection_buffer_limit_bytes"] = limit
    return listener


def bootstrap(
    wasm: WasmFilterConfig,
    *,
    upstream_port: int,
    callout_ports: Mapping[str, int],
    connection_manager: ConnectionManager = ENVOY_DEFAULTS,
    refused_port: int | None = None,
) -> dict[str, Any]:
    """The whole bootstrap: listeners, clusters and admin.

    Args:
        wasm: the filter.
        upstream_port: where the local upstream listens (loopback).
        callout_ports: callout cluster name -> the port of its local server.
        connection_manager: the filter listener's connection manager, router
            and route knobs (the same :class:`ConnectionManager` wasmkit's
            replay takes).
        refused_port: a loopback port nobody listens on, for flows whose
            upstream refused the connection (:data:`UPSTREAM_MARK_HEADER`).
    """
    cm = connection_manager
    route: dict[str, Any] = {"cluster": UPSTREAM_CLUSTER}
    if cm.route_timeout_ms != ENVOY_DEFAULTS.route_timeout_ms:
        ms = cm.route_timeout_ms
        route["timeout"] = f"{ms // 1000}.{ms % 1000:03d}s"
    if UPSTREAM_CLUSTER in callout_ports or REFUSED_CLUSTER in callout_ports:
        raise ValueError(f"{UPSTREAM_CLUSTER!r} is reserved for the upstream")
    # A flow whose capture says the upstream refused the connection goes to
    # a cluster on a closed port, so Envoy's router fails as it did; the Lua
    # filter in front takes the request's marker off before the filter runs.
    routes: list[dict[str, Any]] = []
    if refused_port is not None:
        routes.append(
            {
                "match": {
                    "prefix": "/",
                    "dynamic_metadata": [
                        {
                            "filter": "wasmkit",
                            "path": [{"key": "upstream"}],
                            "value": {"string_match": {"exact": "refused"}},
                        }
                    ],
                },
                "route": {**route, "cluster": REFUSED_CLUSTER},
            }
        )
    routes.append({"match": {"prefix": "/"}, "route": route})
    upstream_lua = {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": _TYPES + "envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": _UPSTREAM_LUA},
        },
    }
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
            [upstream_lua, wasm_filter(wasm), _router(cm)],
            routes,
            cm,
        ),
        _listener(
            MARKER_LISTENER,
            "wasmkit_marker",
            [lua, _router()],
            {"direct_response": {"status": 200}},
        ),
    ]
    hcm = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["access_log"] = _details_log()
    clusters = [_cluster(UPSTREAM_CLUSTER, upstream_port)]
    if cm.enable_trailers:
        clusters[0]["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _TYPES
                + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http_protocol_options": {"enable_trailers": True}
                },
            }
        }
    if refused_port is not None:
        clusters.append(_cluster(REFUSED_CLUSTER, refused_port))
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
