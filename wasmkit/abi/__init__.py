"""Proxy-wasm ABI knowledge: enums, pairs, signatures, module reader (stdlib only)."""

from __future__ import annotations

from wasmkit.abi.check import FilterCheck, check_filter, precheck
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
from wasmkit.abi.wasm_binary import ModuleInfo

__all__ = [
    "AbiVersion",
    "Action",
    "BufferType",
    "FilterCheck",
    "LogLevel",
    "MapType",
    "MetricType",
    "ModuleInfo",
    "PeerType",
    "StreamType",
    "WasiErrno",
    "WasmResult",
    "check_filter",
    "precheck",
]
