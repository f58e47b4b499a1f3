"""inspect without compiling, and the pre-compile check."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.abi.test_wasm_binary import big_module
from wasmkit import compat
from wasmkit.abi import wasm_binary
from wasmkit.abi.check import check_filter, precheck
from wasmkit.abi.constants import HIGRESS_MARKER, AbiVersion
from wasmkit.errors import FilterLoadError, WasmFormatError
from wasmkit.host.vm import read_binary
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "build" / "samples").glob("*.wasm"))


FILTER = filter_wat(
    '(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)'
    " (i32.const 0))"
)
HIGRESS = FILTER.replace(AbiVersion.V0_2_1.marker, HIGRESS_MARKER).replace(
    "(module",
    '(module\n  (import "env" "proxy_redis_call" '
    "(func $r (param i32 i32 i32 i32 i32) (result i32)))",
    1,
)


def binary(wat: str) -> bytes:
    return read_binary(wat)[1]


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_sample_passes_the_precheck(path):
    verdict = precheck(path.read_bytes(), str(path))
    assert verdict.ok and verdict.callbacks
    assert verdict.abi_version in (AbiVersion.V0_2_0, AbiVersion.V0_2_1)
    lang = path.name.split(".")[1]
    assert (
        verdict.toolchain
        == {
            "go": "Go",
            "rust": "Rust",
            "assemblyscript": "AssemblyScript",
        }[lang]
    )


def test_precheck_lists_every_problem():
    wat = (
        filter_wat(
            '(func (export "proxy_on_request_headers") (param i32 i32) (result i32)'
            " (i32.const 0))"
            '(func (export "x") (result i32) (call $proxy_log (i32.const 0)'
            " (i32.const 0) (i32.const 0)))",
            allocator=None,
        )
        .replace(AbiVersion.V0_2_1.marker, "nothing")
        .replace("(module", '(module (import "foo" "bar" (func))', 1)
    )
    with pytest.raises(FilterLoadError) as info:
        precheck(binary(wat), "odd.wasm")
    text = str(info.value)
    assert text.startswith("odd.wasm: missing or unknown proxy-wasm ABI version")
    assert "missing malloc" in text
    assert (
        "bad function signature: proxy_on_request_headers is (i32, i32) -> (i32)"
        in text
    )
    assert "the host does not provide 1 import(s)" in text
    assert info.value.missing == ["foo.bar (func)"]
    # Forcing an ABI removes the first problem only.
    with pytest.raises(FilterLoadError) as forced:
        precheck(binary(wat), abi="0.1.0")
    assert "ABI version" not in str(forced.value)
    assert "bad function signature" not in str(forced.value)  # 0.1.0's type


def test_precheck_of_bad_bytes_is_a_format_error():
    with pytest.raises(WasmFormatError, match=r"x\.wasm: invalid wasm module"):
        precheck(b"\0asm\1\0\0\0\xff", "x.wasm")


def test_higress_modules_pass_and_are_named():
    verdict = precheck(binary(HIGRESS))
    assert (
        verdict.vendor == "higress" and verdict.label == "ABI 0.2.1 (Higress 0_2_100)"
    )
    # The same imports under a standard marker: not provided.
    plain = binary(HIGRESS.replace(HIGRESS_MARKER, AbiVersion.V0_2_1.marker))
    with pytest.raises(FilterLoadError, match=r"env\.proxy_redis_call"):
        precheck(plain)
    assert check_filter(wasm_binary.parse(plain), abi="higress").ok


def test_inspect_names_the_higress_profile(tmp_path):
    path = tmp_path / "h.wat"
    path.write_text(HIGRESS)
    record = compat.inspect_filter(str(path))
    assert record["abi_version"] == "0.2.1" and record["vendor"] == "higress"
    assert record["abi"] == "ABI 0.2.1 (Higress 0_2_100)"
    assert record["loads"]["wasmkit"] and not record["loads"]["envoy"]
    (redis,) = [i for i in record["imports"] if i["name"] == "proxy_redis_call"]
    assert (redis["wasmkit"], redis["envoy"]) == (True, False)
    assert "Higress only" in redis["note"]
    record["filter"] = str(path)
    assert "ABI        0.2.1 (Higress 0_2_100)" in compat.render(record)


@pytest.mark.parametrize("path", SAMPLES[:3], ids=[p.name for p in SAMPLES[:3]])
def test_inspect_shows_producers_and_custom_sections(path):
    record = compat.inspect_filter(str(path))
    record["filter"] = str(path)
    text = compat.render(record)
    assert record["memories"] and "memory     " in text
    if ".go." in path.name:
        assert record["toolchain"] == "Go"
        assert record["producers"]["language"][0][0] == "Go"
        assert {c["name"] for c in record["custom_sections"]} >= {"producers", "name"}
        assert "built by   Go (Go go1." in text and "custom     " in text
    if ".assemblyscript." in path.name:
        assert record["toolchain"] == "AssemblyScript" and record["producers"] is None


@pytest.fixture(scope="module")
def big_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.wasm"
    path.write_bytes(big_module(25 * 1024 * 1024))
    return path


def test_inspect_of_a_25_mb_module_takes_well_under_a_second(big_path):
    started = time.perf_counter()
    record = compat.inspect_filter(str(big_path))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed
    assert record["size"] >= 25 * 1024 * 1024
    assert record["loads"]["wasmkit"] and record["problems"] == []
    started = time.perf_counter()
    precheck(big_path.read_bytes())
    assert time.perf_counter() - started < 0.5


def test_the_inspect_command_on_25_mb_does_not_compile(big_path):
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", "inspect", str(big_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    # Interpreter start and imports included; a compile takes many seconds.
    assert elapsed < 3, elapsed
    assert '"abi_version": "0.2.1"' in proc.stdout


def test_the_compile_gate_refuses_before_wasmtime_compiles(monkeypatch):
    from wasmkit.abi.check import compile_gate
    from wasmkit.host.vm import compile_module

    monkeypatch.setenv("WASMKIT_MODULE_CACHE", "off")
    seen = []
    gate = compile_gate(abi=None)

    def spy(data: bytes, name: str) -> None:
        seen.append(name)
        gate(data, name)

    unique = f'(module (func (export "f{time.time_ns()}")))'
    with pytest.raises(FilterLoadError, match="missing or unknown proxy-wasm ABI"):
        compile_module(unique, check=spy)
    assert seen == ["<wat>"]
    module = compile_module(HIGRESS, check=compile_gate(abi="higress"))
    assert "proxy_on_request_headers" in module.exports
    with pytest.raises(ValueError, match="unknown ABI"):
        compile_gate(abi="9.9")
