"""Envoy's knobs checked against a real Envoy 1.40: capability restriction
(the config writer's ``capability_restriction_config``), the timing
properties and how Envoy encodes them, and a callout to a cluster without
healthy hosts (the async client's inline 503).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from tests.envoy.conftest import API_FLOW, sample, wat
from tests.host.test_capabilities import RESTRICTION
from wasmkit.abi.constants import LogLevel
from wasmkit.envoy import EnvoyRunner, config, sender
from wasmkit.envoy.process import EnvoyProcess
from wasmkit.envoy.servers import UpstreamServer
from wasmkit.host import load
from wasmkit.replay.run import replay
from wasmkit.testing import InlineReply, filter_wat


def _envoy_lines(bootstrap: dict, workdir: Path, levels: str, then=None) -> list:
    path = config.write_bootstrap(workdir / "envoy.json", bootstrap)
    process = EnvoyProcess(path, workdir, component_levels=levels)
    try:
        process.start()
        if then is not None:
            then(process)
        time.sleep(0.3)  # the last lines reach the collector
        return list(process.lines)
    finally:
        process.stop()


def _worker_messages(lines) -> list[str]:
    # The worker VM's start-up: after the last "Thread-Local Wasm created".
    starts = [
        i
        for i, ln in enumerate(lines)
        if ln.logger == "wasm" and "Thread-Local Wasm created" in ln.message
    ]
    out = []
    for ln in lines[starts[-1] + 1 :]:
        if ln.logger != "wasm":
            continue
        if ln.message.startswith("wasm log"):
            out.append(ln.message.partition(": ")[2])
        elif "restricted" in ln.message:
            assert ln.level == LogLevel.ERROR
            out.append(ln.message)
    return out


def _wasmkit_messages(allowed) -> list[str]:
    plugin = load(RESTRICTION, allowed_capabilities=allowed)
    return [
        r.message
        for r in plugin.vm.logs
        if r.source != "host" or r.level == LogLevel.ERROR
    ]


@pytest.mark.parametrize(
    "allowed",
    [
        ("proxy_get_status",),
        ("proxy_on_vm_start",),
        ("proxy_on_vm_start", "proxy_log"),
        ("proxy_on_vm_start", "fd_write"),
        ("proxy_on_vm_start", "proxy_on_context_create", "proxy_log"),
    ],
    ids=["nothing", "vm_start", "log", "wasi", "context_create"],
)
def test_capability_restriction_as_envoy(allowed):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        module = work / "restriction.wasm"
        module.write_bytes(wat(RESTRICTION))
        boot = config.bootstrap(
            config.WasmFilterConfig(module, allowed_capabilities=allowed),
            upstream_port=1,
            callout_ports={},
        )
        vm = boot["static_resources"]["listeners"][0]["filter_chains"][0]
        assert "capability_restriction_config" in str(vm)
        lines = _envoy_lines(boot, work, "wasm:debug")
    assert not any("Deprecated field" in ln.message for ln in lines)
    envoy = [m.rstrip("\n") for m in _worker_messages(lines)]
    assert envoy == [m.rstrip("\n") for m in _wasmkit_messages(allowed)]


# -- timing properties ---------------------------------------------------------------

PROPERTIES = [
    "request.time",
    "request.duration",
    "response.code_details",
    "response.flags",
    "response.code",
]


def _reads(callback: str, params: str, result: str) -> str:
    body = []
    for i, name in enumerate(PROPERTIES):
        text = name == "response.code_details"
        shown = (
            "(drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512)) "
            "(i32.load (i32.const 516))))"
            if text
            else "(call $hex (i32.load (i32.const 512)) (i32.load (i32.const 516)))"
        )
        body.append(
            f"(if (i32.eqz (call $proxy_get_property (global.get $s_p{i}) "
            f"(global.get $s_p{i}_len) (i32.const 512) (i32.const 516)))\n"
            f"  (then {shown})\n"
            "  (else (drop (call $proxy_log (i32.const 2) (global.get $s_missing) "
            "(global.get $s_missing_len)))))"
        )
    ret = "(i32.const 0)" if result else ""
    return (
        f'(func (export "{callback}") {params} {result}\n' + "\n".join(body) + ret + ")"
    )


TIMING = filter_wat(
    """
