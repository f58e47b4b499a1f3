"""proxy_close_stream and response code details, through Envoy 1.40 and wasmkit.

Measured: ``proxy_close_stream(HTTP_REQUEST)`` resets the stream after the
callback, before the router sees the request (nothing goes upstream, the
client gets no response), and sets the details ``wasm_close_stream``; on the
response path the details stay ``via_upstream`` (set when the upstream's
headers came). A local reply's details are the filter's with whitespace
replaced by ``_``; a filter failure's are ``wasm_fail_stream``.
"""

from __future__ import annotations

import pytest

from wasmkit.envoy import EnvoyRunner
from wasmkit.host import load
from wasmkit.testing import filter_wat

from .conftest import wat

CLOSE = """(func (export "proxy_on_{side}_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_close_stream (i32.const {stream_type})))
  (i32.const 0))"""
REPLY = """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_send_local_response (i32.const 403)
    (global.get $s_d) (global.get $s_d_len) (i32.const 0) (i32.const 0)
    (i32.const 0) (i32.const 0) (i32.const -1)))
  (i32.const 1))"""
TRAP = """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  unreachable)"""
PASS = """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (i32.const 0))"""

CASES = {
    "close request": (CLOSE.format(side="request", stream_type=0), "wasm_close_stream"),
    "close response": (CLOSE.format(side="response", stream_type=1), "via_upstream"),
    "local reply": (REPLY, "no_way__out"),
    "failure": (TRAP, "wasm_fail_stream"),
    "forwarded": (PASS, "via_upstream"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_response_code_details_as_envoy(case, exchanges):
    body, want = CASES[case]
    module = wat(filter_wat(body, strings={"d": "no way  out"}))
    with EnvoyRunner(module) as runner:
        theirs = runner.run(exchanges[0]).result
    exchange = exchanges[0]
    ours = load(module).run_http(
        exchange.to_request_message(), exchange.to_response_message()
    )
    assert theirs.details == ours.details == want
    assert theirs.request_forwarded == ours.request_forwarded
    assert theirs.reset == ours.reset
    if case == "close request":
        # Nothing went upstream, the client got no response.
        assert not ours.request_forwarded and ours.response_after is None
        assert ours.upstream_request is None


@pytest.mark.parametrize("body", [PASS, REPLY], ids=["forwarded", "local reply"])
def test_every_flow_of_a_capture_has_envoys_details(body):
    # Upstream answers, the router's 503s (refused, reset) and local replies.
    from wasmkit import envoy
    from wasmkit.replay.run import replay

    from .conftest import API_FLOW

    module = wat(filter_wat(body, strings={"d": "no way  out"}))
    theirs = [f.result.details for f in envoy.replay(module, API_FLOW).flows]
    ours = [f.result.details for f in replay(module, API_FLOW).flows]
    assert theirs == ours
    if body is PASS:
        refused = (
            "upstream_reset_before_response_started{remote_connection_failure|"
            "delayed_connect_error:_Connection_refused}"
        )
        assert refused in ours and ours.count("via_upstream") == len(ours) - 1
    else:
        assert set(ours) == {"no_way__out"}
