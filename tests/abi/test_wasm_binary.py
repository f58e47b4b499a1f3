"""The wasm binary reader: agrees with wasmtime, bounded, strict, fast."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmkit.abi import wasm_binary
from wasmkit.abi.signatures import Signature
from wasmkit.errors import FilterLoadError, WasmFormatError
from wasmkit.host.vm import read_binary
from wasmkit.testing import filter_wat

ENGINE = wasmtime.Engine()
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "build" / "samples").glob("*.wasm"))

WATS = {
    "filter": filter_wat(
        '(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)'
        " (call $proxy_log (i32.const 2) (i32.const 0) (i32.const 0)))"
    ),
    "kinds": """(module
      (type $t (func (param i64 f32 f64) (result i32 i64)))
      (import "env" "f" (func (type $t)))
      (import "env" "g" (global $g (mut i32)))
      (import "env" "t" (table 2 10 funcref))
      (import "env" "m" (memory 1 16))
      (global $h i64 (i64.const 7))
      (global (export "gm") (mut i32) (i32.const 1))
      (table $tt (export "tab") 3 externref)
      (func $s)
      (start $s)
      (func (export "two") (param i32) (result f64) (f64.const 1))
      (export "imported" (func 0))
      (export "mem" (memory 0))
      (export "g" (global $g))
      (data (i32.const 0) "hello")
      (elem (i32.const 0) func $s))""",
    "empty": "(module)",
    "memory64": '(module (memory (export "m") i64 1 2))',
    "shared": '(module (memory (export "m") 1 4 shared))',
}


def binary(wat: str) -> bytes:
    return read_binary(wat)[1]


def _sig(ty: object) -> Signature | None:
    if not isinstance(ty, wasmtime.FuncType):
        return None
    return Signature(tuple(map(str, ty.params)), tuple(map(str, ty.results)))


def _kind(ty: object) -> str:
    for cls, kind in (
        (wasmtime.FuncType, "func"),
        (wasmtime.MemoryType, "memory"),
        (wasmtime.TableType, "table"),
    ):
        if isinstance(ty, cls):
            return kind
    return "global"


def wasmtime_view(
    data: bytes,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    # wasmtime's own reading of the module (a compile), as the host sees it.
    module = wasmtime.Module(ENGINE, data)
    imports = [(i.module, i.name, _kind(i.type), _sig(i.type)) for i in module.imports]
    exports = [(e.name, _kind(e.type), _sig(e.type)) for e in module.exports]
    return imports, exports


def our_view(
    info: wasm_binary.ModuleInfo,
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    imports = [(i.module, i.name, i.kind, i.signature) for i in info.imports]
    exports = [(e.name, e.kind, e.signature) for e in info.exports.values()]
    return imports, exports


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_samples_read_as_wasmtime_reads_them(path):
    data = path.read_bytes()
    info = wasm_binary.parse(data)
    assert our_view(info) == wasmtime_view(data)
    assert info.size == len(data) and info.memories
    if ".go." in path.name or ".rust." in path.name:
        assert info.producers is not None and info.producers.language
        assert info.custom("producers") is not None


def test_samples_exist():
    # The samples are built by `make samples` before the tests run.
    assert len(SAMPLES) >= 9


@pytest.mark.parametrize("name", sorted(WATS))
def test_wat_modules_read_as_wasmtime_reads_them(name):
    data = binary(WATS[name])
    assert our_view(wasm_binary.parse(data)) == wasmtime_view(data)


def test_every_section_kind_is_read():
    info = wasm_binary.parse(binary(WATS["kinds"]))
    i64 = Signature(("i64", "f32", "f64"), ("i32", "i64"))
    assert info.types[0] == i64
    assert [(i.kind, i.limits) for i in info.imports] == [
        ("func", None),
        ("global", None),
        ("table", wasm_binary.Limits(2, 10)),
        ("memory", wasm_binary.Limits(1, 16)),
    ]
    assert info.tables == (wasm_binary.Table("externref", wasm_binary.Limits(3, None)),)
    assert info.globals == 2 and info.start == 1  # $s, after one imported function
    assert info.has_start_section
    assert info.exports["imported"].signature == i64
    assert info.exports["two"].index == 2
    assert [s.name for s in info.sections if s.id] == [
        "type",
        "import",
        "function",
        "table",
        "global",
        "export",
        "start",
        "element",
        "code",
        "data",
    ]
    assert info.func_exports() == {"two", "imported"}
    assert wasm_binary.parse(binary(WATS["memory64"])).memories == (
        wasm_binary.Limits(1, 2, is64=True),
    )
    assert wasm_binary.parse(binary(WATS["shared"])).memories[0].shared


def _custom(name: bytes, payload: bytes) -> bytes:
    body = bytes([len(name)]) + name + payload
    return bytes([0]) + _leb(len(body)) + body


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str) -> bytes:
    raw = text.encode()
    return _leb(len(raw)) + raw


def test_producers_are_decoded_and_a_broken_one_ignored():
    payload = (
        _leb(2)
        + _str("language")
        + _leb(1)
        + _str("Go")
        + _str("go1.26.8")
        + _str("processed-by")
        + _leb(1)
        + _str("TinyGo")
        + _str("0.37.0")
    )
    module = binary(WATS["empty"]) + _custom(b"producers", payload)
    info = wasm_binary.parse(module)
    assert info.producers == wasm_binary.Producers(
        (("Go", "go1.26.8"),), (("TinyGo", "0.37.0"),)
    )
    assert info.customs == (
        wasm_binary.CustomSection(
            "producers", len(payload), len(module) - len(payload)
        ),
    )
    broken = binary(WATS["empty"]) + _custom(b"producers", b"\x05zz")
    info = wasm_binary.parse(broken)
    assert info.producers is None and info.custom("producers") is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no \\\\0asm header"),
        (b"(module)", "no \\\\0asm header"),
        (b"\0asm\1\0", "truncated header"),
        (b"\0asm\x0d\0\1\0", "a component"),
        (b"\0asm\1\0\0\0\xff", "unexpected end"),
        (b"\0asm\1\0\0\0\x01\x05\x00", "runs past the end"),
        (b"\0asm\1\0\0\0\x0e\x00", "unknown section id 14"),
        (b"\0asm\1\0\0\0\x01\x01\x00\x01\x01\x00", "out of order"),
        (b"\0asm\1\0\0\0\x01\x02\x00\x00", "1 bytes left in the type section"),
        (b"\0asm\1\0\0\0\x01\x06\x80\x80\x80\x80\x80\x01", "longer than 32 bits"),
        (b"\0asm\1\0\0\0\x01\x05\xff\xff\xff\xff\x7f", "too large"),
        (b"\0asm\1\0\0\0\x01\x02\x10\x00", "too many"),
        (b"\0asm\1\0\0\0\x01\x04\x01\x60\x01\x55", "unknown value type 0x55"),
        (b"\0asm\1\0\0\0\x03\x02\x01\x00", "out of range"),
        (b"\0asm\1\0\0\0\x00\x03\x02\xff\xfe", "not UTF-8"),
        (b"\0asm\1\0\0\0\x05\x04\x01\x01\x02\x01", "maximum below minimum"),
        (b"\0asm\1\0\0\0\x07\x05\x01\x01a\x00\x00", "index 0 out of range"),
        (b"\0asm\1\0\0\0\x08\x01\x00", "start function 0 out of range"),
    ],
)
def test_malformed_input_raises_the_declared_error(data, message):
    with pytest.raises(WasmFormatError, match=message) as info:
        wasm_binary.parse(data)
    assert isinstance(info.value, FilterLoadError)
    assert 0 <= info.value.offset <= len(data)


def test_a_duplicate_export_and_missing_code_are_malformed():
    base = binary(filter_wat(""))
    info = wasm_binary.parse(base)
    assert "malloc" in info.exports
    one = binary('(module (func $f) (export "a" (func $f)))')
    export = next(s for s in wasm_binary.parse(one).sections if s.name == "export")
    entry = one[export.offset + 1 : export.offset + export.size]
    body = _leb(2) + entry + entry
    doubled = (
        one[: export.offset - 2]
        + bytes([7])
        + _leb(len(body))
        + body
        + one[export.offset + export.size :]
    )
    with pytest.raises(WasmFormatError, match="duplicate export 'a'"):
        wasm_binary.parse(doubled)
    no_code = b"\0asm\1\0\0\0\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00"
    with pytest.raises(WasmFormatError, match="no code section"):
        wasm_binary.parse(no_code)


SEED = binary(WATS["kinds"]) + _custom(b"producers", _leb(0))
SEED_FILTER = binary(WATS["filter"])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_declared_error(data):
    for candidate in (data, b"\0asm\1\0\0\0" + data):
        with contextlib.suppress(WasmFormatError):
            wasm_binary.parse(candidate)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([SEED, SEED_FILTER])))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(8, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) > 9:
            del data[at : at + draw(st.integers(1, 8))]
        if len(data) <= 9:
            break
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_modules_raise_only_the_declared_error_and_agree_with_wasmtime(data):
    try:
        info = wasm_binary.parse(data)
    except WasmFormatError:
        return
    try:
        module = wasmtime.Module(ENGINE, data)
    except wasmtime.WasmtimeError:
        return  # we read structure, not code: wasmtime may still refuse it
    assert [(i.module, i.name) for i in module.imports] == [
        (i.module, i.name) for i in info.imports
    ]
    assert [e.name for e in module.exports] == list(info.exports)


def test_mutations_wasmtime_accepts_are_accepted():
    # The reader must not refuse what the engine loads: every single-byte
    # change of the filter module's export names that still validates parses.
    data = bytearray(SEED_FILTER)
    export = next(
        s for s in wasm_binary.parse(bytes(data)).sections if s.name == "export"
    )
    for at in range(export.offset, export.offset + export.size):
        for value in (0x41, 0x00):
            changed = bytearray(data)
            changed[at] = value
            try:
                wasmtime.Module.validate(ENGINE, bytes(changed))
            except wasmtime.WasmtimeError:
                continue
            wasm_binary.parse(bytes(changed))


def big_module(size: int) -> bytes:
    """A filter of ``size`` bytes: 25 MB of code and data, as a WAF would be."""
    types = [
        (b"", b""),  # 0: () -> ()
        (b"\x7f", b"\x7f"),  # 1: (i32) -> i32
        (b"\x7f\x7f\x7f", b"\x7f"),  # 2: (i32, i32, i32) -> i32
    ]
    type_sec = _leb(len(types)) + b"".join(
        b"\x60" + _leb(len(p)) + p + _leb(len(r)) + r for p, r in types
    )
    import_sec = _leb(1) + _str("env") + _str("proxy_log") + b"\x00" + _leb(2)
    n_funcs = 20_000
    body_size = size // 2 // n_funcs
    # Every function: no locals, nops, end.
    body = b"\x00" + b"\x01" * (body_size - 2) + b"\x0b"
    funcs = [0] * n_funcs + [1, 2]
    func_sec = _leb(len(funcs)) + b"".join(_leb(t) for t in funcs)
    memory_sec = _leb(1) + b"\x00" + _leb(size // 65536 + 1)
    exports = [
        ("memory", 2, 0),
        ("proxy_abi_version_0_2_1", 0, 1),
        ("_initialize", 0, 2),
        ("malloc", 0, 1 + n_funcs),
        ("proxy_on_request_headers", 0, 2 + n_funcs),
    ]
    export_sec = _leb(len(exports)) + b"".join(
        _str(n) + bytes([k]) + _leb(i) for n, k, i in exports
    )
    bodies = [body] * n_funcs + [b"\x00\x41\x00\x0b", b"\x00\x41\x00\x0b"]
    code_sec = _leb(len(bodies)) + b"".join(_leb(len(b)) + b for b in bodies)
    blob = b"\x2a" * (size - len(code_sec) - 200)
    data_sec = _leb(1) + b"\x00\x41\x00\x0b" + _leb(len(blob)) + blob

    def section(sid: int, payload: bytes) -> bytes:
        return bytes([sid]) + _leb(len(payload)) + payload

    return (
        b"\0asm\1\0\0\0"
        + section(1, type_sec)
        + section(2, import_sec)
        + section(3, func_sec)
        + section(5, memory_sec)
        + section(7, export_sec)
        + section(10, code_sec)
        + section(11, data_sec)
    )


@pytest.fixture(scope="module")
def big() -> bytes:
    data = big_module(25 * 1024 * 1024)
    wasmtime.Module.validate(wasmtime.Engine(), data)  # a real module
    return data


def test_a_25_mb_module_is_read_in_milliseconds(big):
    assert len(big) >= 25 * 1024 * 1024
    started = time.perf_counter()
    info = wasm_binary.parse(big)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.25, elapsed
    assert len(info.functions) == 20_002
    assert info.exports["proxy_on_request_headers"].signature == Signature(
        ("i32", "i32", "i32"), ("i32",)
    )
    assert [s.name for s in info.sections][-2:] == ["code", "data"]


def test_gc_types_and_typed_tables_read_as_wasmtime_reads_them():
    wat = """(module
      (rec (type $node (sub (struct (field i32) (field (mut (ref null $node)))))))
      (type $arr (array (mut i8)))
      (type $f (func (param (ref null $node)) (result i32)))
      (table $t 2 (ref $f) (ref.func $g))
      (global (export "n") (ref null $node) (ref.null $node))
      (func $g (type $f) (i32.const 1))
      (export "g" (func $g))
      (export "t" (table $t)))"""
    data = binary(wat)
    info = wasm_binary.parse(data)
    assert info.types[0] is None and info.types[1] is None
    assert info.types[2] == Signature(("(ref null 0)",), ("i32",))
    assert info.tables[0].element == "(ref 2)"
    assert [e.name for e in wasmtime.Module(ENGINE, data).exports] == list(info.exports)
