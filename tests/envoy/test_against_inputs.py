"""``against_envoy()``: the Envoy replay gets the same inputs as wasmkit's."""

from __future__ import annotations

import pytest

import wasmkit
from wasmkit.envoy.against import envoy_arguments
from wasmkit.host.connection_manager import ConnectionManager
from wasmkit.replay import run
from wasmkit.replay.results import ReplayResult

from .conftest import ADD_HEADERS, API_FLOW, sample


def test_the_envoy_replay_gets_the_same_inputs():
    manager = ConnectionManager(route_timeout_ms=5000)
    path = sample("add_headers", "rust")
    result = run.replay(
        path,
        API_FLOW,
        root_id="add_headers",
        config=ADD_HEADERS,
        filter_expr="~u /api/",
        limit=3,
        decoded=True,
        failure_policy="fail_open",
        vm_configuration=b"vm",
        environment={"A": "1"},
        log_level="warn",
        limits=wasmkit.Limits(timeout_ms=30_000),
        connection_manager=manager,
        progress=False,
    )
    kwargs, notes = envoy_arguments(result)
    assert kwargs["filter"] == path and kwargs["captures"] == API_FLOW
    assert (kwargs["root_id"], kwargs["config"]) == ("add_headers", ADD_HEADERS)
    assert (kwargs["filter_expr"], kwargs["limit"], kwargs["decoded"]) == (
        "~u /api/", 3, True,
    )  # fmt: skip
    assert kwargs["failure_policy"] == "fail_open"
    assert kwargs["vm_config"] == b"vm"
    assert kwargs["environment"] == {"A": "1"}
    assert kwargs["log_level"] == "warn"
    assert kwargs["request_timeout_s"] == 30.0
    assert kwargs["connection_manager"] is manager
    assert notes == []


def test_what_envoy_cannot_reproduce_is_noted_or_refused():
    path = sample("add_headers", "rust")
    chunked = run.replay(
        path, API_FLOW, root_id="add_headers", limit=1, chunk_size=7, progress=False
    )
    _, notes = envoy_arguments(chunked)
    assert any("chunks of 7 bytes" in n for n in notes)
    own = run.replay(
        path,
        API_FLOW,
        limit=1,
        upstream=lambda request, exchange: wasmkit.response(200),
        root_id="add_headers",
        progress=False,
    )
    with pytest.raises(ValueError, match="upstream= function"):
        envoy_arguments(own)
    with pytest.raises(ValueError, match="does not say how it was made"):
        envoy_arguments(ReplayResult("f", []))
    with pytest.raises(ValueError, match="already Envoy's"):
        envoy_arguments(ReplayResult("f", [], runtime="envoy"))
