"""wasmkit build | inspect | doctor, and run on a source folder, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wasmkit.build import build, go

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "filters" / "add_headers"

# Imports wasmkit provides but Envoy lacks, one Envoy got only in 2026, one of
# the wrong type, one from nowhere; a start section, no _initialize.
ODD_IMPORTS = """(module
  (import "env" "abort" (func (param i32 i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func (param i32 i32) (result i32)))
  (import "env" "pthread_equal" (func (param i32 i32) (result i32)))
  (import "foo" "bar" (func))
  (memory (export "memory") 1)
  (func $s)
  (start $s)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 0)))
"""

NEW_ENVOY_ONLY = """(module
  (import "wasi_snapshot_preview1" "fd_pread" (func (param i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0)))
"""


def wasmkit(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.toolchain("go")
def test_build_prints_the_path_and_writes_output(tmp_path):
    out = tmp_path / "f.wasm"
    proc = wasmkit("build", str(SAMPLE / "go"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert out.read_bytes().startswith(b"\0asm")
    assert "add_headers.go.wasm" in proc.stderr
    again = wasmkit("build", str(SAMPLE / "go"), "--json")
    record = json.loads(again.stdout)
    assert record["cache_hit"] is True and record["lang"] == "go"
    assert Path(record["output"]).read_bytes() == out.read_bytes()
    forced = json.loads(
        wasmkit("build", str(SAMPLE / "go"), "--json", "--force").stdout
    )
    assert forced["cache_hit"] is False


@pytest.mark.toolchain("go")
def test_build_error_shows_the_compiler_and_the_line(tmp_path):
    source = tmp_path / "cell.go"
    text = go.TINY_FILTER + "\nfunc bad() int { return z }\n"
    source.write_text(text)
    line = text.splitlines().index("func bad() int { return z }") + 1
    proc = wasmkit("build", str(source))
    assert proc.returncode == 1
    assert "undefined: z" in proc.stderr
    assert f"{source}:{line}:25: undefined: z" in proc.stderr
    record = json.loads(wasmkit("build", str(source), "--json").stdout)["error"]
    assert record["type"] == "CompileError" and record["returncode"] == 1
    assert record["diagnostics"] == [[str(source), line, 25, "undefined: z"]]


def test_build_refuses_what_it_cannot_tell(tmp_path):
    proc = wasmkit("build", str(tmp_path))
    assert proc.returncode == 1
    assert "cannot tell the language" in proc.stderr
    assert wasmkit("build", str(SAMPLE / "go"), "--lang", "cobol").returncode == 1


def test_build_without_the_compiler_says_what_to_install(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = wasmkit("build", str(SAMPLE / "go"), env=env)
    assert proc.returncode == 1
    assert "the 'go' command is not on PATH" in proc.stderr


@pytest.mark.toolchain("go")
def test_run_builds_a_source_folder_first():
    proc = wasmkit(
        "run",
        str(SAMPLE / "go"),
        "--root-id",
        "add_headers",
        "--config",
        '{"request": {"x-a": "1"}}',
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert ["x-a", "1"] in record["request"]["headers"]["after"]
    assert "add_headers.go.wasm" in proc.stderr


@pytest.mark.toolchain("go")
def test_run_reports_a_build_failure(tmp_path):
    source = tmp_path / "bad.go"
    source.write_text("package main\nfunc main() { x }\n")
    proc = wasmkit("run", str(source), "--json")
    assert proc.returncode == 1
    assert f"cannot build {source}" in proc.stderr and f"{source}:2:15" in proc.stderr


EXPECTED_START = {
    "assemblyscript": (None, True),
    "rust": ("_initialize", False),
    "go": ("_initialize", False),
}
EXPECTED_ALLOCATOR = {
    "assemblyscript": "malloc",
    "rust": "proxy_on_memory_allocate",
    "go": "proxy_on_memory_allocate",
}


def test_inspect_a_built_sample(lang):
    artifact = build(SAMPLE / lang)
    proc = wasmkit("inspect", str(artifact.path), "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert set(record) == {
        "filter",
        "path",
        "size",
        "sha256",
        "abi_version",
        "abi",
        "vendor",
        "allocator",
        "start",
        "start_section",
        "toolchain",
        "producers",
        "custom_sections",
        "memories",
        "loads",
        "problems",
        "exports",
        "imports",
    }
    assert record["abi_version"] in ("0.2.0", "0.2.1")
    assert record["allocator"] == EXPECTED_ALLOCATOR[lang]
    assert (record["start"], record["start_section"]) == EXPECTED_START[lang]
    assert record["size"] == artifact.size
    assert record["loads"] == {
        "wasmkit": True,
        "envoy": True,
        "envoy_before_2026": True,
    }
    assert record["problems"] == []
    exports = {e["name"]: e for e in record["exports"]}
    assert exports["proxy_on_request_headers"] == {
        "name": "proxy_on_request_headers",
        "kind": "func",
        "signature": "(i32, i32, i32) -> (i32)",
    }
    imports = {f"{i['module']}.{i['name']}": i for i in record["imports"]}
    assert imports["env.proxy_log"] == {
        "module": "env",
        "name": "proxy_log",
        "kind": "func",
        "signature": "(i32, i32, i32) -> (i32)",
        "wasmkit": True,
        "envoy": True,
        "note": None,
    }
    text = wasmkit("inspect", str(artifact.path))
    assert "allocator  " + EXPECTED_ALLOCATOR[lang] in text.stdout


@pytest.mark.toolchain("go")
def test_inspect_builds_a_source_folder():
    record = json.loads(wasmkit("inspect", str(SAMPLE / "go"), "--json").stdout)
    assert record["filter"] == str(SAMPLE / "go")
    assert record["abi_version"] == "0.2.0"


def test_inspect_flags_what_wasmkit_and_envoy_provide(tmp_path):
    path = tmp_path / "odd.wat"
    path.write_text(ODD_IMPORTS)
    proc = wasmkit("inspect", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["abi_version"] == "0.2.1" and record["allocator"] == "malloc"
    assert (record["start"], record["start_section"]) == (None, True)
    flags = {
        i["name"]: (i["wasmkit"], i["envoy"], i["note"]) for i in record["imports"]
    }
    assert flags["abort"][:2] == (True, False) and "Envoy lacks it" in flags["abort"][2]
    assert flags["fd_pread"] == (True, True, "only Envoy >= 2026")
    assert flags["fd_write"] == (True, True, None)
    assert flags["proxy_get_buffer_status"][:2] == (True, False)
    assert flags["proxy_log"][:2] == (False, False)
    assert "imported as (i32, i32) -> (i32)" in flags["proxy_log"][2]
    assert flags["pthread_equal"] == (True, True, None)
    assert flags["bar"] == (False, False, "unknown import module 'foo'")
    assert record["loads"] == {
        "wasmkit": False,
        "envoy": False,
        "envoy_before_2026": False,
    }
    assert any("foo.bar" in p for p in record["problems"])
    text = wasmkit("inspect", str(path)).stdout
    assert "wasi_snapshot_preview1.fd_pread" in text and "yes (>= 2026)" in text


def test_inspect_a_module_only_new_envoy_loads(tmp_path):
    path = tmp_path / "new.wat"
    path.write_text(NEW_ENVOY_ONLY)
    record = json.loads(wasmkit("inspect", str(path), "--json").stdout)
    assert record["loads"] == {
        "wasmkit": True,
        "envoy": True,
        "envoy_before_2026": False,
    }
    assert record["start"] == "_initialize" and record["start_section"] is False


def test_inspect_a_broken_file(tmp_path):
    path = tmp_path / "bad.wasm"
    path.write_bytes(b"\0asm\1\0\0\0\xff")
    proc = wasmkit("inspect", str(path))
    assert proc.returncode == 1 and "invalid wasm module" in proc.stderr


def test_doctor_json():
    proc = wasmkit("doctor", "--json")
    record = json.loads(proc.stdout)
    assert set(record) == {"ok", "kit_cache", "build_cache", "toolchains"}
    assert [t["lang"] for t in record["toolchains"]] == [
        "assemblyscript",
        "rust",
        "go",
        "tinygo",
    ]
    for t in record["toolchains"]:
        assert set(t) == {
            "lang",
            "required",
            "found",
            "versions",
            "works",
            "build_ms",
            "problem",
            "install",
        }
        if t["found"]:
            assert t["works"] is True, t["problem"]
            assert t["versions"]
        else:
            assert t["install"]
    assert proc.returncode == (0 if record["ok"] else 1)
    assert record["toolchains"][3]["required"] is False


def test_doctor_without_go(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = wasmkit("doctor", "--lang", "go", "--no-build", env=env)
    assert proc.returncode == 1
    assert "go              missing" in proc.stdout
    assert "https://go.dev/dl/" in proc.stdout
