"""The Go and TinyGo adapters: go's diagnostics, versions, missing tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wasmkit.build import build, go
from wasmkit.build.toolchain import Diagnostic, Options
from wasmkit.errors import CompileError, ToolchainNotFoundError

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "filters" / "add_headers"

GO_OUTPUT = """\
# wasmkit/filters/filter
./main.go:12:2: declared and not used: x
./main.go:12:7: undefined: undefinedThing
sub/util.go:3: syntax error: unexpected newline
"""


def test_go_diagnostics_are_parsed():
    assert go._diagnostics(GO_OUTPUT) == [
        Diagnostic("main.go", 12, 2, "declared and not used: x"),
        Diagnostic("main.go", 12, 7, "undefined: undefinedThing"),
        Diagnostic("sub/util.go", 3, 0, "syntax error: unexpected newline"),
    ]


def test_missing_go_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainNotFoundError) as info:
        build(SAMPLE / "go")
    text = str(info.value)
    assert "the 'go' command is not on PATH" in text
    assert "Go >= 1.24" in text and "https://go.dev/dl/" in text
    assert "scripts/setup-go.sh" in text


def test_old_go_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho go1.21.6\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        ToolchainNotFoundError, match=r"is go1\.21\.6, but .* Go >= 1\.24"
    ):
        go.Go().versions()


def test_tinygo_when_absent_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        ToolchainNotFoundError, match=r"'tinygo' command is not on PATH.*TinyGo"
    ):
        build(SAMPLE / "go", "tinygo")


def test_tinygo_command(tmp_path, monkeypatch):
    fake = tmp_path / "tinygo"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    command = go.TinyGo()._command(Path("/o.wasm"), Options())
    assert command[1:] == [
        "build",
        "-o",
        "/o.wasm",
        "-scheduler=none",
        "-target=wasip1",
        "-buildmode=c-shared",
        "-opt=2",
        ".",
    ]


@pytest.mark.toolchain("go")
def test_error_in_a_module_names_the_users_file(tmp_path):
    module = tmp_path / "m"
    shutil.copytree(SAMPLE / "go", module)
    main = module / "main.go"
    lines = main.read_text().splitlines()
    at = lines.index("func main() {}")
    lines[at] = "func main() { undefinedThing() }"
    main.write_text("\n".join(lines) + "\n")
    with pytest.raises(CompileError) as info:
        build(module)
    assert info.value.diagnostics == [
        (str(main), at + 1, 15, "undefined: undefinedThing")
    ]
    assert info.value.returncode == 1
    assert "./main.go" in info.value.stderr


@pytest.mark.toolchain("go")
def test_lone_file_errors_name_the_file(tmp_path):
    source = tmp_path / "cell.go"
    source.write_text(go.TINY_FILTER.replace("func main() {}", "func main() { x }"))
    with pytest.raises(CompileError) as info:
        build(source)
    (diag,) = info.value.diagnostics
    assert diag[0] == str(source)
    assert diag[1] == go.TINY_FILTER.splitlines().index("func main() {}") + 1


@pytest.mark.toolchain("go")
def test_editing_a_file_misses_and_reverting_hits(tmp_path):
    module = tmp_path / "m"
    shutil.copytree(SAMPLE / "go", module)
    first = build(module)
    main = module / "main.go"
    original = main.read_text()
    main.write_text(original + "\n// edited\n")
    edited = build(module)
    assert not edited.cache_hit and edited.source_digest != first.source_digest
    main.write_text(original)
    again = build(module)
    assert again.cache_hit and again.key == first.key


@pytest.mark.toolchain("go")
def test_options_are_part_of_the_key():
    plain = build(go.TINY_FILTER)
    stripped = build(go.TINY_FILTER, extra_args=["-ldflags=-s -w"])
    assert stripped.key != plain.key
    assert stripped.size < plain.size
