"""Subprocesses, version memo and project paths shared by the adapters (no compiler)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wasmkit.build import toolchain
from wasmkit.build.toolchain import Diagnostic, Project, run, tool_version
from wasmkit.errors import CompileError, ToolchainNotFoundError


def test_run_captures_output_and_status():
    proc = run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_run_kills_the_process_group_on_timeout(tmp_path):
    marker = tmp_path / "child-finished"
    started = time.monotonic()
    with pytest.raises(CompileError, match=r"did not finish within 0\.3 s") as info:
        # The grandchild must die too, or it would create the marker.
        run(["sh", "-c", f"(sleep 2; touch {marker}) & sleep 5"], timeout=0.3)
    assert time.monotonic() - started < 3
    assert info.value.command[0] == "sh"
    time.sleep(2.5)
    assert not marker.exists()


def test_run_of_a_missing_program():
    with pytest.raises(ToolchainNotFoundError, match="cannot run /no/such/compiler"):
        run(["/no/such/compiler"], timeout=5)


def test_tool_version_asks_once_per_executable(tmp_path, monkeypatch):
    monkeypatch.setattr(toolchain, "_versions", {})
    calls = tmp_path / "calls"
    exe = tmp_path / "fakec"
    exe.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'fakec 1.2.3'\n")
    exe.chmod(0o755)
    assert tool_version(exe, ["--version"]) == "fakec 1.2.3"
    assert tool_version(exe, ["--version"]) == "fakec 1.2.3"
    # A new process (empty memory) reads the on-disk memo.
    monkeypatch.setattr(toolchain, "_versions", {})
    assert tool_version(exe, ["--version"]) == "fakec 1.2.3"
    assert calls.read_text().count("x") == 1
    # A changed executable is asked again.
    exe.write_text(f"#!/bin/sh\necho x >> {calls}\necho 'fakec 2.0.0 (new)'\n")
    assert tool_version(exe, ["--version"]) == "fakec 2.0.0 (new)"
    assert calls.read_text().count("x") == 2


def test_tool_version_of_a_failing_tool(tmp_path):
    exe = tmp_path / "broken"
    exe.write_text("#!/bin/sh\necho 'no wasm std' >&2\nexit 1\n")
    exe.chmod(0o755)
    with pytest.raises(ToolchainNotFoundError, match="no wasm std"):
        tool_version(exe, ["--version"])


def test_project_locates_diagnostics(tmp_path):
    user = Project("go", tmp_path, "m", "0" * 64)
    assert user.display("./main.go") == str(tmp_path / "main.go")
    assert user.display(str(tmp_path / "sub" / "a.go")) == str(
        tmp_path / "sub" / "a.go"
    )
    assert user.display("/elsewhere/x.go") == "/elsewhere/x.go"
    assert user.relative(str(tmp_path.parent)) is None
    text = Project(
        "rust", tmp_path, "f", "0" * 64, files={}, shown={"src/lib.rs": "<source>"}
    )
    assert text.locate(Diagnostic("src/lib.rs", 12, 5, "m")) == ("<source>", 12, 5, "m")


def test_compile_error_message_lists_located_diagnostics(tmp_path):
    import subprocess

    p = Project("go", tmp_path, "f", "0" * 64, files={}, shown={"main.go": "<source>"})
    proc = subprocess.CompletedProcess(["go", "build"], 1, "", "")
    diags = [Diagnostic("./main.go", i, 2, f"e{i}") for i in range(1, 25)]
    exc = p.compile_error("go", proc, "raw stderr", diags)
    assert exc.returncode == 1 and exc.command == ["go", "build"]
    assert exc.stderr == "raw stderr"
    assert exc.diagnostics[0] == ("<source>", 1, 2, "e1")
    assert "<source>:1:2: e1" in str(exc)
    assert "... and 4 more" in str(exc)
    # Without diagnostics the message ends with the output's tail.
    bare = p.compile_error("go", proc, "go: something broke\n", [])
    assert str(bare).endswith("go: something broke")
    assert Path(tmp_path).exists()