(func $hex (param $src i32) (param $n i32)
  (local $i i32) (local $b i32) (local $d i32)
  (block $done (loop $next
    (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
    (local.set $b (i32.load8_u (i32.add (local.get $src) (local.get $i))))
    (local.set $d (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 1))))
    (i32.store8 (local.get $d) (i32.load8_u (i32.add (global.get $s_digits)
      (i32.shr_u (local.get $b) (i32.const 4)))))
    (i32.store8 (i32.add (local.get $d) (i32.const 1)) (i32.load8_u
      (i32.add (global.get $s_digits) (i32.and (local.get $b) (i32.const 15)))))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $next)))
  (drop (call $proxy_log (i32.const 2) (i32.const 4096)
    (i32.shl (local.get $n) (i32.const 1)))))
"""
    + _reads("proxy_on_request_headers", "(param i32 i32 i32)", "(result i32)")
    + _reads("proxy_on_log", "(param i32)", ""),
    strings={
        "digits": "0123456789abcdef",
        "missing": "missing",
        **{f"p{i}": name.replace(".", "\0") for i, name in enumerate(PROPERTIES)},
    },
)


def _int(text: str) -> int:
    return int.from_bytes(bytes.fromhex(text), "little", signed=True)


def test_timing_properties_as_envoy_encodes_them(exchanges):
    exchange = exchanges[0]
    began = time.time_ns()
    with EnvoyRunner(wat(TIMING), log_level="info") as envoy:
        flow = envoy.run(exchange)
    ended = time.time_ns()
    got = [r.message for r in flow.result.logs]
    assert len(got) == 2 * len(PROPERTIES), got
    headers, at_log = got[: len(PROPERTIES)], got[len(PROPERTIES) :]
    # On request headers: a timestamp (int64 ns), no duration, no details, no
    # code yet; the flags are always there (0).
    assert began <= _int(headers[0]) <= ended and len(headers[0]) == 16
    assert headers[1:] == ["missing", "missing", "0" * 16, "missing"]
    # At log time: the request is complete, so its duration (int64 ns).
    assert _int(at_log[0]) == _int(headers[0])
    assert 0 < _int(at_log[1]) < ended - began and len(at_log[1]) == 16
    assert at_log[2:] == ["via_upstream", "0" * 16, _code(exchange.response.status)]
    # wasmkit: the same properties, present or absent in the same phases.
    [mine] = replay(wat(TIMING), API_FLOW, limit=1).flows
    ours = [r.message for r in mine.result.logs]
    assert [m == "missing" for m in ours] == [m == "missing" for m in got]
    assert ours[2:5] == headers[2:5] and ours[7:] == at_log[2:]
    assert len(ours[5]) == len(ours[6]) == 16


def _code(status: int) -> str:
    return status.to_bytes(8, "little").hex()


# -- a cluster without healthy hosts: the inline 503 ------------------------------


def test_a_cluster_without_hosts_fails_the_dispatch_as_inline_reply(exchanges):
    # Envoy's async client answers 503 (no healthy upstream) inside send();
    # the filter's http_call returns InternalFailure: the sample says it
    # cannot call the cluster, exactly as with wasmkit's InlineReply.
    filter_path = sample("auth_callout", "rust")
    cfg = '{"cluster": "empty", "path": "/check"}'
    exchange = exchanges[0]
    upstream = UpstreamServer()
    upstream.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            boot = config.bootstrap(
                config.WasmFilterConfig(
                    filter_path, root_id="auth_callout", configuration=cfg.encode()
                ),
                upstream_port=upstream.port,
                callout_ports={},
            )
            boot["static_resources"]["clusters"].append(
                {
                    "name": "empty",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": "empty", "endpoints": []},
                }
            )
            answers = []

            def send(process):
                port = process.listener_ports()[config.FILTER_LISTENER]
                answers.append(sender.send(port, exchange.request, 10.0))

            lines = _envoy_lines(boot, work, "wasm:debug", send)
    finally:
        upstream.stop()
    envoy_logs = [
        ln.message.partition(": ")[2]
        for ln in lines
        if ln.logger == "wasm"
        and ln.message.startswith("wasm log")
        and "auth_callout:" in ln.message
    ]
    [mine] = replay(
        filter_path,
        API_FLOW,
        limit=1,
        root_id="auth_callout",
        config=cfg,
        clusters=["empty"],
        responder=lambda call: InlineReply(),
    ).flows
    ours = [r.message for r in mine.result.logs if "auth_callout:" in r.message]
    assert envoy_logs == ours
    assert mine.result.callouts[0].outcome == "inline_reply"
    [answer] = answers
    assert answer.response is not None
    assert int(answer.response.start[1]) == mine.result.response_after.status
