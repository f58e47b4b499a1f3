"""Host imports and module callbacks of each proxy-wasm ABI version, with types.

Types are strings ``"i32"`` / ``"i64"``; every ``proxy_*`` host function returns
one ``i32`` status.
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmkit.abi.constants import AbiVersion


@dataclass(frozen=True, slots=True)
class Signature:
    """A wasm function type."""

    params: tuple[str, ...]
    """Parameter types, ``"i32"`` or ``"i64"``."""
    results: tuple[str, ...]
    """Result types."""

    def __str__(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


def _sig(params: str, results: str = "i") -> Signature:
    def split(text: str) -> tuple[str, ...]:
        return tuple(("i64" if c == "I" else "i32") for c in text)

    return Signature(split(params), split(results))


# "i" = i32, "I" = i64.
COMMON_IMPORTS: dict[str, Signature] = {
    "proxy_log": _sig("iii"),
    "proxy_get_current_time_nanoseconds": _sig("i"),
    "proxy_set_tick_period_milliseconds": _sig("i"),
    "proxy_set_effective_context": _sig("i"),
    "proxy_done": _sig(""),
    "proxy_get_status": _sig("iii"),
    "proxy_get_buffer_bytes": _sig("iiiii"),
    "proxy_set_buffer_bytes": _sig("iiiii"),
    "proxy_get_buffer_status": _sig("iii"),
    "proxy_get_header_map_size": _sig("ii"),
    "proxy_get_header_map_pairs": _sig("iii"),
    "proxy_set_header_map_pairs": _sig("iii"),
    "proxy_get_header_map_value": _sig("iiiii"),
    "proxy_add_header_map_value": _sig("iiiii"),
    "proxy_replace_header_map_value": _sig("iiiii"),
    "proxy_remove_header_map_value": _sig("iii"),
    "proxy_send_local_response": _sig("iiiiiiii"),
    "proxy_http_call": _sig("iiiiiiiiii"),
    "proxy_grpc_call": _sig("iiiiiiiiiiii"),
    "proxy_grpc_stream": _sig("iiiiiiiii"),
    "proxy_grpc_send": _sig("iiii"),
    "proxy_grpc_cancel": _sig("i"),
    "proxy_grpc_close": _sig("i"),
    "proxy_get_shared_data": _sig("iiiii"),
    "proxy_set_shared_data": _sig("iiiii"),
    "proxy_register_shared_queue": _sig("iii"),
    "proxy_resolve_shared_queue": _sig("iiiii"),
    "proxy_enqueue_shared_queue": _sig("iii"),
    "proxy_dequeue_shared_queue": _sig("iii"),
    "proxy_define_metric": _sig("iiii"),
    "proxy_increment_metric": _sig("iI"),
    "proxy_record_metric": _sig("iI"),
    "proxy_get_metric": _sig("ii"),
    "proxy_get_property": _sig("iiii"),
    "proxy_set_property": _sig("iiii"),
    "proxy_call_foreign_function": _sig("iiiiii"),
}

V010_ONLY: dict[str, Signature] = {
    "proxy_get_configuration": _sig("ii"),
    "proxy_continue_request": _sig(""),
    "proxy_continue_response": _sig(""),
    "proxy_clear_route_cache": _sig(""),
}

V02_ONLY: dict[str, Signature] = {
    "proxy_continue_stream": _sig("i"),
    "proxy_close_stream": _sig("i"),
}


def host_imports(version: AbiVersion) -> dict[str, Signature]:
    """The ``env`` functions Envoy links for a module of ``version``."""
    if version is AbiVersion.V0_1_0:
        return {**COMMON_IMPORTS, **V010_ONLY}
    out = {**COMMON_IMPORTS, **V02_ONLY}
    if version is AbiVersion.V0_2_1:
        out["proxy_get_log_level"] = _sig("i")
    return out


EXTRA_ENV_IMPORTS: dict[str, Signature] = {
    # Emscripten-built C++ modules.
    "emscripten_notify_memory_growth": _sig("i", ""),
    "pthread_equal": _sig("ii"),
    # AssemblyScript's default abort (Envoy lacks it; wasmkit provides it to
    # report the message).
    "abort": _sig("iiii", ""),
}
"""Non-spec ``env`` imports wasmkit also provides."""

HIGRESS_IMPORTS: dict[str, Signature] = {
    # (cluster, username, password, timeout_ms)
    "proxy_redis_init": _sig("iiiiiii"),
    # (cluster, query, *ret_token): the reply comes in proxy_on_redis_call_response
    "proxy_redis_call": _sig("iiiii"),
    # (data, end_of_stream): re-inject encoded body data into the filter chain
    "proxy_inject_encoded_data_to_filter_chain": _sig("iii"),
    # (*ret_ptr, *ret_size): the upstream hosts as serialized pairs
    "proxy_get_upstream_hosts": _sig("ii"),
    # (address): pin the upstream host of this request
    "proxy_set_upstream_override_host": _sig("ii"),
}
"""The ``env`` functions Higress's Envoy adds (``higress`` profile)."""

HIGRESS_CALLBACKS: dict[str, Signature] = {
    "proxy_on_redis_call_response": _sig("iiii", ""),
}
"""Module exports Higress calls besides the standard ones."""


