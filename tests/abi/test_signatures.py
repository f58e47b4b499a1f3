"""Host imports per ABI version against Appendix A of the ABI reference."""

from __future__ import annotations

import pytest

from wasmkit.abi.constants import AbiVersion
from wasmkit.abi.signatures import (
    CALLBACKS,
    EXTRA_ENV_IMPORTS,
    WASI_IMPORTS,
    WASI_MODULES,
    Signature,
    callback_signature,
    host_imports,
)
from wasmkit.host import imports


def _names(text: str) -> list[str]:
    return text.split()


# Appendix A, "Spec host functions, module env (0.2.1 = 39)".
SPEC_0_2_1 = _names(
    """
proxy_log proxy_get_log_level proxy_get_current_time_nanoseconds
proxy_set_tick_period_milliseconds proxy_set_effective_context proxy_done proxy_get_status
proxy_get_buffer_bytes proxy_set_buffer_bytes proxy_get_buffer_status
proxy_get_header_map_size proxy_get_header_map_pairs proxy_set_header_map_pairs
proxy_get_header_map_value proxy_add_header_map_value proxy_replace_header_map_value
proxy_remove_header_map_value proxy_continue_stream proxy_close_stream
proxy_send_local_response proxy_http_call proxy_grpc_call proxy_grpc_stream proxy_grpc_send
proxy_grpc_cancel proxy_grpc_close proxy_get_shared_data proxy_set_shared_data
proxy_register_shared_queue proxy_resolve_shared_queue proxy_enqueue_shared_queue
proxy_dequeue_shared_queue proxy_define_metric proxy_increment_metric proxy_record_metric
proxy_get_metric proxy_get_property proxy_set_property proxy_call_foreign_function
"""
)
SPEC_0_2_0 = [n for n in SPEC_0_2_1 if n != "proxy_get_log_level"]
SPEC_0_1_0 = [
    *(
        n
        for n in SPEC_0_2_0
        if n not in ("proxy_continue_stream", "proxy_close_stream")
    ),
    "proxy_get_configuration",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_clear_route_cache",
]
SPEC = {
    AbiVersion.V0_2_1: SPEC_0_2_1,
    AbiVersion.V0_2_0: SPEC_0_2_0,
    AbiVersion.V0_1_0: SPEC_0_1_0,
}

# Appendix A, WASI functions cpp-host links under both module names (45).
WASI_45 = _names(
    """
fd_write fd_read fd_seek fd_close fd_fdstat_get fd_fdstat_set_flags fd_fdstat_set_rights
environ_get environ_sizes_get args_get args_sizes_get clock_time_get clock_res_get fd_advise
fd_allocate fd_datasync fd_filestat_set_size fd_filestat_set_times fd_pread fd_pwrite
fd_readdir fd_renumber fd_sync fd_tell path_create_directory path_filestat_set_times
path_link path_readlink path_remove_directory path_rename path_symlink path_unlink_file
sock_accept sock_recv sock_send sock_shutdown random_get sched_yield poll_oneoff proc_exit
path_open fd_prestat_get fd_prestat_dir_name path_filestat_get fd_filestat_get
"""
)

# Appendix A, module callbacks (host-specific envoy_on_* / redis ones left out).
CALLBACK_NAMES = _names(
    """
_initialize main __main_void _start malloc proxy_on_memory_allocate proxy_on_context_create
proxy_on_vm_start proxy_validate_configuration proxy_on_configure proxy_on_tick
proxy_on_queue_ready proxy_on_foreign_function proxy_on_new_connection
proxy_on_downstream_data proxy_on_upstream_data proxy_on_downstream_connection_close
proxy_on_upstream_connection_close proxy_on_request_headers proxy_on_request_body
proxy_on_request_trailers proxy_on_request_metadata proxy_on_response_headers
proxy_on_response_body proxy_on_response_trailers proxy_on_response_metadata
proxy_on_http_call_response proxy_on_grpc_receive_initial_metadata proxy_on_grpc_receive
proxy_on_grpc_receive_trailing_metadata proxy_on_grpc_close proxy_on_done proxy_on_log
proxy_on_delete
"""
)


