"""The build cache store (no compiler)."""

from __future__ import annotations

import json

from wasmkit.build.cache import BuildCache, make_key


def test_key_depends_on_every_part():
    parts = {
        "lang": "go",
        "source": "ab",
        "options": {"optimize": True},
        "toolchain": {"go": "go1.24"},
    }
    key = make_key(parts)
    assert key == make_key(dict(reversed(parts.items())))
    for name, other in [
        ("lang", "rust"),
        ("source", "cd"),
        ("options", {"optimize": False}),
        ("toolchain", {"go": "go1.25"}),
    ]:
        assert make_key({**parts, name: other}) != key


def test_put_then_get(tmp_path):
    cache = BuildCache(tmp_path / "c")
    wasm = cache.scratch() / "x.wasm"
    wasm.write_bytes(b"\0asm\1\0\0\0")
    entry = cache.put("ab" * 32, wasm, {"file": "f.go.wasm", "lang": "go"})
    assert not wasm.exists()  # moved in
    assert entry.path == cache.folder("ab" * 32) / "f.go.wasm"
    again = cache.get("ab" * 32)
    assert again is not None
    assert again.path.read_bytes() == b"\0asm\1\0\0\0"
    assert again.meta["lang"] == "go" and again.meta["size"] == 8
    assert cache.get("cd" * 32) is None


def test_incomplete_or_damaged_entries_are_misses(tmp_path):
    cache = BuildCache(tmp_path)
    wasm = cache.scratch() / "x.wasm"
    wasm.write_bytes(b"\0asm\1\0\0\0")
    entry = cache.put("ef" * 32, wasm, {"file": "f.wasm"})
    entry.path.write_bytes(b"\0asm")  # truncated
    assert cache.get("ef" * 32) is None
    meta = cache.folder("ef" * 32) / "meta.json"
    meta.write_text("{not json")
    assert cache.get("ef" * 32) is None
    meta.write_text(json.dumps({"size": 4}))
    assert cache.get("ef" * 32) is None
