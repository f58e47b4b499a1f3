"""The post-build check: a compile that writes a non-filter fails, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmkit import build
from wasmkit.build.check import TINYGO_HINT, check_module, uses_tinygo_sdk
from wasmkit.errors import BuildError
from wasmkit.host.vm import read_binary
from wasmkit.testing import filter_wat

DATA = Path(__file__).resolve().parents[1] / "data"


def wasm(wat: str) -> bytes:
    return read_binary(wat)[1]


FILTER = filter_wat(
    '(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)'
    " (i32.const 0))"
)


def test_a_filter_passes(tmp_path):
    check_module(wasm(FILTER), lang="rust", name="f", root=tmp_path)


@pytest.mark.parametrize(
    ("wat", "cause"),
    [
        ('(module (func (export "_start")))', "no proxy_abi_version_* marker"),
        (
            FILTER.replace('(export "malloc")', ""),
            "no allocator (malloc or proxy_on_memory_allocate)",
        ),
        (filter_wat(""), "no proxy_on_* callback"),
    ],
)
def test_each_missing_piece_is_named(tmp_path, wat, cause):
    with pytest.raises(BuildError, match="is not a proxy-wasm filter") as info:
        check_module(wasm(wat), lang="rust", name="f", root=tmp_path)
    assert cause in str(info.value)
    assert "proxy_wasm::main!" in str(info.value)  # the Rust hint


def test_a_malformed_module_is_a_build_error(tmp_path):
    with pytest.raises(BuildError, match="bad module"):
        check_module(b"\0asm\1\0\0\0\1", lang="go", name="f", root=tmp_path)


def test_the_tinygo_only_sdk_is_recognised(tmp_path):
    non_filter = wasm(
        '(module (memory (export "memory") 1) (func (export "_initialize")))'
    )
    (tmp_path / "go.mod").write_text("module m\n\ngo 1.24\n")
    with pytest.raises(BuildError) as plain:
        check_module(non_filter, lang="go", name="m", root=tmp_path)
    assert TINYGO_HINT not in str(plain.value)
    assert "github.com/proxy-wasm/proxy-wasm-go-sdk" in str(plain.value)
    # An //export comment in the project's code...
    (tmp_path / "main.go").write_text("package main\n\n//export proxy_on_tick\n")
    assert uses_tinygo_sdk(tmp_path)
    # ... or go.mod requiring the tetratelabs SDK.
    (tmp_path / "main.go").write_text("package main\n")
    assert not uses_tinygo_sdk(tmp_path)
    (tmp_path / "go.mod").write_text(
        "module m\n\ngo 1.24\n\nrequire github.com/tetratelabs/proxy-wasm-go-sdk v0.24.0\n"
    )
    assert uses_tinygo_sdk(tmp_path)
    with pytest.raises(BuildError, match=TINYGO_HINT):
        check_module(non_filter, lang="go", name="m", root=tmp_path)


@pytest.mark.toolchain("go")
def test_go_against_the_tinygo_only_sdk_fails_at_build_time():
    # tetratelabs/proxy-wasm-go-sdk v0.24.0, through the Go module proxy once.
    with pytest.raises(BuildError) as info:
        build(DATA / "go_tinygo_sdk", "go")
    text = str(info.value)
    assert "is not a proxy-wasm filter" in text
    assert TINYGO_HINT in text
    assert "github.com/tetratelabs/proxy-wasm-go-sdk" in text


@pytest.mark.toolchain("go")
def test_a_go_program_without_an_sdk_fails_at_build_time():
    with pytest.raises(BuildError) as info:
        build(DATA / "go_not_a_filter", "go")
    text = str(info.value)
    assert "not_a_filter (go) built, but the module is not a proxy-wasm filter" in text
    assert "no proxy_abi_version_* marker" in text and "no proxy_on_* callback" in text
    assert "does the main package import a proxy-wasm SDK" in text
    assert TINYGO_HINT not in text
