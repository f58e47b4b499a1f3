"""Start-up as Envoy does it, plugins, contexts, module checks at load."""

from __future__ import annotations

import pytest

from wasmkit.abi.constants import AbiVersion, LogLevel
from wasmkit.errors import FilterLoadError, FilterStartError
from wasmkit.host import FilterVm, PluginConfig, load, request, response
from wasmkit.testing import filter_wat

# Logs every callback with its context id, so the order is visible in the logs.
LOGGING = """
(func $say (param $msg i32) (param $len i32)
  (drop (call $proxy_log (i32.const 2) (local.get $msg) (local.get $len))))
(func (export "_initialize") (call $say (global.get $s_init) (global.get $s_init_len)))
(func (export "proxy_on_context_create") (param i32 i32)
  (call $say (global.get $s_create) (global.get $s_create_len)))
(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
  (call $say (global.get $s_vm) (global.get $s_vm_len)) (i32.const 1))
(func (export "proxy_on_configure") (param i32 i32) (result i32)
  (call $say (global.get $s_conf) (global.get $s_conf_len)) (i32.const 1))
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (call $say (global.get $s_reqh) (global.get $s_reqh_len)) (i32.const 0))
(func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
  (call $say (global.get $s_resh) (global.get $s_resh_len)) (i32.const 0))
(func (export "proxy_on_log") (param i32)
  (call $say (global.get $s_log) (global.get $s_log_len)))
(func (export "proxy_on_done") (param i32) (result i32)
  (call $say (global.get $s_done) (global.get $s_done_len)) (i32.const 1))
(func (export "proxy_on_delete") (param i32)
  (call $say (global.get $s_del) (global.get $s_del_len)))
"""
STRINGS = {
    "init": "init",
    "create": "create",
    "vm": "vm_start",
    "conf": "configure",
    "reqh": "request_headers",
    "resh": "response_headers",
    "log": "log",
    "done": "done",
    "del": "delete",
}


def _logging_module() -> str:
    return filter_wat(LOGGING, strings=STRINGS)


def test_startup_order_and_context_ids():
    vm = FilterVm(_logging_module(), vm_id="vm1")
    first = vm.add_plugin(PluginConfig(root_id="a"))
    second = vm.add_plugin(PluginConfig(root_id="b"))
    assert [(r.message, r.context_id) for r in vm.logs] == [
        ("init", 0),
        ("create", 1),
        ("vm_start", 1),
        ("configure", 1),
        ("create", 2),
        ("vm_start", 2),
        ("configure", 2),
    ]
    assert first.root is not None and first.root.id == 1
    assert second.root is not None and second.root.id == 2
    create = [t for t in vm.trace if t.name == "proxy_on_context_create"]
    assert [t.args["parent_context_id"] for t in create] == [0, 0]


def test_stream_order_is_envoys_and_ids_continue():
    plugin = load(_logging_module(), root_id="r")
    result = plugin.run_http(request(), response())
    order = [r.message for r in result.logs]
    assert order == [
        "create",
        "request_headers",
        "response_headers",
        "log",
        "done",
        "delete",
    ]
    assert result.context_id == 2
    again = plugin.run_http(request(), response())
    assert again.context_id == 3


def test_spec_profile_runs_done_before_log():
    plugin = load(_logging_module(), root_id="r", profile="spec")
    result = plugin.run_http(request(), response())
    assert [r.message for r in result.logs][-3:] == ["done", "log", "delete"]


def test_vm_configuration_and_plugin_configuration_sizes():
    vm = FilterVm(_logging_module(), vm_configuration=b"vmcfg!")
    vm.add_plugin(PluginConfig(root_id="x", configuration=b"0123456789"))
    start = next(t for t in vm.trace if t.name == "proxy_on_vm_start")
    conf = next(t for t in vm.trace if t.name == "proxy_on_configure")
    assert start.args["vm_configuration_size"] == 6
    assert conf.args["plugin_configuration_size"] == 10


REJECTING = """
(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0))
"""


def test_configure_false_is_a_start_error():
    with pytest.raises(FilterStartError) as info:
        load(filter_wat(REJECTING), root_id="picky", config=b"nope")
    assert info.value.callback == "proxy_on_configure"
    assert info.value.root_id == "picky"
    assert info.value.kind == "load"


def test_vm_start_false_is_a_start_error():
    wat = filter_wat(
        '(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))'
    )
    with pytest.raises(FilterStartError, match="proxy_on_vm_start"):
        load(wat)


def test_no_abi_marker_is_refused():
    wat = '(module (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)))'
    with pytest.raises(FilterLoadError, match="proxy_abi_version"):
        load(wat)


def test_missing_allocator_is_refused():
    with pytest.raises(FilterLoadError, match="missing malloc"):
        load(filter_wat("", allocator=None))


