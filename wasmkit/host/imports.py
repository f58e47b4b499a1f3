"""One function per ``proxy_*`` host import.

Each follows the same steps: validate enums, read guest memory, act on the
current context, write results back (allocating in the guest), return a
:class:`WasmResult`. A bad pointer, length or enum is answered with the ABI's
status, never an exception. Functions are named after the spec symbol without
``proxy_``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from wasmkit.abi import pairs
from wasmkit.abi.constants import (
    AbiVersion,
    BufferType,
    LogLevel,
    MapType,
    StreamType,
    WasmResult,
)
from wasmkit.host import properties, quotas
from wasmkit.host.context import HttpContext, RootContext, Side, TcpContext
from wasmkit.host.events import decode_pairs
from wasmkit.host.message import HeaderPairs, LocalReply
from wasmkit.host.vm import GuestExit

if TYPE_CHECKING:
    from wasmkit.host.plugin import FilterVm

OK = int(WasmResult.OK)
NOT_FOUND = int(WasmResult.NOT_FOUND)
BAD_ARGUMENT = int(WasmResult.BAD_ARGUMENT)
INVALID_MEMORY_ACCESS = int(WasmResult.INVALID_MEMORY_ACCESS)
UNIMPLEMENTED = int(WasmResult.UNIMPLEMENTED)
_U32 = 0xFFFFFFFF


# --- logging, time, contexts ---


def log(h: FilterVm, level: int, msg_ptr: int, msg_size: int) -> int:
    if level > LogLevel.CRITICAL:
        return BAD_ARGUMENT
    if level < h.log_level:
        return OK if h.mem.writable(msg_ptr, msg_size) else INVALID_MEMORY_ACCESS
    # Under the log quota only what can be kept is copied.
    room = h.log_room()
    if msg_size > room and not h.mem.writable(msg_ptr, msg_size):
        return INVALID_MEMORY_ACCESS
    raw = h.mem.read(msg_ptr, min(msg_size, room))
    if raw is None:
        return INVALID_MEMORY_ACCESS
    h.log_guest(
        LogLevel(level), raw.decode("utf-8", "replace"), "proxy_log", size=msg_size
    )
    return OK


def get_log_level(h: FilterVm, ret: int) -> int:
    return OK if h.mem.write_u32(ret, int(h.log_level)) else INVALID_MEMORY_ACCESS


def get_current_time_nanoseconds(h: FilterVm, ret: int) -> int:
    return OK if h.mem.write_u64(ret, h.clock.now_ns()) else INVALID_MEMORY_ACCESS


def set_tick_period_milliseconds(h: FilterVm, period: int) -> int:
    root = h.ctx.root
    if isinstance(root, RootContext):
        h.events.set_tick_period(root, period)
    # Always OK in Envoy, also from the VM context (start-up), which has no root
    # to tick: Rust's SDK panics on any other status.
    return OK


def set_effective_context(h: FilterVm, context_id: int) -> int:
    ctx = h.contexts.get(context_id)
    if ctx is None:
        return BAD_ARGUMENT
    h.effective = ctx
    return OK


def done(h: FilterVm) -> int:
    ctx = h.ctx
    if isinstance(ctx, RootContext) and ctx.done_pending:
        ctx.done_pending = False
        h.finished_roots.append(ctx)
        return OK
    return NOT_FOUND


def get_status(h: FilterVm, ret_code: int, ret_msg_ptr: int, ret_msg_size: int) -> int:
    root = h.ctx.root
    code, message = root.last_status if isinstance(root, RootContext) else (0, b"")
    if not h.mem.write_u32(ret_code, code):
        return INVALID_MEMORY_ACCESS
    ok = h.mem.copy_out(message, ret_msg_ptr, ret_msg_size)
    return OK if ok else INVALID_MEMORY_ACCESS


# --- configuration (0.1.0) ---


def get_configuration(h: FilterVm, ret_ptr: int, ret_size: int) -> int:
    root = h.ctx.root
    if isinstance(root, RootContext) and root.configuring:
        data = root.plugin.configuration
    else:
        data = h.vm_configuration
    return OK if h.mem.copy_out(data, ret_ptr, ret_size) else INVALID_MEMORY_ACCESS


# --- buffers ---


def _buffer(
    h: FilterVm, buffer_type: int, write: bool = False
) -> bytes | bytearray | memoryview | None:
    ctx = h.ctx
    if buffer_type == BufferType.VM_CONFIGURATION:
        return h.vm_configuration
    if buffer_type == BufferType.PLUGIN_CONFIGURATION:
        root = ctx.root
        if isinstance(root, RootContext) and root.configuring:
            return root.plugin.configuration
        return None
    if buffer_type == BufferType.CALL_DATA:
        return h.call_data
    if buffer_type == BufferType.HTTP_CALL_RESPONSE_BODY:
        reply = h.events.reply
        return None if reply is None else reply.body
    if buffer_type == BufferType.GRPC_RECEIVE_BUFFER:
        return h.events.grpc_message
    if isinstance(ctx, HttpContext) and buffer_type <= BufferType.HTTP_RESPONSE_BODY:
        side = (
            ctx.request if buffer_type == BufferType.HTTP_REQUEST_BODY else ctx.response
        )
        if not side.body_available:
            return None
        # Reads see the held frames as they came; a write joins them once.
        return side.buffer if write else side.held.view()
    if isinstance(ctx, TcpContext) and buffer_type in (
        BufferType.DOWNSTREAM_DATA,
        BufferType.UPSTREAM_DATA,
    ):
        downstream = buffer_type == BufferType.DOWNSTREAM_DATA
        tcp = ctx.downstream if downstream else ctx.upstream
        # Envoy sets its buffer pointer for a data callback and keeps it while
        # the data is paused.
        return tcp.buffer if tcp.attached else None
    return None


def _buffer_type_ok(h: FilterVm, buffer_type: int) -> bool:
    if buffer_type > BufferType.CALL_DATA:
        return False
    return not (
        h.abi_version is AbiVersion.V0_1_0
        and buffer_type >= BufferType.VM_CONFIGURATION
    )


def get_buffer_bytes(
    h: FilterVm,
    buffer_type: int,
    start: int,
    max_size: int,
    ret_ptr: int,
    ret_size: int,
) -> int:
    if not _buffer_type_ok(h, buffer_type):
        return BAD_ARGUMENT
    buf = _buffer(h, buffer_type)
    if buf is None:
        return NOT_FOUND
    if start >= len(buf):
        data = b""
    elif type(buf) is bytes:
        data = buf[start : start + max_size]
    else:
        data = bytes(memoryview(buf)[start : start + max_size])  # one copy
    size_out: int | None = ret_size
    if ret_size == max_size and ret_size != ret_ptr + 4:
        # @solo-io/proxy-runtime 0.1.8 passes the length where the size pointer
        # belongs; writing there would corrupt the guest's static data.
        size_out = None
        h.note_quirk(
            "proxy_get_buffer_bytes: size pointer equals the length; not written"
        )
    if not h.mem.copy_out(data, ret_ptr, size_out):
        return INVALID_MEMORY_ACCESS
    h.out = data
    return OK


def set_buffer_bytes(
    h: FilterVm, buffer_type: int, start: int, size: int, data_ptr: int, data_size: int
) -> int:
    if not _buffer_type_ok(h, buffer_type):
        return BAD_ARGUMENT
    data = h.mem.read(data_ptr, data_size)
    if data is None:
        return INVALID_MEMORY_ACCESS
    buf = _buffer(h, buffer_type, write=True)
    if buf is None:
        return NOT_FOUND
    if not isinstance(buf, bytearray):
        return BAD_ARGUMENT  # configuration and call data are read-only
    if h.profile == "spec":
        buf[start : start + size] = data
    elif start == 0:
        del buf[:size]
        buf[:0] = data
    elif start >= len(buf):
        buf.extend(data)
    else:
        return BAD_ARGUMENT  # Envoy supports only replace-from-0 and append
    return OK


def get_buffer_status(
    h: FilterVm, buffer_type: int, ret_len: int, ret_flags: int
) -> int:
    if not _buffer_type_ok(h, buffer_type):
        return BAD_ARGUMENT
    buf = _buffer(h, buffer_type)
    if buf is None:
        return NOT_FOUND
    ok = h.mem.write_u32(ret_len, len(buf)) and h.mem.write_u32(ret_flags, 0)
    return OK if ok else INVALID_MEMORY_ACCESS


# --- header maps ---


def _map(h: FilterVm, map_type: int, *, create: bool = False) -> HeaderPairs | None:
    ctx = h.ctx
    if not isinstance(ctx, HttpContext) or map_type > MapType.HTTP_RESPONSE_TRAILERS:
        return h.callout_map(map_type)
    side = ctx.request if map_type <= MapType.HTTP_REQUEST_TRAILERS else ctx.response
    if map_type in (MapType.HTTP_REQUEST_HEADERS, MapType.HTTP_RESPONSE_HEADERS):
        return side.headers
    if ctx.in_log and map_type == MapType.HTTP_REQUEST_TRAILERS:
        return None  # Envoy's access log phase has no request trailers
    if side.trailers is None and create and _may_create_trailers(side):
        side.trailers = []
    return side.trailers


def _may_create_trailers(side: Side) -> bool:
    # Envoy lets the last body callback add trailers to a message without them.
    return side.in_body_callback and side.body_eos


def get_header_map_size(h: FilterVm, map_type: int, ret_size: int) -> int:
    if map_type > MapType.HTTP_CALL_RESPONSE_TRAILERS:
        return BAD_ARGUMENT
    items = _map(h, map_type) or []
    size = len(pairs.encode(items)) if h.profile == "spec" else pairs.byte_size(items)
    return OK if h.mem.write_u32(ret_size, size) else INVALID_MEMORY_ACCESS


def get_header_map_pairs(
    h: FilterVm, map_type: int, ret_ptr: int, ret_size: int
) -> int:
    if map_type > MapType.HTTP_CALL_RESPONSE_TRAILERS:
        return BAD_ARGUMENT
    items = _map(h, map_type)
    data = pairs.encode(items) if items else b""
    return OK if h.mem.copy_out(data, ret_ptr, ret_size) else INVALID_MEMORY_ACCESS


def _writable(h: FilterVm, map_type: int, create: bool = False) -> HeaderPairs | int:
    if map_type > MapType.HTTP_CALL_RESPONSE_TRAILERS:
        return BAD_ARGUMENT
    if map_type > MapType.HTTP_RESPONSE_TRAILERS:
        return BAD_ARGUMENT  # callout and gRPC maps are read-only
    items = _map(h, map_type, create=create)
    if items is None:
        return BAD_ARGUMENT
    ctx = h.ctx
    if isinstance(ctx, HttpContext) and ctx.in_log:
        return BAD_ARGUMENT  # maps are read-only in on_log
    return items


def set_header_map_pairs(
    h: FilterVm, map_type: int, pairs_ptr: int, pairs_size: int
) -> int:
    limit = h.limits.header_map_bytes
    if pairs_size > limit + 8 * h.limits.header_map_pairs + 4:
        if not h.mem.writable(pairs_ptr, pairs_size):
            return INVALID_MEMORY_ACCESS
        raise quotas.exceeded("header map bytes", pairs_size, "header_map_bytes", limit)
    raw = h.mem.read(pairs_ptr, pairs_size)
    if raw is None:
        return INVALID_MEMORY_ACCESS
    items = _writable(h, map_type, create=True)
    if isinstance(items, int):
        return items
    try:
        new = pairs.decode(raw)
    except pairs.PairsError:
        new = []  # cpp-host treats an undecodable map as empty
    if len(new) > h.limits.header_map_pairs:
        raise quotas.exceeded(
            "header map fields", len(new), "header_map_pairs", h.limits.header_map_pairs
        )
    items[:] = [(k.lower(), v) for k, v in new]
    return OK


def get_header_map_value(
    h: FilterVm, map_type: int, key_ptr: int, key_size: int, ret_ptr: int, ret_size: int
) -> int:
    if map_type > MapType.HTTP_CALL_RESPONSE_TRAILERS:
        return BAD_ARGUMENT
    key = h.mem.read(key_ptr, key_size)
    if key is None:
        return INVALID_MEMORY_ACCESS
    items = _map(h, map_type)
    if items is None:
        ctx = h.ctx
        if isinstance(ctx, HttpContext) and ctx.in_log:
            # Envoy: maps may be absent while logging; answered like a missing key.
            return _missing_value(h, ret_ptr, ret_size)
        return BAD_ARGUMENT  # Envoy: the map does not exist in this phase
    key = key.lower()
    for name, value in items:
        if name == key:
            h.out = value
            return (
                OK
                if h.mem.copy_out(value, ret_ptr, ret_size)
                else INVALID_MEMORY_ACCESS
            )
    return _missing_value(h, ret_ptr, ret_size)


def _missing_value(h: FilterVm, ret_ptr: int, ret_size: int) -> int:
    if h.abi_version is AbiVersion.V0_1_0:
        return OK if h.mem.copy_out(b"", ret_ptr, ret_size) else INVALID_MEMORY_ACCESS
    return NOT_FOUND


def _edit_args(
    h: FilterVm, map_type: int, key_ptr: int, key_size: int, val_ptr: int, val_size: int
) -> tuple[HeaderPairs, bytes, bytes] | int:
    # Shared steps of add/replace: read key and value, find the writable map.
    key = h.mem.read(key_ptr, key_size)
    value = h.mem.read(val_ptr, val_size)
    if key is None or value is None:
        return INVALID_MEMORY_ACCESS
    items = _writable(h, map_type, create=True)
    if isinstance(items, int):
        return items
    return items, key.lower(), value


def add_header_map_value(
    h: FilterVm, map_type: int, key_ptr: int, key_size: int, val_ptr: int, val_size: int
) -> int:
    found = _edit_args(h, map_type, key_ptr, key_size, val_ptr, val_size)
    if isinstance(found, int):
        return found
    items, key, value = found
    quotas.check_header_map(items, len(key) + len(value), h.limits)
    _insert(items, key, value)
    return OK


def _insert(items: HeaderPairs, key: bytes, value: bytes) -> None:
    # Where Envoy's header map puts a new field: a pseudo-header after the
    # last pseudo-header, any other at the end.
    if key[:1] == b":":
        at = 0
        while at < len(items) and items[at][0][:1] == b":":
            at += 1
        items.insert(at, (key, value))
    else:
        items.append((key, value))


def replace_header_map_value(
    h: FilterVm, map_type: int, key_ptr: int, key_size: int, val_ptr: int, val_size: int
) -> int:
    found = _edit_args(h, map_type, key_ptr, key_size, val_ptr, val_size)
    if isinstance(found, int):
        return found
    items, key, value = found
    # Envoy's setCopy: every field of that name removed, then the new one
    # added, so a replaced header moves to the end (of the pseudo-headers).
    kept = [(name, v) for name, v in items if name != key]
    quotas.check_header_map(kept, len(key) + len(value), h.limits)
    items[:] = kept
    _insert(items, key, value)
    return OK


def remove_header_map_value(
    h: FilterVm, map_type: int, key_ptr: int, key_size: int
) -> int:
    key = h.mem.read(key_ptr, key_size)
    if key is None:
        return INVALID_MEMORY_ACCESS
    items = _writable(h, map_type)
    if isinstance(items, int):
        return items
    key = key.lower()
    items[:] = [(name, v) for name, v in items if name != key]
    return OK


# --- stream control ---


def _stream_action(h: FilterVm, stream_type: int, close: bool) -> int:
    if stream_type > StreamType.UPSTREAM:
        return BAD_ARGUMENT
    ctx = h.ctx
    if stream_type == StreamType.UPSTREAM and not close:
        return UNIMPLEMENTED
    if isinstance(ctx, HttpContext) and stream_type <= StreamType.HTTP_RESPONSE:
        pending = ctx.pending_close if close else ctx.pending_continue
        pending.append(StreamType(stream_type))
    if isinstance(ctx, TcpContext) and stream_type >= StreamType.DOWNSTREAM:
        # Both close the downstream connection (Envoy: FlushWrite close).
        ctx.pending.append(("close" if close else "continue", StreamType(stream_type)))
    # Envoy answers OK and does nothing when the context has no such stream (a
    # root context, TCP stream types on an HTTP stream, HTTP ones on TCP).
    return OK


def continue_stream(h: FilterVm, stream_type: int) -> int:
    return _stream_action(h, stream_type, close=False)


def close_stream(h: FilterVm, stream_type: int) -> int:
    return _stream_action(h, stream_type, close=True)


def continue_request(h: FilterVm) -> int:
    return _stream_action(h, StreamType.HTTP_REQUEST, close=False)


def continue_response(h: FilterVm) -> int:
    return _stream_action(h, StreamType.HTTP_RESPONSE, close=False)


def clear_route_cache(h: FilterVm) -> int:
    return OK


_DETAILS_SPACES = str.maketrans(dict.fromkeys(" \t\f\v\n\r", "_"))


def send_local_response(
    h: FilterVm,
    status: int,
    details_ptr: int,
    details_size: int,
    body_ptr: int,
    body_size: int,
    headers_ptr: int,
    headers_size: int,
    grpc_status: int,
) -> int:
    details = h.mem.read(details_ptr, details_size)
    body = h.mem.read(body_ptr, body_size)
    raw_headers = h.mem.read(headers_ptr, headers_size)
    if details is None or body is None or raw_headers is None:
        return INVALID_MEMORY_ACCESS
    ctx = h.ctx
    if not isinstance(ctx, HttpContext):
        return OK  # Envoy: without a stream (a root context) nothing is sent
    try:
        headers = [(k.lower(), v) for k, v in pairs.decode(raw_headers)]
    except pairs.PairsError:
        headers = []  # cpp-host reads undecodable pairs as an empty map
    text = details.decode("utf-8", "replace")
    if h.profile == "envoy":
        # StringUtil::replaceAllEmptySpace: each whitespace character becomes "_".
        text = text.translate(_DETAILS_SPACES)
    ctx.local_reply = LocalReply(
        status=status,
        headers=headers,
        body=body,
        details=text,
        grpc_status=grpc_status if 0 <= grpc_status <= 16 else None,
        callback=h.current_callback,
    )
    return OK


# --- properties ---


def get_property(
    h: FilterVm, path_ptr: int, path_size: int, ret_ptr: int, ret_size: int
) -> int:
    raw = h.mem.read(path_ptr, path_size)
    if raw is None:
        return INVALID_MEMORY_ACCESS
    value = h.lookup_property(properties.split_path(raw))
    if value is None:
        return NOT_FOUND
    h.out = value
    return OK if h.mem.copy_out(value, ret_ptr, ret_size) else INVALID_MEMORY_ACCESS


def set_property(
    h: FilterVm, path_ptr: int, path_size: int, val_ptr: int, val_size: int
) -> int:
    path = h.mem.read(path_ptr, path_size)
    value = h.mem.read(val_ptr, val_size)
    if path is None or value is None:
        return INVALID_MEMORY_ACCESS
    ctx = h.ctx
    if not isinstance(ctx, (HttpContext, TcpContext)):
        return NOT_FOUND  # Envoy: no stream info (filter state) to write to
    budget = h.budget
    budget.property_bytes += len(path) + len(value)
    if budget.property_bytes > h.limits.property_bytes:
        raise quotas.exceeded(
            "bytes of properties set",
            budget.property_bytes,
            "property_bytes",
            h.limits.property_bytes,
        )
    ctx.properties[properties.split_path(path)] = value
    return OK


# --- foreign functions ---


def _compress(data: bytes) -> bytes:
    return zlib.compress(data)


def _uncompress(data: bytes) -> bytes:
    return zlib.decompress(data)


def _bounded_uncompress(data: bytes, cap: int) -> bytes | None:
    # Decompress in steps, stopping at ``cap`` bytes of output (a bomb).
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, cap + 1)
    if len(out) > cap or inflater.unconsumed_tail:
        return None
    out += inflater.flush()
    if len(out) > cap:
        return None
    if not inflater.eof:
        raise zlib.error("incomplete or truncated stream")
    return out


BUILTIN_FOREIGN: dict[str, Callable[[bytes], bytes]] = {
    "compress": _compress,
    "uncompress": _uncompress,
}
"""Foreign functions Envoy registers and wasmkit provides too."""


def call_foreign_function(
    h: FilterVm,
    name_ptr: int,
    name_size: int,
    args_ptr: int,
    args_size: int,
    ret_ptr: int,
    ret_size: int,
) -> int:
    name = h.mem.read(name_ptr, name_size)
    args = h.mem.read(args_ptr, args_size)
    if name is None or args is None:
        return INVALID_MEMORY_ACCESS
    text = name.decode("utf-8", "replace")
    fn = h.foreign_functions.get(text)
    if fn is None:
        return NOT_FOUND
    cap = h.limits.foreign_output_bytes
    try:
        if fn is _uncompress:
            result = _bounded_uncompress(args, cap)
            if result is None:
                return BAD_ARGUMENT  # would decompress past the output cap
        else:
            result = fn(args)
    except (zlib.error, ValueError):
        return int(WasmResult.SERIALIZATION_FAILURE)
    if len(result) > cap:
        return BAD_ARGUMENT
    if ret_ptr == 0:
        return OK
    return OK if h.mem.copy_out(result, ret_ptr, ret_size) else INVALID_MEMORY_ACCESS


# --- gRPC callouts (wasmkit.host.grpc); cpp-host acts on the root context ---


def _grpc_names(
    h: FilterVm, service_ptr: int, service_size: int, method_ptr: int, method_size: int
) -> tuple[str, str] | None:
    service = h.mem.read(service_ptr, service_size)
    method = h.mem.read(method_ptr, method_size)
    if service is None or method is None:
        return None
    return service.decode("utf-8", "replace"), method.decode("utf-8", "replace")


def grpc_call(
    h: FilterVm,
    upstream_ptr: int,
    upstream_size: int,
    service_ptr: int,
    service_size: int,
    method_ptr: int,
    method_size: int,
    metadata_ptr: int,
    metadata_size: int,
    message_ptr: int,
    message_size: int,
    timeout_ms: int,
    ret_token: int,
) -> int:
    upstream = h.mem.read(upstream_ptr, upstream_size)
    names = _grpc_names(h, service_ptr, service_size, method_ptr, method_size)
    raw_metadata = h.mem.read(metadata_ptr, metadata_size)
    message = h.mem.read(message_ptr, message_size)
    if upstream is None or names is None or raw_metadata is None or message is None:
        return INVALID_MEMORY_ACCESS
    if not h.mem.writable(ret_token, 4):
        return INVALID_MEMORY_ACCESS
    status, token = h.events.grpc.call(
        h.ctx,
        upstream,
        *names,
        decode_pairs(raw_metadata) or [],  # cpp-host: undecodable pairs are none
        message,
        timeout_ms & _U32,
    )
    if status == WasmResult.OK:
        h.mem.write_u32(ret_token, token)
        h.out = token
    return int(status)


def grpc_stream(
    h: FilterVm,
    upstream_ptr: int,
    upstream_size: int,
    service_ptr: int,
    service_size: int,
    method_ptr: int,
    method_size: int,
    metadata_ptr: int,
    metadata_size: int,
    ret_token: int,
) -> int:
    upstream = h.mem.read(upstream_ptr, upstream_size)
    names = _grpc_names(h, service_ptr, service_size, method_ptr, method_size)
    raw_metadata = h.mem.read(metadata_ptr, metadata_size)
    if upstream is None or names is None or raw_metadata is None:
        return INVALID_MEMORY_ACCESS
    if not h.mem.writable(ret_token, 4):
        return INVALID_MEMORY_ACCESS
    status, token = h.events.grpc.stream(
        h.ctx, upstream, *names, decode_pairs(raw_metadata) or []
    )
    if status == WasmResult.OK:
        h.mem.write_u32(ret_token, token)
        h.out = token
    return int(status)


def grpc_send(
    h: FilterVm, token: int, message_ptr: int, message_size: int, end_stream: int
) -> int:
    message = h.mem.read(message_ptr, message_size)
    if message is None:
        return INVALID_MEMORY_ACCESS
    return int(h.events.grpc.send(h.ctx, token & _U32, message, end_stream != 0))


def grpc_cancel(h: FilterVm, token: int) -> int:
    return int(h.events.grpc.cancel(h.ctx, token & _U32))


def grpc_close(h: FilterVm, token: int) -> int:
    return int(h.events.grpc.close(h.ctx, token & _U32))


# --- HTTP callouts ---


def http_call(
    h: FilterVm,
    upstream_ptr: int,
    upstream_size: int,
    headers_ptr: int,
    headers_size: int,
    body_ptr: int,
    body_size: int,
    trailers_ptr: int,
    trailers_size: int,
    timeout_ms: int,
    ret_token: int,
) -> int:
    upstream = h.mem.read(upstream_ptr, upstream_size)
    raw_headers = h.mem.read(headers_ptr, headers_size)
    body = h.mem.read(body_ptr, body_size)
    raw_trailers = h.mem.read(trailers_ptr, trailers_size)
    if upstream is None or raw_headers is None or body is None or raw_trailers is None:
        return INVALID_MEMORY_ACCESS
    if not h.mem.writable(ret_token, 4):
        return INVALID_MEMORY_ACCESS
    headers = decode_pairs(raw_headers)
    trailers = decode_pairs(raw_trailers)
    if headers is None or trailers is None:
        return BAD_ARGUMENT
    status, token = h.events.http_call(
        h.ctx, upstream.decode("utf-8", "replace"), headers, body, trailers, timeout_ms
    )
    if status == WasmResult.OK:
        h.mem.write_u32(ret_token, token)
        h.out = token
    return int(status)


# --- shared data and queues ---


def get_shared_data(
    h: FilterVm, key_ptr: int, key_size: int, ret_ptr: int, ret_size: int, ret_cas: int
) -> int:
    key = h.mem.read(key_ptr, key_size)
    if key is None:
        return INVALID_MEMORY_ACCESS
    found = h.shared.get(h.vm_id, key)
    if found is None:
        return NOT_FOUND
    value, cas = found
    if not h.mem.writable(ret_cas, 4) or not h.mem.copy_out(value, ret_ptr, ret_size):
        return INVALID_MEMORY_ACCESS
    h.mem.write_u32(ret_cas, cas)
    h.out = value
    return OK


def set_shared_data(
    h: FilterVm, key_ptr: int, key_size: int, value_ptr: int, value_size: int, cas: int
) -> int:
    limits = h.limits
    if key_size + value_size > limits.shared_data_bytes:
        if not h.mem.writable(key_ptr, key_size):
            return INVALID_MEMORY_ACCESS
        if not h.mem.writable(value_ptr, value_size):
            return INVALID_MEMORY_ACCESS
        raise quotas.exceeded(
            "shared data bytes", key_size + value_size, "shared_data_bytes",
            limits.shared_data_bytes,
        )  # fmt: skip
    key = h.mem.read(key_ptr, key_size)
    value = h.mem.read(value_ptr, value_size)
    if key is None or value is None:
        return INVALID_MEMORY_ACCESS
    over = h.shared.over_quota(h.vm_id, key, value, limits)
    if over is not None:
        raise over
    return int(h.shared.set(h.vm_id, key, value, cas))


def register_shared_queue(
    h: FilterVm, name_ptr: int, name_size: int, ret_id: int
) -> int:
    name = h.mem.read(name_ptr, name_size)
    if name is None or not h.mem.writable(ret_id, 4):
        return INVALID_MEMORY_ACCESS
    root = h.ctx.root
    if not isinstance(root, RootContext):
        return BAD_ARGUMENT
    qid = h.shared.register_queue(h.vm_id, name, h.events.queue_notifier(root))
    h.mem.write_u32(ret_id, qid)
    h.out = qid
    return OK


def resolve_shared_queue(
    h: FilterVm,
    vm_id_ptr: int,
    vm_id_size: int,
    name_ptr: int,
    name_size: int,
    ret_id: int,
) -> int:
    vm_id = h.mem.read(vm_id_ptr, vm_id_size)
    name = h.mem.read(name_ptr, name_size)
    if vm_id is None or name is None or not h.mem.writable(ret_id, 4):
        return INVALID_MEMORY_ACCESS
    owner = vm_id.decode("utf-8", "replace") if vm_id else h.vm_id
    qid = h.shared.resolve_queue(owner, name)
    if qid is None:
        return NOT_FOUND
    h.mem.write_u32(ret_id, qid)
    h.out = qid
    return OK


def enqueue_shared_queue(
    h: FilterVm, queue_id: int, value_ptr: int, value_size: int
) -> int:
    limits = h.limits
    if value_size > limits.queue_bytes:
        if not h.mem.writable(value_ptr, value_size):
            return INVALID_MEMORY_ACCESS
        raise quotas.exceeded(
            "shared queue bytes", value_size, "queue_bytes", limits.queue_bytes
        )
    value = h.mem.read(value_ptr, value_size)
    if value is None:
        return INVALID_MEMORY_ACCESS
    over = h.shared.queue_over_quota(queue_id, value, limits)
    if over is not None:
        raise over
    return int(h.shared.enqueue(queue_id, value))


def dequeue_shared_queue(
    h: FilterVm, queue_id: int, ret_ptr: int, ret_size: int
) -> int:
    item = h.shared.dequeue(queue_id)
    if isinstance(item, WasmResult):
        return int(item)
    h.out = item
    return OK if h.mem.copy_out(item, ret_ptr, ret_size) else INVALID_MEMORY_ACCESS


# --- metrics ---


def define_metric(
    h: FilterVm, metric_type: int, name_ptr: int, name_size: int, ret_id: int
) -> int:
    limits = h.limits
    if name_size > limits.metric_name_bytes:
        if not h.mem.writable(name_ptr, name_size):
            return INVALID_MEMORY_ACCESS
        raise quotas.exceeded(
            "metric name bytes",
            name_size,
            "metric_name_bytes",
            limits.metric_name_bytes,
        )
    name = h.mem.read(name_ptr, name_size)
    if name is None or not h.mem.writable(ret_id, 4):
        return INVALID_MEMORY_ACCESS
    text = name.decode("utf-8", "replace")
    if h.metrics.count() >= limits.metrics and not h.metrics.known(metric_type, text):
        raise quotas.exceeded(
            "metrics defined", h.metrics.count() + 1, "metrics", limits.metrics
        )
    mid = h.metrics.define(metric_type, text)
    if mid is None:
        return BAD_ARGUMENT
    h.mem.write_u32(ret_id, mid)
    h.out = mid
    return OK


def increment_metric(h: FilterVm, metric_id: int, delta: int) -> int:
    return int(h.metrics.increment(metric_id, delta))


def record_metric(h: FilterVm, metric_id: int, value: int) -> int:
    return int(h.metrics.record(metric_id, value & 0xFFFFFFFFFFFFFFFF))


def get_metric(h: FilterVm, metric_id: int, ret_value: int) -> int:
    value = h.metrics.get(metric_id)
    if isinstance(value, WasmResult):
        return int(value)
    h.out = value
    return OK if h.mem.write_u64(ret_value, value) else INVALID_MEMORY_ACCESS


# --- non-spec imports ---


def emscripten_notify_memory_growth(h: FilterVm, _index: int) -> None:
    return None


def pthread_equal(h: FilterVm, a: int, b: int) -> int:
    return int(a == b)


def _as_string(h: FilterVm, ptr: int) -> str:
    # AssemblyScript strings: UTF-16LE, byte length in the u32 before ptr.
    if ptr < 4:
        return ""
    size = h.mem.read_u32(ptr - 4)
    raw = h.mem.read(ptr, size or 0) if size is not None else None
    return raw.decode("utf-16-le", "replace") if raw else ""


def abort(h: FilterVm, msg: int, file: int, line: int, column: int) -> None:
    text = _as_string(h, msg) or "abort"
    where = _as_string(h, file)
    if where:
        text += f" at {where}({line}:{column})"
    h.log_guest(LogLevel.CRITICAL, text, "abort")
    raise GuestExit(f"the filter aborted: {text}")


def lookup(name: str) -> Callable[..., int | None] | None:
    """The implementation of ``env`` import ``name``, if the host has one."""
    short = name.removeprefix("proxy_")
    fn = globals().get(short)
    return fn if callable(fn) and not isinstance(fn, type) else None
