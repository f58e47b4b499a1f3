"""Envoy's failure policy, through a real Envoy 1.40 and through wasmkit.

Measured: the stream on which the filter traps gets a 503 (``content-length:
0``, empty body, details ``wasm_fail_stream``) under every ``failure_policy``;
later streams get the same 503 without the filter being called
(``FAIL_CLOSED``, and ``FAIL_RELOAD`` within its backoff), skip the filter
(``FAIL_OPEN``), or run on a reloaded VM (``FAIL_RELOAD`` after the backoff).
The deprecated ``fail_open: true`` lets the failing stream itself through.
"""

from __future__ import annotations

import time

import pytest

from wasmkit import envoy
from wasmkit.envoy import EnvoyRunner, config
from wasmkit.host import load
from wasmkit.replay.run import replay

from .conftest import API_FLOW, wat

# Logs "called", then traps, on every request.
TRAP = """
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "called")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) i32.const 1024)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 100) (i32.const 6)))
    unreachable))
"""


def _shape(r):
    # What the client got and whether the filter ran, as both report it.
    response = r.client_response or r.response_after  # as the client got it
    return (
        response.status,
        response.body,
        response.get(b"content-length"),
        r.request_forwarded,
        r.error is not None,
        [log.message for log in r.logs],
    )


FAILED_503 = (503, b"", b"0", False, True, ["called"])
LATER_503 = (503, b"", b"0", False, True, [])


@pytest.mark.parametrize(
    ("options", "later"),
    [
        ({}, LATER_503),
        ({"failure_policy": "fail_closed"}, LATER_503),
        ({"failure_policy": "fail_open"}, "forwarded"),
    ],
    ids=["unset", "fail_closed", "fail_open"],
)
def test_the_failing_stream_and_later_ones_as_envoy(options, later):
    module = wat(TRAP)
    theirs = envoy.replay(module, API_FLOW, limit=3, log_level="info", **options)
    ours = replay(module, API_FLOW, limit=3, **options)
    got = [_shape(f.result) for f in theirs.flows]
    assert got == [_shape(f.result) for f in ours.flows]
    assert got[0] == FAILED_503
    for flow, shape in zip(theirs.flows[1:], got[1:], strict=True):
        if later == "forwarded":
            assert shape[3] and not shape[4] and shape[5] == []
            assert shape[0] == flow.exchange.to_response_message().status
        else:
            assert shape == later
    # The 503's details are Envoy's, and wasmkit says why later flows failed.
    said = "Envoy answered itself: wasm_fail_stream"
    assert said in theirs.flows[0].result.notes
    assert (said in theirs.flows[1].result.notes) == (later != "forwarded")
    note = ours.flows[1].result.notes[0]
    if later == "forwarded":
        assert note == (
            "the VM failed at flow 0 (proxy_on_request_headers: trap): fail_open "
            "passes the stream without the filter"
        )
    else:
        assert note == (
            "the VM failed at flow 0 (proxy_on_request_headers: trap): fail_closed "
            "answers 503 (wasm_fail_stream) without calling the filter"
        )


def test_the_deprecated_fail_open_lets_the_failing_stream_through_too():
    module = wat(TRAP)
    theirs = envoy.replay(module, API_FLOW, limit=2, log_level="info", fail_open=True)
    ours = replay(module, API_FLOW, limit=2, fail_open=True)
    got = [_shape(f.result) for f in theirs.flows]
    assert got == [_shape(f.result) for f in ours.flows]
    first = got[0]
    assert first[3] and first[4] and first[5] == ["called"]  # forwarded, failed
    assert first[0] == theirs.flows[0].exchange.to_response_message().status
    assert got[1][3] and not got[1][4] and got[1][5] == []
    plugin = config.wasm_filter(config.WasmFilterConfig(module, fail_open=True))
    assert plugin["typed_config"]["config"]["fail_open"] is True
    assert "failure_policy" not in plugin["typed_config"]["config"]
    with pytest.raises(ValueError, match="only one of fail_open or failure_policy"):
        load(TRAP, fail_open=True, failure_policy="fail_closed")