def vendor_imports(vendor: str | None) -> dict[str, Signature]:
    """The extra ``env`` functions of a vendor profile (``higress``), or none."""
    return dict(HIGRESS_IMPORTS) if vendor == "higress" else {}


WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
"""The WASI module names linked, both with the same functions."""

WASI_IMPORTS: dict[str, Signature] = {
    "fd_write": _sig("iiii"),
    "fd_read": _sig("iiii"),
    "fd_seek": _sig("iIii"),
    "fd_close": _sig("i"),
    "fd_fdstat_get": _sig("ii"),
    "fd_fdstat_set_flags": _sig("ii"),
    "fd_fdstat_set_rights": _sig("iII"),
    "environ_get": _sig("ii"),
    "environ_sizes_get": _sig("ii"),
    "args_get": _sig("ii"),
    "args_sizes_get": _sig("ii"),
    "clock_time_get": _sig("iIi"),
    "clock_res_get": _sig("ii"),
    "fd_advise": _sig("iIIi"),
    "fd_allocate": _sig("iII"),
    "fd_datasync": _sig("i"),
    "fd_filestat_set_size": _sig("iI"),
    "fd_filestat_set_times": _sig("iIIi"),
    "fd_pread": _sig("iiiIi"),
    "fd_pwrite": _sig("iiiIi"),
    "fd_readdir": _sig("iiiIi"),
    "fd_renumber": _sig("ii"),
    "fd_sync": _sig("i"),
    "fd_tell": _sig("ii"),
    "path_create_directory": _sig("iii"),
    "path_filestat_set_times": _sig("iiiiIIi"),
    "path_link": _sig("iiiiiii"),
    "path_readlink": _sig("iiiiii"),
    "path_remove_directory": _sig("iii"),
    "path_rename": _sig("iiiiii"),
    "path_symlink": _sig("iiiii"),
    "path_unlink_file": _sig("iii"),
    "sock_accept": _sig("iii"),
    "sock_recv": _sig("iiiiii"),
    "sock_send": _sig("iiiii"),
    "sock_shutdown": _sig("ii"),
    "random_get": _sig("ii"),
    "sched_yield": _sig(""),
    "poll_oneoff": _sig("iiii"),
    "proc_exit": _sig("i", ""),
    "path_open": _sig("iiiiiIIii"),
    "fd_prestat_get": _sig("ii"),
    "fd_prestat_dir_name": _sig("iii"),
    "path_filestat_get": _sig("iiiii"),
    "fd_filestat_get": _sig("ii"),
}

CALLBACKS: dict[str, Signature] = {
    "_initialize": _sig("", ""),
    "_start": _sig("", ""),
    "main": _sig("ii"),
    "__main_void": _sig(""),
    "malloc": _sig("i"),
    "proxy_on_memory_allocate": _sig("i"),
    "proxy_on_context_create": _sig("ii", ""),
    "proxy_on_vm_start": _sig("ii"),
    "proxy_validate_configuration": _sig("ii"),
    "proxy_on_configure": _sig("ii"),
    "proxy_on_tick": _sig("i", ""),
    "proxy_on_queue_ready": _sig("ii", ""),
    "proxy_on_foreign_function": _sig("iii", ""),
    "proxy_on_new_connection": _sig("i"),
    "proxy_on_downstream_data": _sig("iii"),
    "proxy_on_upstream_data": _sig("iii"),
    "proxy_on_downstream_connection_close": _sig("ii", ""),
    "proxy_on_upstream_connection_close": _sig("ii", ""),
    "proxy_on_request_headers": _sig("iii"),
    "proxy_on_request_body": _sig("iii"),
    "proxy_on_request_trailers": _sig("ii"),
    "proxy_on_request_metadata": _sig("ii"),
    "proxy_on_response_headers": _sig("iii"),
    "proxy_on_response_body": _sig("iii"),
    "proxy_on_response_trailers": _sig("ii"),
    "proxy_on_response_metadata": _sig("ii"),
    "proxy_on_http_call_response": _sig("iiiii", ""),
    "proxy_on_grpc_receive_initial_metadata": _sig("iii", ""),
    "proxy_on_grpc_receive": _sig("iii", ""),
    "proxy_on_grpc_receive_trailing_metadata": _sig("iii", ""),
    "proxy_on_grpc_close": _sig("iii", ""),
    "proxy_on_done": _sig("i"),
    "proxy_on_log": _sig("i", ""),
    "proxy_on_delete": _sig("i", ""),
}
"""Module exports the host calls, with their 0.2.x types."""

V010_CALLBACKS: dict[str, Signature] = {
    "proxy_on_request_headers": _sig("ii"),
    "proxy_on_response_headers": _sig("ii"),
}
"""Callbacks whose type differs in ABI 0.1.0 (no ``end_of_stream``)."""


def callback_signature(
    name: str, version: AbiVersion, vendor: str | None = None
) -> Signature | None:
    """The type the host expects of export ``name`` for ``version``.

    ``vendor="higress"`` adds Higress's callbacks.
    """
    if version is AbiVersion.V0_1_0 and name in V010_CALLBACKS:
        return V010_CALLBACKS[name]
    if vendor == "higress" and name in HIGRESS_CALLBACKS:
        return HIGRESS_CALLBACKS[name]
    return CALLBACKS.get(name)
