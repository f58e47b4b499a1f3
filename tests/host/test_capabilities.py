"""allowed_capabilities as Envoy's CapabilityRestrictionConfig, on real modules.

The module mirrors Envoy's ``test_restriction_cpp``: ``proxy_on_vm_start``
logs with ``proxy_log`` and writes to stdout with WASI ``fd_write``;
``proxy_on_context_create`` logs too. The cases are Envoy's
``wasm_test.cc`` ones (RestrictCapabilities, AllowOnVmStart, AllowLog,
AllowWASI, AllowOnContextCreate).
"""

from __future__ import annotations

import pytest

from wasmkit.abi.constants import LogLevel, WasmResult
from wasmkit.host import load
from wasmkit.host.capabilities import WASI_ENOTCAPABLE, Capabilities
from wasmkit.testing import Driver, filter_wat

STDOUT_LINE = "WASI write to stdout\n"

RESTRICTION = filter_wat(
    """
(func $write_stdout (result i32)
  (i32.store (i32.const 600) (global.get $s_out))
  (i32.store (i32.const 604) (global.get $s_out_len))
  (call $wasi_fd_write (i32.const 1) (i32.const 600) (i32.const 1) (i32.const 608)))
(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
  (drop (call $proxy_log (i32.const 2) (global.get $s_vm) (global.get $s_vm_len)))
  (drop (call $write_stdout))
  (i32.const 1))
(func (export "proxy_on_context_create") (param i32 i32)
  (drop (call $proxy_log (i32.const 2) (global.get $s_ctx) (global.get $s_ctx_len))))
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_log (i32.const 2) (global.get $s_req) (global.get $s_req_len)))
  (i32.const 1))
""",
    strings={
        "vm": "after proxy_on_vm_start: written by proxy_log",
        "ctx": "after proxy_on_context_create: written by proxy_log",
        "req": "on_request_headers ran",
        "out": STDOUT_LINE,
    },
    wasi=True,
)

VM_LOG = "after proxy_on_vm_start: written by proxy_log"
CTX_LOG = "after proxy_on_context_create: written by proxy_log"


def _filter_logs(plugin):
    return [r.message for r in plugin.vm.logs if r.source != "host"]


def _host_errors(plugin):
    return [
        r.message
        for r in plugin.vm.logs
        if r.source == "host" and r.level == LogLevel.ERROR
    ]


def test_no_restriction_by_default_and_for_an_empty_map():
    for allowed in (None, [], {}):
        plugin = load(RESTRICTION, allowed_capabilities=allowed)
        # The root context is created first, then the VM starts.
        assert _filter_logs(plugin) == [CTX_LOG, VM_LOG, "WASI write to stdout"]
        assert not plugin.vm.capabilities.restricted


def test_restrict_capabilities_calls_no_restricted_callback():
    # Envoy's RestrictCapabilities: only an unrelated name allowed, so
    # proxy_on_vm_start is never called (as if not exported).
    plugin = load(RESTRICTION, allowed_capabilities=["proxy_get_status"])
    assert _filter_logs(plugin) == []
    assert "proxy_on_vm_start" not in plugin.vm.exported
    assert not any(t.name == "proxy_on_vm_start" for t in plugin.vm.trace)


def test_allow_on_vm_start_stubs_proxy_log_and_fd_write():
    plugin = load(RESTRICTION, allowed_capabilities=["proxy_on_vm_start"])
    assert _filter_logs(plugin) == []
    assert _host_errors(plugin) == [
        "Attempted call to restricted proxy-wasm capability: proxy_log",
        "Attempted call to restricted WASI capability: fd_write",
    ]
    # What the guest got back: InternalFailure and __WASI_ENOTCAPABLE.
    calls = [t for t in plugin.vm.trace if t.kind == "hostcall"]
    assert [(t.name, t.result) for t in calls] == [
        ("proxy_log", WasmResult.INTERNAL_FAILURE.name),
        ("fd_write", WASI_ENOTCAPABLE),
    ]


def test_allow_log_but_not_wasi():
    plugin = load(
        RESTRICTION, allowed_capabilities={"proxy_on_vm_start": {}, "proxy_log": {}}
    )
    assert _filter_logs(plugin) == [VM_LOG]
    assert _host_errors(plugin) == [
        "Attempted call to restricted WASI capability: fd_write"
    ]


def test_allow_wasi_but_not_log():
    plugin = load(RESTRICTION, allowed_capabilities=["proxy_on_vm_start", "fd_write"])
    assert _filter_logs(plugin) == ["WASI write to stdout"]


def test_allow_on_context_create():
    plugin = load(
        RESTRICTION,
        allowed_capabilities=[
            "proxy_on_vm_start",
            "proxy_on_context_create",
            "proxy_log",
        ],
    )
    assert _filter_logs(plugin) == [CTX_LOG, VM_LOG]


def test_restricted_stream_callback_on_the_driver():
    # on_request_headers restricted: Envoy goes on (Continue) without calling it.
    with Driver(
        RESTRICTION,
        allowed_capabilities=["proxy_on_context_create", "proxy_log"],
    ) as d:
        http = d.http()
        assert http.created.logs.info == [CTX_LOG]
        r = http.on_request_headers({":path": "/"})
        assert r.action == "Continue"
        assert not r.called
        assert r.logs == []
    with Driver(
        RESTRICTION,
        allowed_capabilities=["proxy_on_request_headers", "proxy_log"],
    ) as d:
        r = d.http().on_request_headers({":path": "/"})
        assert r.called
        assert r.logs.info == ["on_request_headers ran"]
        assert r.action == "StopAllIterationAndWatermark"


def test_an_unknown_name_is_said_once():
    plugin = load(RESTRICTION, allowed_capabilities=["proxy_on_vm_start", "proxy_lgo"])
    warnings = [
        r.message
        for r in plugin.vm.logs
        if r.source == "host" and r.level == LogLevel.WARN
    ]
    assert warnings == [
        "allowed_capabilities: 'proxy_lgo' is no proxy-wasm or WASI function "
        "this module uses or Envoy knows; it allows nothing"
    ]


def test_always_allowed_and_bad_input():
    caps = Capabilities.of(["proxy_log"])
    assert caps.allows("malloc") and caps.allows("_initialize")
    assert not caps.allows("proxy_on_tick")
    with pytest.raises(TypeError, match="not the string 'proxy_log'"):
        Capabilities.of("proxy_log")