def test_proxy_on_memory_allocate_is_used_without_malloc():
    wat = filter_wat(
        """
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 512) (i32.const 516)))
          (i32.const 0))
        """,
        allocator="proxy_on_memory_allocate",
    )
    plugin = load(wat)
    assert plugin.vm.allocator == "proxy_on_memory_allocate"
    result = plugin.run_http(request(), response())
    assert result.error is None
    assert any(t.name == "proxy_on_memory_allocate" for t in result.trace)


def test_unknown_imports_are_listed():
    wat = """(module
      (import "env" "proxy_log" (func (param i32 i32 i32) (result i32)))
      (import "env" "no_such_function" (func (param i32)))
      (import "env" "proxy_get_log_level" (func (param i32 i32) (result i32)))
      (import "elsewhere" "thing" (func))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 0)))"""
    with pytest.raises(FilterLoadError) as info:
        load(wat)
    missing = info.value.missing
    assert any("env.no_such_function" in m for m in missing)
    assert any("elsewhere.thing" in m for m in missing)
    assert any("proxy_get_log_level: imported as" in m for m in missing)
    assert not any("proxy_log" in m and "get_log_level" not in m for m in missing)


def test_version_specific_imports_are_checked():
    # proxy_continue_stream does not exist in ABI 0.1.0.
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32) (result i32)
             (call $proxy_continue_request))""",
        abi=AbiVersion.V0_1_0,
    )
    assert load(wat).vm.abi_version is AbiVersion.V0_1_0
    bad = wat.replace(
        '"proxy_continue_request" (func $proxy_continue_request',
        '"proxy_continue_stream" (func $proxy_continue_request (param i32)',
    )
    bad = bad.replace(
        "(call $proxy_continue_request)", "(call $proxy_continue_request (i32.const 0))"
    )
    with pytest.raises(FilterLoadError, match=r"proxy_continue_stream"):
        load(bad)


@pytest.mark.parametrize("version", list(AbiVersion))
def test_abi_version_detected(version):
    assert load(filter_wat("", abi=version)).vm.abi_version is version


def test_abi_010_headers_callback_gets_two_arguments():
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32) (result i32) (i32.const 0))""",
        abi=AbiVersion.V0_1_0,
    )
    result = load(wat).run_http(request(), response())
    call = next(t for t in result.trace if t.name == "proxy_on_request_headers")
    assert list(call.args) == ["context_id", "num_headers"]


def test_invalid_wasm_is_a_load_error(tmp_path):
    path = tmp_path / "broken.wasm"
    path.write_bytes(b"\0asm\x01\0\0\0garbage")
    with pytest.raises(FilterLoadError, match=r"broken\.wasm"):
        load(path)
    with pytest.raises(FilterLoadError, match="cannot read"):
        load(tmp_path / "absent.wasm")


def test_wat_file_path(tmp_path):
    path = tmp_path / "f.wat"
    path.write_text(_logging_module())
    plugin = load(path, log_level="debug")
    assert plugin.vm.log_level is LogLevel.DEBUG
    assert plugin.vm.module.name == str(path)


def test_logs_below_level_are_dropped():
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_log (i32.const 1) (global.get $s_d) (global.get $s_d_len)))
          (drop (call $proxy_log (i32.const 3) (global.get $s_w) (global.get $s_w_len)))
          (i32.const 0))""",
        strings={"d": "debug line", "w": "warn line"},
    )
    result = load(wat).run_http(request(), response())
    assert [(r.level.label, r.message) for r in result.logs] == [("warn", "warn line")]
    verbose = load(wat, log_level="trace").run_http(request(), response())
    assert [r.message for r in verbose.logs] == ["debug line", "warn line"]


def test_close_runs_done_and_delete_on_roots():
    vm = FilterVm(_logging_module())
    vm.add_plugin(PluginConfig(root_id="a"))
    vm.close()
    assert [r.message for r in vm.logs][-2:] == ["done", "delete"]


DEFERRED_DONE = filter_wat(
    """
    (func (export "proxy_on_done") (param i32) (result i32) (i32.const 0))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_set_effective_context (i32.const 1)))
      (drop (call $proxy_log (i32.const 2) (global.get $s_m) (global.get $s_m_len)))
      (i32.store (i32.const 520) (call $proxy_done))
      (i32.const 0))
    (func (export "proxy_on_delete") (param i32))
    """,
    strings={"m": "finishing root"},
)


def test_root_done_later_with_proxy_done():
    vm = FilterVm(DEFERRED_DONE)
    plugin = vm.add_plugin(PluginConfig(root_id="r"))
    # No pending done yet: proxy_done answers NOT_FOUND.
    first = plugin.run_http(request(), response())
    (done,) = [t for t in first.trace if t.name == "proxy_done"]
    assert done.result == "NOT_FOUND"
    plugin.shutdown()
    assert plugin.root is not None and plugin.root.done_pending
    assert not [t for t in vm.trace if t.name == "proxy_on_delete"]
    # A later callback switches to the root and finishes it.
    second = plugin.run_http(request(), response())
    (done,) = [t for t in second.trace if t.name == "proxy_done"]
    assert done.result == "OK" and done.context_id == 1
    deletes = [
        t.args["context_id"] for t in second.trace if t.name == "proxy_on_delete"
    ]
    assert deletes == [1, second.context_id]


def test_allocator_preference_follows_the_profile():
    wat = filter_wat(
        """(func (export "proxy_on_memory_allocate") (param i32) (result i32)
             (call $malloc (local.get 0)))"""
    )
    assert load(wat).vm.allocator == "malloc"
    assert load(wat, profile="spec").vm.allocator == "proxy_on_memory_allocate"


REFUSING_WITH_A_REASON = """
(func (export "proxy_on_configure") (param i32 i32) (result i32)
  (drop (call $proxy_log (i32.const 2) (global.get $s_info) (global.get $s_info_len)))
  (drop (call $proxy_log (i32.const 4) (global.get $s_why) (global.get $s_why_len)))
  (i32.const 0))
