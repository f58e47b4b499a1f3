"""The compiled-module cache: shared by processes, keyed, atomic, never trusted blindly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wasmkit.errors import FilterLoadError, ModuleCacheWarning
from wasmkit.host import load, module_cache, request, response
from wasmkit.host.vm import compile_module, forget_compiled
from wasmkit.testing import filter_wat

ADDING = """
(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_add_header_map_value (i32.const 0)
         (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
  (i32.const 0))
"""
ADD = filter_wat(ADDING, strings={"k": "x-cached", "v": "yes"})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "modules"
    monkeypatch.setenv("WASMKIT_MODULE_CACHE", str(folder))
    forget_compiled()
    yield folder
    forget_compiled()


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.cwasm"))


def _works(module) -> None:
    plugin = load(module)
    result = plugin.run_http(request(), response())
    assert result.request_after is not None
    assert result.request_after.headers[-1] == (b"x-cached", b"yes")


def test_first_load_compiles_and_stores_then_disk_then_memory(cache):
    first = compile_module(ADD)
    assert first.origin == "compiled"
    assert len(_entries(cache)) == 1
    again = compile_module(ADD)
    assert again.origin == "memory"
    forget_compiled()
    third = compile_module(ADD)
    assert third.origin == "disk"
    assert list(third.exports) == list(first.exports)
    assert third.imports == first.imports
    _works(third)


def test_entry_is_keyed_by_engine_settings(cache):
    compile_module(ADD)
    compile_module(ADD, fuel=True)
    assert len(_entries(cache)) == 2


def test_another_process_reads_the_entry(cache, tmp_path):
    wasm = tmp_path / "add.wat"
    wasm.write_text(ADD)
    compile_module(wasm)
    script = (
        "import json, sys\n"
        "from wasmkit.host.vm import compile_module\n"
        "m = compile_module(sys.argv[1])\n"
        "print(json.dumps([m.origin, m.load_ms]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(wasm)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "WASMKIT_MODULE_CACHE": str(cache)},
    )
    origin, _ms = json.loads(out.stdout)
    assert origin == "disk"


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]),  # one bit of code flipped
        lambda data: b"not a cache entry" + data[17:],  # foreign header
        lambda data: b"",
    ],
    ids=["truncated", "flipped", "header", "empty"],
)
def test_damaged_entry_is_recompiled_with_a_warning(cache, damage):
    compile_module(ADD)
    (entry,) = _entries(cache)
    entry.write_bytes(damage(entry.read_bytes()))
    forget_compiled()
    with pytest.warns(ModuleCacheWarning, match="damaged"):
        module = compile_module(ADD)
    assert module.origin == "compiled"
    _works(module)
    # Replaced by a good entry.
    forget_compiled()
    assert compile_module(ADD).origin == "disk"


def test_entry_of_another_engine_is_refused_by_wasmtime_and_recompiled(cache):
    plain = compile_module(ADD)
    fueled = compile_module(ADD, fuel=True)
    assert fueled.origin == "compiled"
    by_name = {p.name: p for p in _entries(cache)}
    assert len(by_name) == 2
    # Put the fuel-metered code where the plain engine looks for its own.
    plain_key = _key_of(plain, fuel=False)
    fuel_key = _key_of(fueled, fuel=True)
    (cache / f"{plain_key}.cwasm").write_bytes(
        (cache / f"{fuel_key}.cwasm").read_bytes()
    )
    forget_compiled()
    with pytest.warns(ModuleCacheWarning, match="another engine"):
        module = compile_module(ADD)
    assert module.origin == "compiled"
    _works(module)


def _key_of(module, *, fuel: bool) -> str:
    import wasmtime

    from wasmkit.host import vm

    settings = {
        "wasmtime": vm.WASMTIME_VERSION,
        "wasmtime_py": getattr(wasmtime, "__version__", ""),
        "fuel": fuel,
        **vm.ENGINE_SETTINGS,
    }
    return module_cache.key(module.sha256, settings)


def test_cache_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WASMKIT_MODULE_CACHE", "off")
    monkeypatch.setenv("WASMKIT_CACHE", str(tmp_path))
    forget_compiled()
    assert compile_module(ADD).origin == "compiled"
    assert not list(tmp_path.rglob("*.cwasm"))
    forget_compiled()


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("WASMKIT_MODULE_CACHE", str(blocker / "modules"))
    forget_compiled()
    _works(compile_module(ADD))
    forget_compiled()


def test_check_runs_before_a_compile_only(cache):
    seen: list[str] = []

    def check(binary: bytes, name: str) -> None:
        assert binary.startswith(b"\0asm")
        seen.append(name)

    compile_module(ADD, check=check)
    assert seen == ["<wat>"]
    forget_compiled()
    compile_module(ADD, check=check)  # from disk: checked when compiled
    assert seen == ["<wat>"]

    def refuse(binary: bytes, name: str) -> None:
        raise FilterLoadError(f"{name}: refused before compiling")

    with pytest.raises(FilterLoadError, match="refused before compiling"):
        compile_module(
            filter_wat(ADDING, strings={"k": "x-other", "v": "no"}), check=refuse
        )


def test_prune_drops_least_recently_used(tmp_path):
    for i, size in enumerate((100, 200, 300)):
        path = tmp_path / f"{i}.cwasm"
        path.write_bytes(b"x" * size)
        os.utime(path, (1000 + i, 1000 + i))
    module_cache.prune(tmp_path, max_bytes=350)
    assert sorted(p.name for p in tmp_path.glob("*.cwasm")) == ["2.cwasm"]


def test_entries_are_written_atomically(cache):
    compile_module(ADD)
    assert not [p for p in cache.iterdir() if p.suffix != ".cwasm"]
    (entry,) = _entries(cache)
    assert entry.read_bytes().startswith(module_cache.MAGIC)


def test_a_compile_past_its_limit_fails_clearly_and_is_cached_later(cache):
    # A module of many large functions: seconds of compile for wasmtime.
    step = "(local.set 0 (i32.add (local.get 0) (i32.const 1)))"
    body = "".join(
        f"(func (param i32) (result i32) {step * 2000} (local.get 0))"
        for _ in range(200)
    )
    wat = filter_wat(body)
    from wasmkit.host import FilterVm, Limits

    started = time.monotonic()
    with pytest.raises(FilterLoadError, match=r"Limits\.compile_timeout_ms"):
        FilterVm(wat, limits=Limits(compile_timeout_ms=1))
    assert time.monotonic() - started < 5
    # The compile went on in the background; its code lands in the cache.
    deadline = time.monotonic() + 120
    while not _entries(cache) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _entries(cache)
    forget_compiled()
    assert FilterVm(wat).module.origin == "disk"