def test_fail_reload_reloads_after_the_backoff(exchanges):
    # Backoff 3 s: the second stream comes within it (Envoy's handle is made
    # at start-up), the third after 1.5 times it.
    module = wat(TRAP)
    with EnvoyRunner(
        module, failure_policy="fail_reload", reload_backoff_ms=3000, log_level="info"
    ) as runner:
        theirs = [runner.run(exchanges[0]), runner.run(exchanges[0])]
        time.sleep(4.6)
        theirs += [runner.run(exchanges[0]), runner.run(exchanges[0])]
    plugin = load(module, failure_policy="fail_reload", reload_backoff_ms=3000)
    request = exchanges[0].to_request_message()
    recorded = exchanges[0].to_response_message()
    ours = []
    for step in range(4):
        if step == 2:
            plugin.vm.advance(4600)
        ours.append(plugin.run_http(request, recorded))
    got = [_shape(f.result) for f in theirs]
    # The third stream ran the filter again ("called"): a reloaded VM.
    assert got == [FAILED_503, LATER_503, FAILED_503, LATER_503]
    assert [_shape(r) for r in ours] == got
    assert any("reloaded for this stream" in n for n in ours[2].notes)
    assert "until the reload backoff has passed" in ours[3].notes[0]


RESPONSE_TRAP = """(func (export "proxy_on_response_headers") (param i32 i32 i32)
  (result i32) unreachable)"""


@pytest.mark.parametrize(
    "options",
    [{}, {"fail_open": True}, {"failure_policy": "fail_open"}],
    ids=["fail_closed", "deprecated fail_open", "fail_open"],
)
def test_a_trap_on_the_response_path_as_envoy(options):
    # The response headers have not gone out: the 503 replaces them (the
    # request did reach the upstream), or, with fail_open: true, the
    # upstream's response passes.
    from wasmkit.testing import filter_wat

    module = wat(filter_wat(RESPONSE_TRAP))
    theirs = envoy.replay(module, API_FLOW, limit=2, **options).flows
    ours = replay(module, API_FLOW, limit=2, **options).flows

    def seen(flow):
        r = flow.result
        client = r.client_response or r.response_after
        return (client.status, client.body, r.request_forwarded, r.details)

    got = [seen(f) for f in theirs]
    assert got == [seen(f) for f in ours]
    recorded = [f.exchange.to_response_message().status for f in theirs]
    if options.get("fail_open"):
        assert [g[0] for g in got] == recorded
    else:
        assert got[0] == (503, b"", True, "wasm_fail_stream")
        if options:  # fail_open: the next stream skips the filter
            assert got[1][0] == recorded[1] and got[1][3] == "via_upstream"
        else:  # the next stream gets the 503 before going anywhere
            assert got[1] == (503, b"", False, "wasm_fail_stream")


# Counts requests in a metric and logs the count (one digit); traps when it
# reaches 2.
COUNTER = """
(global $id (mut i32) (i32.const 0))
(func (export "proxy_on_configure") (param i32 i32) (result i32)
  (drop (call $proxy_define_metric (i32.const 0) (global.get $s_n) (global.get $s_n_len)
    (i32.const 0x20000)))
  (global.set $id (i32.load (i32.const 0x20000)))
  (i32.const 1))
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_increment_metric (global.get $id) (i64.const 1)))
  (drop (call $proxy_get_metric (global.get $id) (i32.const 0x20008)))
  (i32.store8 (i32.const 0x20010) (i32.add (i32.const 48) (i32.load (i32.const 0x20008))))
  (drop (call $proxy_log (i32.const 2) (i32.const 0x20010) (i32.const 1)))
  (if (i32.eq (i32.load (i32.const 0x20008)) (i32.const 2)) (then unreachable))
  (i32.const 0))
"""


def test_metrics_outlive_a_reloaded_vm(exchanges):
    from wasmkit.testing import filter_wat

    module = wat(filter_wat(COUNTER, strings={"n": "requests"}, memory_pages=3))
    options = {"failure_policy": "fail_reload", "reload_backoff_ms": 1000}
    with EnvoyRunner(module, log_level="info", **options) as runner:
        theirs = [runner.run(exchanges[0]).result for _ in range(2)]
        time.sleep(1.6)
        theirs += [runner.run(exchanges[0]).result for _ in range(2)]
    plugin = load(module, **options)
    ours = []
    for step in range(4):
        if step == 2:
            plugin.vm.advance(1600)
        ours.append(plugin.run_http(exchanges[0].to_request_message()))
    # The reloaded VM's counter goes on from 2 (Envoy's stats stay).
    counts = [["1"], ["2"], ["3"], ["4"]]
    assert [[log.message for log in r.logs] for r in theirs] == counts
    assert [[log.message for log in r.logs] for r in ours] == counts
    assert [r.error is not None for r in ours] == [False, True, False, False]
    assert [r.error is not None for r in theirs] == [False, True, False, False]