"""


def test_start_error_carries_the_filters_reason_and_the_configuration_as_text():
    wat = filter_wat(
        REFUSING_WITH_A_REASON,
        strings={"info": "reading configuration", "why": "invalid JSON at byte 1"},
    )
    with pytest.raises(FilterStartError) as info:
        load(wat, root_id="picky", config=b"{bad json \xff")
    err = info.value
    assert err.said == ["invalid JSON at byte 1"]  # warn and above only
    assert err.configuration == "{bad json \ufffd"
    text = str(err)
    assert "b'" not in text
    assert "plugin configuration: {bad json" in text
    assert "the filter said: invalid JSON at byte 1" in text
    assert "reading configuration" not in text
    assert err.callback == "proxy_on_configure"


def test_start_error_on_vm_start_shows_the_vm_configuration():
    wat = filter_wat(
        '(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))'
    )
    with pytest.raises(FilterStartError) as info:
        load(wat, vm_configuration="vm-settings")
    assert "VM configuration: vm-settings" in str(info.value)
    assert info.value.configuration == "vm-settings"


# Logs the VM's WASI environment on each request: "K=V;K2=V2;" (each
# entry's NUL as ";").
ENV_LOGGER = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (local $i i32) (local $size i32)
         (drop (call $wasi_environ_sizes_get (i32.const 0x10000) (i32.const 0x10004)))
         (drop (call $wasi_environ_get (i32.const 0x10100) (i32.const 0x11000)))
         (local.set $size (i32.load (i32.const 0x10004)))
         (block $done (loop $each
           (br_if $done (i32.ge_u (local.get $i) (local.get $size)))
           (if (i32.eqz (i32.load8_u (i32.add (i32.const 0x11000) (local.get $i))))
             (then (i32.store8 (i32.add (i32.const 0x11000) (local.get $i))
               (i32.const 59))))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br $each)))
         (drop (call $proxy_log (i32.const 2) (i32.const 0x11000) (local.get $size)))
         (i32.const 0))""",
    wasi=True,
)


def _environment_seen(**options):
    logs = load(ENV_LOGGER, **options).run_http(request(), response()).logs
    (line,) = [log.message for log in logs]
    return sorted(item for item in line.split(";") if item)


def test_the_vm_environment_is_explicit(monkeypatch):
    monkeypatch.setenv("WASMKIT_TEST_SECRET", "s3cr3t")
    monkeypatch.setenv("WASMKIT_TEST_REGION", "eu-1")
    monkeypatch.delenv("WASMKIT_TEST_UNSET", raising=False)
    # The host's environment is invisible by default.
    assert _environment_seen() == []
    assert _environment_seen(environment={"A": "1", "B": "two=2"}) == [
        "A=1",
        "B=two=2",
    ]
    # host_env_keys copies the named variables that are set, as Envoy does.
    seen = _environment_seen(
        environment={"A": "1"},
        host_env_keys=["WASMKIT_TEST_REGION", "WASMKIT_TEST_UNSET"],
    )
    assert seen == ["A=1", "WASMKIT_TEST_REGION=eu-1"]
    with pytest.raises(ValueError, match=r"Key A is duplicated .* must be unique"):
        load(ENV_LOGGER, environment={"A": "1"}, host_env_keys=["A"])
    with pytest.raises(ValueError, match="Key K is duplicated"):
        load(ENV_LOGGER, host_env_keys=["K", "K"])
