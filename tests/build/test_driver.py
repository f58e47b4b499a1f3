"""build(): every language from a folder and from text, the cache, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import wasmkit
from wasmkit.build import Artifact, assemblyscript, build, go, rust
from wasmkit.build.toolchain import TEXT_NAME
from wasmkit.errors import CompileError

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "filters" / "add_headers"
CONFIG = json.dumps(
    {"request": {"x-added": "req"}, "response": {"x-powered-by": "wasmkit"}}
)

TINY = {
    "assemblyscript": assemblyscript.TINY_FILTER,
    "rust": rust.TINY_FILTER,
    "go": go.TINY_FILTER,
}
TINY_ROOT_ID = {"assemblyscript": "tiny", "rust": "", "go": ""}
# A line that does not compile, appended to the tiny filter, and where the
# compiler points: (column, words of the message).
BROKEN = {
    "assemblyscript": ("let q: i32 = z;", 14, "Cannot find name 'z'"),
    "rust": ("fn bad() -> u32 { z }", 19, "cannot find value `z`"),
    "go": ("func bad() int { return z }", 25, "undefined: z"),
}


def test_sample_folder_builds_and_runs(lang):
    artifact = build(SAMPLE / lang)
    assert isinstance(artifact, Artifact)
    assert artifact.lang == lang
    assert artifact.wasm.startswith(b"\0asm")
    assert artifact.path.read_bytes() == artifact.wasm
    assert artifact.path.name == f"add_headers.{lang}.wasm"
    assert artifact.source == (SAMPLE / lang).resolve()
    assert len(artifact.source_digest) == 64 and len(artifact.key) == 64
    assert artifact.toolchain and all(artifact.toolchain.values())
    plugin = wasmkit.load(artifact, root_id="add_headers", config=CONFIG)  # path-like
    result = plugin.run_http(wasmkit.request(), wasmkit.response())
    assert result.error is None and result.request_after is not None
    assert (b"x-added", b"req") in result.request_after.headers


def test_unchanged_rebuild_is_a_cache_hit_and_force_rebuilds(lang):
    first = build(SAMPLE / lang)
    second = build(SAMPLE / lang)
    assert second.cache_hit
    assert second.key == first.key and second.wasm == first.wasm
    assert second.path == first.path
    assert second.compile_ms == first.compile_ms  # recorded by the compile
    forced = build(SAMPLE / lang, force=True)
    assert not forced.cache_hit
    assert forced.key == first.key
    assert forced.wasm == first.wasm  # reproducible
    assert build(SAMPLE / lang).cache_hit


def test_source_text_builds_and_runs(lang):
    text = TINY[lang] + "\n// built from a notebook cell\n"
    artifact = build(text, lang, root_id="cell")
    assert not artifact.cache_hit
    assert artifact.root_id == "cell"
    assert artifact.path.name == f"cell.{lang}.wasm"
    assert artifact.source.is_relative_to(Path(os.environ["WASMKIT_BUILD_CACHE"]))
    # The language is also told from the text itself; same key, so a hit.
    again = build(text, root_id="cell")
    assert again.cache_hit and again.lang == lang
    plugin = wasmkit.load(artifact, root_id=TINY_ROOT_ID[lang], config="{}")
    result = plugin.run_http(wasmkit.request(), wasmkit.response())
    assert result.error is None


def test_compile_error_points_at_the_line_of_the_text(lang):
    broken, column, words = BROKEN[lang]
    text = TINY[lang] + "\n" + broken + "\n"
    line = text.splitlines().index(broken) + 1
    with pytest.raises(CompileError) as info:
        build(text, lang)
    exc = info.value
    assert exc.returncode != 0
    assert exc.command and Path(exc.command[0]).name in ("node", "cargo", "go")
    assert words in exc.stderr
    file, row, col, message = exc.diagnostics[0]
    assert (file, row, col) == (TEXT_NAME, line, column)
    assert words in message
    assert f"{TEXT_NAME}:{line}:{column}: " in str(exc)


@pytest.mark.toolchain("go")
def test_artifact_saves_and_summarizes(tmp_path):
    artifact = build(SAMPLE / "go")
    out = artifact.save(tmp_path / "out" / "f.wasm")
    assert out.read_bytes() == artifact.wasm
    assert os.fspath(artifact) == str(artifact.path)
    record = artifact.to_json()
    assert set(record) >= {
        "path",
        "size",
        "lang",
        "toolchain",
        "build_ms",
        "cache_hit",
        "source_digest",
    }
    assert json.loads(json.dumps(record)) == record
    assert (
        "go" in artifact.summary() and "<b>wasmkit build</b>" in artifact._repr_html_()
    )
