"""The in-process proxy-wasm host: load a filter, pass HTTP and TCP through it."""

from __future__ import annotations

from wasmkit.host.callouts import Callout, CalloutReply, table_responder
from wasmkit.host.connection_manager import ConnectionManager, UpstreamReset
from wasmkit.host.context import LogRecord, TraceEvent
from wasmkit.host.grpc import GrpcReply, GrpcRequest, grpc_table_responder
from wasmkit.host.higress import RedisCall, RedisReply, redis_table_responder
from wasmkit.host.message import Connection, HttpMessage, LocalReply, request, response
from wasmkit.host.plugin import FilterVm, Plugin, PluginConfig, VirtualClock, load
from wasmkit.host.proxy import Proxy
from wasmkit.host.record import render_text, to_record
from wasmkit.host.shared import SharedState
from wasmkit.host.stream import HttpStream, StreamResult
from wasmkit.host.tcp import TcpResult, TcpStream
from wasmkit.host.vm import CompiledModule, Limits, compile_module

__all__ = [
    "Callout",
    "CalloutReply",
    "CompiledModule",
    "Connection",
    "ConnectionManager",
    "FilterVm",
    "GrpcReply",
    "GrpcRequest",
    "HttpMessage",
    "HttpStream",
    "Limits",
    "LocalReply",
    "LogRecord",
    "Plugin",
    "PluginConfig",
    "Proxy",
    "RedisCall",
    "RedisReply",
    "SharedState",
    "StreamResult",
    "TcpResult",
    "TcpStream",
    "TraceEvent",
    "UpstreamReset",
    "VirtualClock",
    "compile_module",
    "grpc_table_responder",
    "load",
    "redis_table_responder",
    "render_text",
    "request",
    "response",
    "table_responder",
    "to_record",
]
