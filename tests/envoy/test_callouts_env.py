"""Callouts and the VM's environment, through a real Envoy 1.40 and wasmkit."""

from __future__ import annotations

import pytest

from tests.host.test_plugin import ENV_LOGGER
from wasmkit.envoy import EnvoyRunner, config
from wasmkit.host import load
from wasmkit.testing import filter_wat

from .conftest import wat


def test_the_vm_environment_as_envoy_builds_it(exchanges, monkeypatch):
    # Envoy passes key_values and the host_env_keys set in its own
    # environment to WASI environ_get; nothing else of its environment.
    monkeypatch.setenv("WASMKIT_TEST_REGION", "eu-1")
    monkeypatch.setenv("WASMKIT_TEST_SECRET", "s3cr3t")
    monkeypatch.delenv("WASMKIT_TEST_UNSET", raising=False)
    options = {
        "environment": {"A": "1", "B": "x=y"},
        "host_env_keys": ["WASMKIT_TEST_REGION", "WASMKIT_TEST_UNSET"],
    }
    module = wat(ENV_LOGGER)
    with EnvoyRunner(module, log_level="info", **options) as runner:
        theirs = [log.message for log in runner.run(exchanges[0]).result.logs]
    request = exchanges[0].to_request_message()
    ours = [log.message for log in load(module, **options).run_http(request).logs]

    def entries(lines):
        (line,) = lines
        return sorted(item for item in line.split(";") if item)

    want = ["A=1", "B=x=y", "WASMKIT_TEST_REGION=eu-1"]
    assert entries(theirs) == entries(ours) == want
    # Nothing by default, in both.
    with EnvoyRunner(module, log_level="info") as runner:
        theirs = [log.message for log in runner.run(exchanges[0]).result.logs]
    assert theirs == [log.message for log in load(module).run_http(request).logs]
    assert theirs == [""]
    # The config carries both forms.
    written = config.wasm_filter(
        config.WasmFilterConfig(
            module, environment={"A": "1"}, host_env_keys=("WASMKIT_TEST_REGION",)
        )
    )["typed_config"]["config"]["vm_config"]["environment_variables"]
    assert written == {
        "host_env_keys": ["WASMKIT_TEST_REGION"],
        "key_values": {"A": "1"},
    }


def test_a_key_named_twice_is_refused_as_envoy_does():
    from wasmkit.errors import EnvoyError

    with pytest.raises(EnvoyError, match=r"Key A is duplicated in envoy\.extensions"):
        EnvoyRunner(
            wat(ENV_LOGGER), environment={"A": "1"}, host_env_keys=["A"]
        ).start()
    with pytest.raises(ValueError, match=r"Key A is duplicated in envoy\.extensions"):
        load(wat(ENV_LOGGER), environment={"A": "1"}, host_env_keys=["A"])


def test_a_callout_as_envoys_async_client_sends_and_answers_it(exchanges):
    # The request gets content-length (it has a body); the filter reads the
    # responder's headers plus x-envoy-upstream-service-time.
    from tests.host.test_events import AUTH_OK, callout_logger

    module = wat(callout_logger())
    with EnvoyRunner(module, responder=AUTH_OK, log_level="info") as runner:
        theirs = runner.run(exchanges[0]).result
    ours = load(module, responder=AUTH_OK).run_http(
        exchanges[0].to_request_message(), exchanges[0].to_response_message()
    )
    def headers(logs):
        (line,) = [log.message for log in logs]
        items = line.split(";")[:-1]
        return list(zip(items[::2], items[1::2], strict=True))

    got = headers(theirs.logs)
    # Envoy's service time is its wall-clock ms; wasmkit's the virtual 0.
    assert got[:2] == [(":status", "200"), ("x-from", "auth")]
    assert got[2][0] == "x-envoy-upstream-service-time" and got[2][1].isdigit()
    assert headers(ours.logs) == [*got[:2], ("x-envoy-upstream-service-time", "0")]
    (arrived,) = theirs.callouts
    (sent,) = ours.callouts
    assert (b"content-length", b"11") in arrived.headers
    assert (b"content-length", b"11") in sent.headers
    assert arrived.body == sent.body == b"hello world"


def _answer(call):
    from wasmkit.host import response

    return response(200, [("x-from", call.cluster)], "ok")


@pytest.mark.parametrize(
    ("cluster", "options", "said"),
    [
        ("nowhere", {"responder": {"auth": {"status": 200}}}, "http_call refused"),
        ("auth", {"responder": _answer}, "http_call refused"),
        (
            "auth",
            {"responder": _answer, "clusters": ["auth"]},
            ":status;200;x-from;auth;x-envoy-upstream-service-time;0;",
        ),
    ],
    ids=["not in the table", "function, undeclared", "function, declared"],
)
def test_unknown_clusters_are_refused_as_envoy_does(exchanges, cluster, options, said):
    from tests.host.test_events import callout_logger

    module = wat(callout_logger(cluster))
    with EnvoyRunner(module, log_level="info", **options) as runner:
        theirs = [log.message for log in runner.run(exchanges[0]).result.logs]
    result = load(module, **options).run_http(exchanges[0].to_request_message())
    ours = [log.message for log in result.logs]
    # Envoy's upstream service time is wall-clock ms: compare without it.
    assert [t.rsplit("time;", 1)[0] for t in theirs] == [
        t.rsplit("time;", 1)[0] for t in ours
    ]
    assert ours == [said]


# Calls proxy_grpc_call with the upstream ``target`` and logs the status as
# one character: "0" OK, "4" PARSE_FAILURE, "2" BAD_ARGUMENT...
def grpc_status_logger(target: bytes) -> str:
    return filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (i32.store8 (i32.const 0x20000) (i32.add (i32.const 48)
            (call $proxy_grpc_call (global.get $s_t) (global.get $s_t_len)
              (global.get $s_s) (global.get $s_s_len) (global.get $s_m) (global.get $s_m_len)
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
              (i32.const 1000) (i32.const 0x20004))))
          (drop (call $proxy_log (i32.const 2) (i32.const 0x20000) (i32.const 1)))
          (i32.const 0))""",
        strings={"t": target, "s": "svc", "m": "Method"},
        memory_pages=3,
    )


@pytest.mark.parametrize(
    ("target", "status"),
    [(b"bogus grpc_service", "4"), (b"auth", "0")],
    ids=["bogus grpc_service", "a declared cluster"],
)
def test_a_grpc_upstream_is_a_service_or_a_known_cluster_as_in_envoy(
    exchanges, target, status
):
    module = wat(grpc_status_logger(target))
    options = {"responder": _answer, "clusters": ["auth"]}
    with EnvoyRunner(module, log_level="info", **options) as runner:
        theirs = [log.message for log in runner.run(exchanges[0]).result.logs]
    ours = load(module, grpc_responder=lambda req: None, **options).run_http(
        exchanges[0].to_request_message()
    )
    assert [log.message for log in ours.logs] == theirs == [status]


def test_a_negative_callout_timeout_is_refused_as_envoy_does(exchanges):
    from tests.host.test_events import AUTH_OK, callout_logger

    module = wat(callout_logger().replace("(i32.const 5000)", "(i32.const -1)"))
    with EnvoyRunner(module, responder=AUTH_OK, log_level="info") as runner:
        theirs = [log.message for log in runner.run(exchanges[0]).result.logs]
    result = load(module, responder=AUTH_OK).run_http(exchanges[0].to_request_message())
    assert [log.message for log in result.logs] == theirs == ["http_call refused"]
    assert result.callouts == []
