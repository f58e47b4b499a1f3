"""Callouts and the VM's environment, through a real Envoy 1.40 and wasmkit."""

from __future__ import annotations

import pytest

from tests.host.test_plugin import ENV_LOGGER
from wasmkit.envoy import EnvoyRunner, config
from wasmkit.host import load

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
