"""Proxy-wasm ABI knowledge: enums, the pairs format, signatures (stdlib only)."""

from __future__ import annotations

from wasmkit.abi.constants import (
    AbiVersion,
    Action,
    BufferType,
    LogLevel,
    MapType,
    MetricType,
    PeerType,
    StreamType,
    WasiErrno,
    WasmResult,
)

__all__ = [
    "AbiVersion",
    "Action",
    "BufferType",
    "LogLevel",
    "MapType",
    "MetricType",
    "PeerType",
    "StreamType",
    "WasiErrno",
    "WasmResult",
]
