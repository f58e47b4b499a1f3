"""The Rust adapter: cargo's JSON messages, warnings, missing toolchain."""

from __future__ import annotations

import pytest

from wasmkit.build import build, rust
from wasmkit.build.project import resolve
from wasmkit.build.toolchain import TEXT_NAME, Diagnostic
from wasmkit.errors import BuildError, ToolchainNotFoundError


def test_primary_span_locates_a_message():
    message = {
        "message": "cannot find value `z` in this scope",
        "level": "error",
        "spans": [
            {
                "file_name": "src/other.rs",
                "line_start": 1,
                "column_start": 1,
                "is_primary": False,
            },
            {
                "file_name": "src/lib.rs",
                "line_start": 16,
                "column_start": 19,
                "is_primary": True,
            },
        ],
    }
    assert rust._diagnostic(message) == Diagnostic(
        "src/lib.rs", 16, 19, "cannot find value `z` in this scope"
    )
    assert rust._diagnostic({"message": "aborting", "spans": []}) is None


def test_missing_rustc_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "debian")
    monkeypatch.setattr(rust, "RUSTC", tmp_path / "rustc")
    with pytest.raises(ToolchainNotFoundError) as info:
        build(rust.TINY_FILTER, "rust")
    text = str(info.value)
    assert str(tmp_path / "rustc") in text
    assert "apt-get install -y rustc cargo libstd-rust-dev-wasm32 lld" in text
    assert "scripts/setup-rust.sh" in text
    assert "scripts/setup-rust-modern.sh" in text


def test_newer_lockfiles_are_refused(tmp_path):
    (tmp_path / "Cargo.lock").write_text("version = 4\n")
    with pytest.raises(BuildError, match="version 4 lockfile, which Debian's cargo"):
        rust.Rust()._missing_crates(tmp_path)


@pytest.mark.toolchain("cargo")
def test_warnings_are_located_in_the_text_and_kept_on_a_hit():
    text = rust.TINY_FILTER + "\nfn helper() {\n    let unused = 1;\n}\n"
    line = text.splitlines().index("    let unused = 1;") + 1
    first = build(text, force=True)
    second = build(text)
    assert second.cache_hit
    for artifact in (first, second):
        assert (TEXT_NAME, line, 9, "unused variable: `unused`") in artifact.warnings
    assert "unused variable" in second.log


@pytest.mark.toolchain("cargo")
def test_vendored_crates_cover_the_template(monkeypatch):
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "debian")
    generated = resolve(rust.TINY_FILTER)
    generated.materialize()
    assert rust.Rust()._missing_crates(generated.root) == []
