"""``allowed_capabilities`` end to end: a replay restricted in wasmkit and the
same replay through Envoy under the same ``capability_restriction_config``
(``ReplayResult.against_envoy``, ``EnvoyRunner``) agree.

The filter calls a host function outside the allowed set
(``proxy_add_header_map_value``: the stub returns InternalFailure, which the
filter logs) and exports a callback outside it (``proxy_on_response_headers``:
never called, so its header is never added).
"""

from __future__ import annotations

from tests.envoy.conftest import API_FLOW, wat
from wasmkit.abi.constants import WasmResult
from wasmkit.envoy import EnvoyRunner
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

PROBE = filter_wat(
    """
(func (export "proxy_on_context_create") (param i32 i32))
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (local $r i32)
  (local.set $r (call $proxy_add_header_map_value (i32.const 0)
    (global.get $s_req) (global.get $s_req_len)
    (global.get $s_yes) (global.get $s_yes_len)))
  ;; "add=<r>" with r as two decimal digits
  (memory.copy (i32.const 600) (global.get $s_add) (global.get $s_add_len))
  (i32.store8 (i32.const 604)
    (i32.add (i32.const 48) (i32.div_u (local.get $r) (i32.const 10))))
  (i32.store8 (i32.const 605)
    (i32.add (i32.const 48) (i32.rem_u (local.get $r) (i32.const 10))))
  (drop (call $proxy_log (i32.const 2) (i32.const 600) (i32.const 6)))
  (i32.const 0))
(func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_add_header_map_value (i32.const 2)
    (global.get $s_resp) (global.get $s_resp_len)
    (global.get $s_yes) (global.get $s_yes_len)))
  (drop (call $proxy_log (i32.const 2) (global.get $s_seen) (global.get $s_seen_len)))
  (i32.const 0))
""",
    strings={
        "req": "x-added",
        "resp": "x-response-added",
        "yes": "yes",
        "add": "add=",
        "seen": "response headers seen",
    },
)

ALLOWED = ["proxy_on_context_create", "proxy_on_request_headers", "proxy_log"]


def _header(message, name: bytes):
    return [v for k, v in message.headers if k.lower() == name]


def test_a_restricted_replay_and_envoy_under_the_same_restriction_agree():
    result = replay(
        wat(PROBE),
        API_FLOW,
        limit=2,
        allowed_capabilities=ALLOWED,
        log_level="info",
        progress=False,
    )
    # wasmkit: the restricted host call failed, the restricted callback never ran.
    failure = int(WasmResult.INTERNAL_FAILURE)
    for flow in result.flows:
        messages = [r.message for r in flow.result.logs if r.source != "host"]
        assert messages == [f"add={failure:02d}"]
        assert _header(flow.result.request_after, b"x-added") == []
        assert _header(flow.result.response_after, b"x-response-added") == []
    comparison = result.against_envoy()
    assert comparison.identical, comparison.text()
    # The restriction reached Envoy: without it Envoy adds both headers, logs
    # Ok (0) and the response callback's line, and the comparison says so.
    unrestricted = result.against_envoy(allowed_capabilities=None)
    assert not unrestricted.identical
    fields = {d.field for d in unrestricted.unexplained}
    assert any("log" in f for f in fields), unrestricted.text()
    assert any("header" in f or "request" in f for f in fields), unrestricted.text()


def test_the_runner_writes_the_restriction_and_envoy_logs_the_stub(exchanges):
    with EnvoyRunner(
        wat(PROBE), log_level="info", allowed_capabilities={n: {} for n in ALLOWED}
    ) as envoy:
        assert envoy.allowed_capabilities == tuple(sorted(ALLOWED))
        flow = envoy.run(exchanges[0])
        assert envoy.process is not None
        lines = [ln.message for ln in envoy.process.lines]
    assert [r.message for r in flow.result.logs] == ["add=10"]
    assert flow.result.request_after is not None
    assert _header(flow.result.request_after, b"x-added") == []
    assert any(
        "Attempted call to restricted proxy-wasm capability: "
        "proxy_add_header_map_value" in m
        for m in lines
    )
