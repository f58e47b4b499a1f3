"""Read a wasm module's interface from its bytes, without compiling it.

:func:`parse` walks the section headers and decodes the type, import, function,
table, memory, export and start sections, and the names and sizes of custom
sections (the ``producers`` section decoded: which language and toolchain made
the module). Global, element, code and data sections are skipped by their size,
so a 25 MB module is read in milliseconds.

The reader is bounded and strict: a truncated or malformed binary, an over-long
LEB128, an index out of range, a count beyond :data:`LIMITS` or bytes left over
in a section raise :class:`~wasmkit.errors.WasmFormatError` and nothing else.
It checks the structure of what it reads, not the code: a module it accepts may
still fail to compile.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from wasmkit.abi.signatures import Signature
from wasmkit.errors import WasmFormatError

MAGIC = b"\0asm"
"""The first four bytes of every wasm binary."""

LIMITS: Mapping[str, int] = types.MappingProxyType(
    {
        "types": 1_000_000,
        "imports": 100_000,
        "functions": 1_000_000,
        "tables": 100_000,
        "memories": 100,
        "globals": 1_000_000,
        "exports": 100_000,
        "params": 1_000,
        "results": 1_000,
        "name_bytes": 100_000,
        "producers_fields": 1_000,
    }
)
"""Most entries of each kind the reader accepts (wasmtime's own limits)."""

KINDS = ("func", "table", "memory", "global", "tag")
"""Import and export kinds, by their binary code."""

_VALTYPES = {
    0x7F: "i32",
    0x7E: "i64",
    0x7D: "f32",
    0x7C: "f64",
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
    0x6E: "anyref",
    0x6D: "eqref",
    0x6C: "i31ref",
    0x6B: "structref",
    0x6A: "arrayref",
    0x69: "exnref",
    0x71: "nullref",
    0x72: "nullexternref",
    0x73: "nullfuncref",
    0x74: "nullexnref",
}
_HEAPTYPES = {
    0x70: "func",
    0x6F: "extern",
    0x6E: "any",
    0x6D: "eq",
    0x6C: "i31",
    0x6B: "struct",
    0x6A: "array",
    0x69: "exn",
    0x71: "none",
    0x72: "noextern",
    0x73: "nofunc",
    0x74: "noexn",
}
_PACKED = {0x78: "i8", 0x77: "i16"}
# Where each non-custom section may appear (the data count section, 12, sits
# between element and code; tags, 13, between memory and global).
_ORDER = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12}
_ORDER[11] = 13
_SECTION_NAMES = {
    0: "custom",
    1: "type",
    2: "import",
    3: "function",
    4: "table",
    5: "memory",
    6: "global",
    7: "export",
    8: "start",
    9: "element",
    10: "code",
    11: "data",
    12: "datacount",
    13: "tag",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """The size limits of a memory (pages) or table (elements)."""

    minimum: int
    """Initial size."""
    maximum: int | None
    """Largest size, or ``None`` for no maximum."""
    shared: bool = False
    """A shared memory (threads)."""
    is64: bool = False
    """A 64-bit memory or table."""


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One import of a module (the fields of ``wasmkit.host.vm.ImportSpec``)."""

    module: str
    """Import module, e.g. ``env``."""
    name: str
    """Field name, e.g. ``proxy_log``."""
    kind: str
    """``func``, ``memory``, ``table``, ``global`` or ``tag``."""
    signature: Signature | None
    """The function type for ``func`` imports."""
    limits: Limits | None = None
    """The limits of an imported memory or table."""

    @property
    def qualname(self) -> str:
        """``module.name``."""
        return f"{self.module}.{self.name}"


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """One export of a module (the fields of ``wasmkit.host.vm.ExportSpec``)."""

    name: str
    """Export name."""
    kind: str
    """``func``, ``memory``, ``table``, ``global`` or ``tag``."""
    signature: Signature | None
    """The function type for ``func`` exports."""
    index: int = 0
    """Index in its kind's index space (imports first)."""


@dataclass(frozen=True, slots=True)
class Table:
    """A table defined by the module."""

    element: str
    """Element type, e.g. ``funcref``."""
    limits: Limits
    """Its size limits (elements)."""


@dataclass(frozen=True, slots=True)
class CustomSection:
    """A custom section: its name and where it lies."""

    name: str
    """Section name, e.g. ``name``, ``producers``, ``.debug_info``."""
    size: int
    """Payload size after the name (bytes)."""
    offset: int
    """Where the payload starts in the binary (bytes)."""


@dataclass(frozen=True, slots=True)
class Producers:
    """The ``producers`` custom section: who made the module.

    Each field is a tuple of ``(name, version)``; the version may be ``""``.
    """

    language: tuple[tuple[str, str], ...] = ()
    """Source languages, e.g. ``(("Go", "go1.26.8"),)`` or ``(("Rust", ""),)``."""
    processed_by: tuple[tuple[str, str], ...] = ()
    """Tools, e.g. ``(("rustc", "1.63.0 ..."), ("TinyGo", "0.37.0"))``."""
    sdk: tuple[tuple[str, str], ...] = ()
    """SDKs, e.g. ``(("Emscripten", "3.1.0"),)``."""

    def names(self) -> tuple[str, ...]:
        """Every producer name, lower-case, for matching."""
        return tuple(
            name.lower() for name, _ in (*self.language, *self.processed_by, *self.sdk)
        )


@dataclass(frozen=True, slots=True)
class Section:
    """One section's header."""

    id: int
    """Section id (0 custom, 1 type, ... 10 code, 11 data)."""
    offset: int
    """Where its payload starts (bytes)."""
    size: int
    """Payload size (bytes)."""

    @property
    def name(self) -> str:
        """``type``, ``import``, ``code``, ... ."""
        return _SECTION_NAMES.get(self.id, str(self.id))


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What a module declares, read from its bytes (see :func:`parse`)."""

    size: int
    """Size of the binary (bytes)."""
    types: tuple[Signature | None, ...]
    """The type section; ``None`` for a non-function (GC) type."""
    imports: tuple[ImportSpec, ...]
    """Imports in order."""
    functions: tuple[int, ...]
    """Type index of each function the module defines (after imported ones)."""
    tables: tuple[Table, ...]
    """Tables the module defines."""
    memories: tuple[Limits, ...]
    """Memories the module defines (limits in 64 KiB pages)."""
    globals: int
    """How many globals the module defines."""
    exports: Mapping[str, ExportSpec]
    """Exports by name, in order."""
    start: int | None
    """The start section's function index, or ``None`` without one."""
    customs: tuple[CustomSection, ...]
    """Custom sections in order."""
    producers: Producers | None
    """The decoded ``producers`` section, if present and well formed."""
    sections: tuple[Section, ...] = field(default=())
    """Every section header in order."""

    @property
    def has_start_section(self) -> bool:
        """Whether a start function runs at instantiation."""
        return self.start is not None

    def func_exports(self) -> frozenset[str]:
        """Names of the exported functions."""
        return frozenset(n for n, e in self.exports.items() if e.kind == "func")

    def custom(self, name: str) -> CustomSection | None:
        """The first custom section called ``name``."""
        return next((c for c in self.customs if c.name == name), None)


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def fail(self, message: str, at: int | None = None) -> WasmFormatError:
        offset = self.pos if at is None else at
        return WasmFormatError(
            f"malformed wasm at byte {offset}: {message}", offset=offset
        )

    def byte(self) -> int:
        if self.pos >= self.end:
            raise self.fail("unexpected end")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uleb(self, bits: int = 32) -> int:
        result = shift = 0
        start = self.pos
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= bits:
                raise self.fail(f"integer longer than {bits} bits", start)
        if result >> bits:
            raise self.fail(f"integer too large for {bits} bits", start)
        return result

    def sleb(self, bits: int) -> int:
        result = shift = 0
        start = self.pos
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift >= bits:
                raise self.fail(f"integer longer than {bits} bits", start)
        if byte & 0x40:
            result -= 1 << shift
        if not -(1 << (bits - 1)) <= result < (1 << (bits - 1)):
            raise self.fail(f"integer too large for {bits} bits", start)
        return result

    def count(self, what: str) -> int:
        start = self.pos
        n = self.uleb()
        # Every entry takes at least one byte: a count beyond the bytes left
        # is malformed, and never makes the reader loop or allocate for long.
        if n > LIMITS.get(what, n) or n > self.end - self.pos:
            raise self.fail(f"{n} {what} is too many", start)
        return n

    def take(self, size: int) -> bytes:
        if size > self.end - self.pos:
            raise self.fail("unexpected end")
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out

    def name(self) -> str:
        start = self.pos
        size = self.uleb()
        if size > LIMITS["name_bytes"]:
            raise self.fail(f"name of {size} bytes is too long", start)
        raw = self.take(size)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail("name is not UTF-8", start) from exc

    def heaptype(self) -> str:
        at = self.pos
        value = self.sleb(33)
        if value >= 0:
            return str(value)
        found = _HEAPTYPES.get(value & 0x7F)
        if found is None:
            raise self.fail(f"unknown heap type {value}", at)
        return found

    def valtype(self) -> str:
        at = self.pos
        code = self.byte()
        if code in (0x64, 0x63):
            heap = self.heaptype()
            return f"(ref {'null ' if code == 0x63 else ''}{heap})"
        found = _VALTYPES.get(code)
        if found is None:
            raise self.fail(f"unknown value type 0x{code:02x}", at)
        return found

    def limits(self, memory: bool) -> Limits:
        at = self.pos
        flags = self.byte()
        allowed = 0x0F if memory else 0x05
        if flags & ~allowed:
            raise self.fail(f"bad limits flags 0x{flags:02x}", at)
        is64 = bool(flags & 0x04)
        bits = 64 if is64 else 32
        minimum = self.uleb(bits)
        maximum = self.uleb(bits) if flags & 0x01 else None
        if memory and flags & 0x08:
            self.uleb()  # custom page size (log2)
        if maximum is not None and maximum < minimum:
            raise self.fail("limits maximum below minimum", at)
        return Limits(minimum, maximum, bool(flags & 0x02), is64)

    def expect_end(self, section: str) -> None:
        if self.pos != self.end:
            raise self.fail(
                f"{self.end - self.pos} bytes left in the {section} section"
            )


def _functype(r: _Reader) -> Signature:
    params = tuple(r.valtype() for _ in range(r.count("params")))
    results = tuple(r.valtype() for _ in range(r.count("results")))
    return Signature(params, results)


def _comptype(r: _Reader) -> Signature | None:
    at = r.pos
    form = r.byte()
    if form == 0x60:
        return _functype(r)
    if form == 0x5F:  # struct: fields of (storage type, mutability)
        for _ in range(r.count("params")):
            _storage(r)
        return None
    if form == 0x5E:  # array
        _storage(r)
        return None
    raise r.fail(f"unknown type form 0x{form:02x}", at)


def _storage(r: _Reader) -> None:
    if r.pos < r.end and r.data[r.pos] in _PACKED:
        r.pos += 1
    else:
        r.valtype()
    if r.byte() > 1:
        raise r.fail("bad mutability flag", r.pos - 1)


def _subtype(r: _Reader) -> Signature | None:
    if r.pos < r.end and r.data[r.pos] in (0x50, 0x4F):
        r.pos += 1
        for _ in range(r.count("types")):
            r.uleb()
    return _comptype(r)


def _types(r: _Reader) -> list[Signature | None]:
    out: list[Signature | None] = []
    for _ in range(r.count("types")):
        if r.pos < r.end and r.data[r.pos] == 0x4E:  # a recursion group
            r.pos += 1
            out.extend(_subtype(r) for _ in range(r.count("types")))
        else:
            out.append(_subtype(r))
        if len(out) > LIMITS["types"]:
            raise r.fail("too many types")
    return out


def _functype_at(r: _Reader, types_: list[Signature | None], at: int) -> Signature:
    index = r.uleb()
    if index >= len(types_):
        raise r.fail(f"type index {index} out of range ({len(types_)} types)", at)
    sig = types_[index]
    if sig is None:
        raise r.fail(f"type {index} is not a function type", at)
    return sig


def _globaltype(r: _Reader) -> None:
    r.valtype()
    if r.byte() > 3:  # mutable, shared (shared-everything threads)
        raise r.fail("bad global mutability", r.pos - 1)


def _imports(r: _Reader, types_: list[Signature | None]) -> list[ImportSpec]:
    out = []
    for _ in range(r.count("imports")):
        module = r.name()
        name = r.name()
        at = r.pos
        kind = r.byte()
        sig: Signature | None = None
        limits: Limits | None = None
        if kind == 0:
            sig = _functype_at(r, types_, r.pos)
        elif kind == 1:
            r.valtype()
            limits = r.limits(memory=False)
        elif kind == 2:
            limits = r.limits(memory=True)
        elif kind == 3:
            _globaltype(r)
        elif kind == 4:
            if r.byte() != 0:
                raise r.fail("bad tag attribute", r.pos - 1)
            _functype_at(r, types_, r.pos)
        else:
            raise r.fail(f"unknown import kind 0x{kind:02x}", at)
        out.append(ImportSpec(module, name, KINDS[kind], sig, limits))
    return out


def _tables(r: _Reader) -> list[Table]:
    out = []
    for _ in range(r.count("tables")):
        with_init = r.pos + 1 < r.end and r.data[r.pos : r.pos + 2] == b"\x40\x00"
        if with_init:  # function references: a table with an initializer
            r.pos += 2
        element = r.valtype()
        out.append(Table(element, r.limits(memory=False)))
        if with_init:
            _skip_const_expr(r)
    return out


# Constant-expression opcodes and their immediates: "u" a LEB128 index, "s" a
# signed LEB128, "h" a heap type, a number that many raw bytes.
_CONST_OPS: dict[int, tuple[str | int, ...]] = {
    0x41: ("s",),  # i32.const
    0x42: ("s",),  # i64.const
    0x43: (4,),  # f32.const
    0x44: (8,),  # f64.const
    0x23: ("u",),  # global.get
    0xD0: ("h",),  # ref.null
    0xD2: ("u",),  # ref.func
    0x6A: (),  # i32.add (extended constant expressions)
    0x6B: (),  # i32.sub
    0x6C: (),  # i32.mul
    0x7C: (),  # i64.add
    0x7D: (),  # i64.sub
    0x7E: (),  # i64.mul
}
_GC_CONST_OPS: dict[int, tuple[str | int, ...]] = {
    0: ("u",),  # struct.new
    1: ("u",),  # struct.new_default
    6: ("u",),  # array.new
    7: ("u",),  # array.new_default
    8: ("u", "u"),  # array.new_fixed
    26: (),  # any.convert_extern
    27: (),  # extern.convert_any
    28: (),  # ref.i31
}
_MAX_EXPR_OPS = 10_000


def _skip_const_expr(r: _Reader) -> None:
    for _ in range(_MAX_EXPR_OPS):
        at = r.pos
        op = r.byte()
        if op == 0x0B:  # end
            return
        if op == 0xFD:  # v128.const
            if r.uleb() != 12:
                raise r.fail("unsupported vector constant expression", at)
            r.take(16)
            continue
        immediates = _CONST_OPS.get(op)
        if op == 0xFB:
            immediates = _GC_CONST_OPS.get(r.uleb())
        if immediates is None:
            raise r.fail(f"opcode 0x{op:02x} in a constant expression", at)
        for kind in immediates:
            if kind == "u":
                r.uleb()
            elif kind == "s":
                r.sleb(64)
            elif kind == "h":
                r.heaptype()
            else:
                r.take(int(kind))
    raise r.fail("constant expression too long")


def _exports(
    r: _Reader, counts: list[int], func_sigs: list[Signature]
) -> dict[str, ExportSpec]:
    out: dict[str, ExportSpec] = {}
    for _ in range(r.count("exports")):
        at = r.pos
        name = r.name()
        if name in out:
            raise r.fail(f"duplicate export {name!r}", at)
        kind_at = r.pos
        kind = r.byte()
        if kind >= len(KINDS):
            raise r.fail(f"unknown export kind 0x{kind:02x}", kind_at)
        index = r.uleb()
        if index >= counts[kind]:
            raise r.fail(
                f"export {name!r}: {KINDS[kind]} index {index} out of range", kind_at
            )
        sig = func_sigs[index] if kind == 0 else None
        out[name] = ExportSpec(name, KINDS[kind], sig, index)
    return out


def _producers(data: bytes, start: int, end: int) -> Producers | None:
    r = _Reader(data, start, end)
    fields: dict[str, tuple[tuple[str, str], ...]] = {}
    try:
        for _ in range(r.count("producers_fields")):
            key = r.name()
            values = tuple((r.name(), r.name()) for _ in range(r.count("exports")))
            fields[key] = values
        r.expect_end("producers")
    except WasmFormatError:
        # A custom section never makes a module invalid: wasmtime ignores it.
        return None
    return Producers(
        fields.get("language", ()),
        fields.get("processed-by", ()),
        fields.get("sdk", ()),
    )


def parse(data: bytes | bytearray | memoryview) -> ModuleInfo:
    """Read a core wasm module's interface from its binary, without compiling.

    Args:
        data: the module's bytes (a wasm binary, version 1).

    Returns:
        The module's types, imports, exports, tables, memories, start function
        and custom sections.

    Raises:
        WasmFormatError: the bytes are not a well-formed core wasm module (a
            component, WAT text, a truncated file, an index out of range, ...);
            ``.offset`` says where.
    """
    raw = bytes(data)
    r = _Reader(raw, 0, len(raw))
    if raw[:4] != MAGIC:
        raise r.fail("not a wasm binary (no \\0asm header)", 0)
    if len(raw) < 8:
        raise r.fail("truncated header", len(raw))
    version = int.from_bytes(raw[4:8], "little")
    if version != 1:
        what = "a component, not a core module" if version & 0xFFFF else "unknown"
        raise r.fail(f"wasm version 0x{version:08x} ({what})", 4)
    r.pos = 8
    types_: list[Signature | None] = []
    imports: list[ImportSpec] = []
    functions: list[int] = []
    tables: list[Table] = []
    memories: list[Limits] = []
    exports: dict[str, ExportSpec] = {}
    customs: list[CustomSection] = []
    sections: list[Section] = []
    producers: Producers | None = None
    globals_ = tags = 0
    start: int | None = None
    code_count: int | None = None
    last = 0
    while r.pos < len(raw):
        header = r.pos
        sid = r.byte()
        size = r.uleb()
        begin = r.pos
        end = begin + size
        if end > len(raw):
            raise r.fail(f"section {sid} of {size} bytes runs past the end", header)
        sections.append(Section(sid, begin, size))
        s = _Reader(raw, begin, end)
        r.pos = end
        if sid == 0:
            name = s.name()
            customs.append(CustomSection(name, end - s.pos, s.pos))
            if name == "producers" and producers is None:
                producers = _producers(raw, s.pos, end)
            continue
        order = _ORDER.get(sid)
        if order is None:
            raise r.fail(f"unknown section id {sid}", header)
        if order <= last:
            raise r.fail(f"{_SECTION_NAMES[sid]} section out of order", header)
        last = order
        if sid == 1:
            types_ = _types(s)
        elif sid == 2:
            imports = _imports(s, types_)
        elif sid == 3:
            for _ in range(s.count("functions")):
                at = s.pos
                index = s.uleb()
                if index >= len(types_) or types_[index] is None:
                    raise s.fail(f"function type index {index} out of range", at)
                functions.append(index)
        elif sid == 4:
            tables = _tables(s)
        elif sid == 5:
            memories = [s.limits(memory=True) for _ in range(s.count("memories"))]
        elif sid == 6:
            globals_ = s.count("globals")
            continue  # initializer expressions are not read
        elif sid == 13:
            tags = s.count("functions")
            continue
        elif sid == 7:
            func_sigs: list[Signature] = [
                i.signature for i in imports if i.signature is not None
            ]
            func_sigs += [t for t in (types_[i] for i in functions) if t is not None]
            counts = [len(func_sigs)] + [
                sum(1 for i in imports if i.kind == kind) + extra
                for kind, extra in (
                    ("table", len(tables)),
                    ("memory", len(memories)),
                    ("global", globals_),
                    ("tag", tags),
                )
            ]
            exports = _exports(s, counts, func_sigs)
        elif sid == 8:
            at = s.pos
            start = s.uleb()
            n_funcs = sum(1 for i in imports if i.kind == "func") + len(functions)
            if start >= n_funcs:
                raise s.fail(f"start function {start} out of range", at)
        elif sid == 10:
            code_count = s.count("functions")
            if code_count != len(functions):
                raise s.fail(
                    f"{code_count} function bodies for {len(functions)} functions",
                    begin,
                )
            continue  # bodies are not read
        else:
            continue  # element, data count, data, tag: skipped by size
        s.expect_end(_SECTION_NAMES[sid])
    if functions and code_count is None:
        raise r.fail(f"{len(functions)} functions but no code section", len(raw))
    return ModuleInfo(
        size=len(raw),
        types=tuple(types_),
        imports=tuple(imports),
        functions=tuple(functions),
        tables=tuple(tables),
        memories=tuple(memories),
        globals=globals_,
        exports=types.MappingProxyType(exports),
        start=start,
        customs=tuple(customs),
        producers=producers,
        sections=tuple(sections),
    )