@pytest.mark.parametrize(
    ("version", "count"),
    [(AbiVersion.V0_2_1, 39), (AbiVersion.V0_2_0, 38), (AbiVersion.V0_1_0, 40)],
)
def test_host_function_count_per_version(version, count):
    assert len(host_imports(version)) == count
    assert len(SPEC[version]) == count


@pytest.mark.parametrize("version", list(AbiVersion))
def test_every_appendix_a_name_is_linked(version):
    assert sorted(host_imports(version)) == sorted(SPEC[version])


@pytest.mark.parametrize("version", list(AbiVersion))
def test_every_env_import_is_implemented(version):
    missing = [name for name in host_imports(version) if imports.lookup(name) is None]
    assert missing == []


@pytest.mark.parametrize("name", sorted(EXTRA_ENV_IMPORTS))
def test_non_spec_env_imports_are_implemented(name):
    assert imports.lookup(name) is not None


def test_lookup_of_an_unknown_name_is_none():
    assert imports.lookup("proxy_no_such_function") is None


@pytest.mark.parametrize("version", list(AbiVersion))
def test_implementations_take_the_signatures_parameters(version):
    import inspect

    for name, sig in host_imports(version).items():
        fn = imports.lookup(name)
        assert fn is not None
        params = list(inspect.signature(fn).parameters.values())[1:]
        if params and params[-1].kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # the not-yet-implemented stubs take *args
        assert len(params) == len(sig.params), name


def test_version_specific_functions():
    v010, v020, v021 = (host_imports(v) for v in AbiVersion)
    assert "proxy_get_configuration" in v010 and "proxy_get_configuration" not in v021
    assert "proxy_continue_stream" not in v010 and "proxy_continue_stream" in v020
    assert "proxy_get_log_level" not in v020 and "proxy_get_log_level" in v021
    assert "proxy_clear_route_cache" not in v020


def test_every_host_function_returns_one_i32_and_i64_only_for_metrics():
    seen = {
        name: sig
        for version in AbiVersion
        for name, sig in host_imports(version).items()
    }
    for name, sig in seen.items():
        assert sig.results == ("i32",), name
        if name in ("proxy_increment_metric", "proxy_record_metric"):
            assert sig.params == ("i32", "i64")
        else:
            assert set(sig.params) <= {"i32"}, name


def test_selected_signatures():
    v021 = host_imports(AbiVersion.V0_2_1)
    i32 = "i32"
    assert v021["proxy_log"] == Signature((i32,) * 3, (i32,))
    assert v021["proxy_done"] == Signature((), (i32,))
    assert v021["proxy_send_local_response"].params == (i32,) * 8
    assert v021["proxy_http_call"].params == (i32,) * 10
    assert v021["proxy_grpc_call"].params == (i32,) * 12
    assert host_imports(AbiVersion.V0_1_0)["proxy_continue_request"] == Signature(
        (), (i32,)
    )


def test_wasi_functions_match_cpp_host():
    assert sorted(WASI_IMPORTS) == sorted(WASI_45)
    assert WASI_MODULES == ("wasi_snapshot_preview1", "wasi_unstable")
    assert WASI_IMPORTS["clock_time_get"].params == ("i32", "i64", "i32")
    assert WASI_IMPORTS["proc_exit"] == Signature(("i32",), ())


def test_callbacks_cover_appendix_a():
    assert sorted(CALLBACKS) == sorted(CALLBACK_NAMES)


def test_abi_0_1_0_header_callbacks_lack_end_of_stream():
    old = callback_signature("proxy_on_request_headers", AbiVersion.V0_1_0)
    new = callback_signature("proxy_on_request_headers", AbiVersion.V0_2_1)
    assert old is not None and new is not None
    assert old.params == ("i32", "i32") and new.params == ("i32", "i32", "i32")
    assert callback_signature("proxy_on_request_body", AbiVersion.V0_1_0) == new
    assert callback_signature("not_a_callback", AbiVersion.V0_2_1) is None
