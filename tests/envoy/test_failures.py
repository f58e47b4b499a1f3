"""Local replies, callouts, failures and refusals through a real Envoy."""

from __future__ import annotations

import pytest

from wasmkit import envoy
from wasmkit.envoy import EnvoyRunner
from wasmkit.errors import EnvoyError

from .conftest import API_FLOW, gone, sample, wat

_HEAD = """
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) i32.const 1024)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
"""
TRAP = (
    _HEAD
    + """
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    unreachable))
"""
)
LOOP = (
    _HEAD
    + """
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $forever (br $forever)) i32.const 0))
"""
)


@pytest.mark.parametrize("lang", ["assemblyscript", "rust", "go"])
def test_authorize_answers_with_a_local_reply(lang, exchanges):
    config = '{"header": "user-agent", "tokens": ["nobody"]}'
    with EnvoyRunner(
        sample("authorize", lang), root_id="authorize", config=config
    ) as runner:
        flows = [runner.run(x) for x in exchanges[:2]]
    for flow in flows:
        r = flow.result
        assert not r.request_forwarded and r.request_after is None
        assert r.local_reply is not None and r.local_reply.status == 403
        assert r.local_reply.body == b"forbidden\n"
        assert (b"x-denied-by", b"authorize") in r.local_reply.headers
        assert r.response_after.status == 403
        assert r.response_after.get(b"x-denied-by") == b"authorize"
        assert "authorize: denied" in [log.message for log in r.logs]
        assert flow.summary()["action"] == "local reply"


def test_authorize_lets_a_good_token_through(exchanges):
    config = '{"header": "user-agent", "tokens": ["wasmkit-captures/1"]}'
    result = envoy.replay(
        sample("authorize", "rust"),
        API_FLOW,
        root_id="authorize",
        config=config,
        limit=1,
    )
    assert result.flows[0].result.request_forwarded
    assert result.flows[0].result.response_after.status == 200


def test_callouts_are_answered_from_the_responder_table(exchanges):
    table = {"auth /check": {"status": 200, "body": "ok"}}
    config = '{"cluster": "auth", "path": "/check"}'
    with EnvoyRunner(
        sample("auth_callout", "rust"),
        root_id="auth_callout",
        config=config,
        responder=table,
    ) as runner:
        assert runner.clusters == ["auth"]
        flow = runner.run(exchanges[0])
        denied = EnvoyRunner(
            sample("auth_callout", "rust"),
            root_id="auth_callout",
            config=config,
            responder={"auth": {"status": 401}},
        )
    r = flow.result
    assert r.request_after.get(b"x-auth-checked") == b"yes"
    assert len(r.callouts) == 1
    call = r.callouts[0]
    assert (call.cluster, call.path, call.outcome) == ("auth", "/check", "response")
    assert call.response.status == 200
    with denied:
        r = denied.run(exchanges[0]).result
    assert r.local_reply is not None and r.local_reply.status == 403
    assert r.callouts[0].response.status == 401


def test_a_trapping_filter_fails_closed_with_503(exchanges):
    with EnvoyRunner(wat(TRAP)) as runner:
        first, second = (runner.run(x) for x in exchanges[:2])
    r = first.result
    assert r.error is not None and r.error.kind == "trap"
    assert r.error.callback == "proxy_on_request_headers"
    assert "unreachable" in str(r.error)
    assert r.response_after.status == 503 and r.response_after.body == b""
    assert not r.request_forwarded and r.local_reply is None
    assert first.summary()["action"] == "failed"
    # The VM stays failed: Envoy answers 503 without calling the filter.
    assert second.result.error is not None
    assert second.result.response_after.status == 503


def test_fail_open_lets_traffic_past_a_failed_vm(exchanges):
    # Envoy fails the stream that trapped (503) even with FAIL_OPEN; later
    # streams skip the failed VM and go upstream (the deprecated fail_open:
    # true, fail_open=True here, lets the failing stream through too: see
    # test_policy.py).
    with EnvoyRunner(wat(TRAP), failure_policy="fail_open") as runner:
        first, second = (runner.run(x).result for x in exchanges[:2])
    assert first.error is not None and first.response_after.status == 503
    assert second.error is None
    assert second.request_forwarded and second.response_after.status == 201


def test_a_filter_envoy_refuses_gives_envoys_error():
    with pytest.raises(EnvoyError, match="Failed to parse corrupted Wasm module"):
        envoy.replay(b"\0asm\x01\0\0\0garbage", API_FLOW, limit=1)


def test_a_configuration_the_filter_refuses_gives_its_words():
    with pytest.raises(EnvoyError) as info:
        envoy.replay(
            sample("authorize", "rust"),
            API_FLOW,
            root_id="authorize",
            config="not json",
            limit=1,
        )
    text = str(info.value)
    assert "authorize: invalid configuration" in text
    assert "Unable to create Wasm plugin" in text


def test_a_looping_filter_hits_the_wall_clock_limit(exchanges):
    runner = EnvoyRunner(wat(LOOP), request_timeout_s=2)
    with runner:
        pid = runner.process.pid
        with pytest.raises(EnvoyError, match="no answer from Envoy within 2 s"):
            runner.run(exchanges[0])
        assert gone(pid)


def test_a_start_up_that_loops_hits_the_start_limit():
    looping = LOOP.replace(
        '(func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)',
        '(func (export "proxy_on_configure") (param i32 i32) (result i32)'
        " (loop $spin (br $spin)) i32.const 1)",
    )
    assert looping != LOOP
    runner = EnvoyRunner(wat(looping), start_timeout_s=3)
    with pytest.raises(EnvoyError, match="not ready in time"):
        runner.start()
    assert runner.process is not None and runner.process.pid is None
    assert gone(runner.process.last_pid)
