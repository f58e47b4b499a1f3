"""What the command line checks before it works, and how it says what went wrong.

Every bad input is one line on stderr that names what is wrong and where
(``wasmkit replay: notes.txt is neither a wasm module nor WAT text ...``),
never a traceback. :func:`filter_problem` looks at a filter path before
anything loads it, :func:`one_line` condenses a multi-line message (wasmtime's
``Caused by:`` chains, the WAT parser's caret drawings, the filter's own log
lines) to one, and :func:`root_id_warning` says when a root id cannot matter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SOURCE_SUFFIXES = (".rs", ".go", ".ts")
"""Source files the command line builds before it loads them."""

_WASM_MAGIC = b"\0asm"
_HEAD_BYTES = 4096
_ROOT_ID_PROPERTY = "plugin_root_id"


def os_reason(exc: OSError) -> str:
    """The reason of an ``OSError`` in lower case, without its errno and path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return reason[:1].lower() + reason[1:]


def _skip_wat_trivia(text: str) -> str:
    # Whitespace, ";; line" and "(; block ;)" comments, as the WAT grammar has them.
    while True:
        text = text.lstrip()
        if text.startswith(";;"):
            newline = text.find("\n")
            text = "" if newline < 0 else text[newline + 1 :]
        elif text.startswith("(;"):
            end = text.find(";)")
            text = "" if end < 0 else text[end + 2 :]
        else:
            return text


def _preview(head: bytes) -> str:
    first = head.lstrip()[:24]
    try:
        shown = first.decode("utf-8").split("\n")[0]
    except UnicodeDecodeError:
        return repr(first[:12])
    return repr(shown)


def filter_problem(arg: str) -> str | None:
    """Why ``arg`` cannot be given as a filter, in one line; ``None`` if it can.

    A missing path, an unreadable file, and a file that is neither a wasm
    module (the wasm magic number first) nor WAT text (its first token,
    after comments, is ``(``) are problems; a folder or a ``.rs`` / ``.go`` /
    ``.ts`` file is built first and not looked at here.
    """
    path = Path(arg)
    if path.is_dir() or (path.suffix in SOURCE_SUFFIXES and path.exists()):
        return None
    if not os.path.lexists(arg):
        return f"filter {arg}: no such file or folder"
    try:
        with open(arg, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError as exc:
        return f"cannot read filter {arg}: {os_reason(exc)}"
    if head.startswith(_WASM_MAGIC):
        return None
    if not head.strip():
        return f"filter {arg} is empty: expected a wasm module or WAT text"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if _skip_wat_trivia(text).startswith("("):
        return None
    return (
        f"filter {arg} is neither a wasm module nor WAT text (it starts with "
        f"{_preview(head)})"
    )


_FUNCTION = re.compile(r"wasm\[\d+\]::function\[(\d+)\](?:::\S+)?")
_CAUSE = re.compile(r"^\s*\d+:\s*")
_WAT_WHERE = re.compile(r"-->\s*\S*?:(\d+):(\d+)")
_CARET = re.compile(r"^\s*(\d+\s*)?\|")


def one_line(message: str) -> str:
    """``message`` on one line: what went wrong and where, the detail kept.

    * wasmtime's ``Caused by:`` chain: the first line and the last cause
      (``failed to compile function 548: Invalid input WebAssembly code at
      offset 82135: illegal opcode: 0xff``);
    * the WAT parser's ``--> <anon>:3:5`` and caret drawing: ``(line 3,
      column 5)``;
    * other lines (``the filter said: ...``) joined with ``; ``.
    """
    lines = [line.rstrip() for line in message.strip().splitlines()]
    if len(lines) <= 1:
        return _FUNCTION.sub(r"function \1", lines[0] if lines else "")
    head = _FUNCTION.sub(r"function \1", lines[0])
    rest = lines[1:]
    if "Caused by:" in rest:
        at = rest.index("Caused by:")
        causes = [_CAUSE.sub("", c).strip() for c in rest[at + 1 :] if c.strip()]
        if causes:
            head = f"{head}: {causes[-1]}"
        rest = rest[:at]
    out = [head]
    for line in rest:
        where = _WAT_WHERE.search(line)
        if where:
            out[0] += f" (line {where.group(1)}, column {where.group(2)})"
            continue
        if not line.strip() or _CARET.match(line):
            continue
        out.append(line.strip())
    return "; ".join(out)


_WAT_STRING = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_WAT_ESCAPE = re.compile(rb"\\([0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)", re.DOTALL)
_WAT_NAMED = {b"n": b"\n", b"t": b"\t", b"r": b"\r"}


def _wat_bytes(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if len(code) == 2 and code[:1] != b"u":
        return bytes([int(code, 16)])
    if code.startswith(b"u{"):
        return chr(int(code[2:-1], 16)).encode()
    return _WAT_NAMED.get(code, code)


def _data_strings(data: bytes) -> bytes:
    # A binary module holds its strings as they are; WAT text holds them as
    # string literals, escapes (\70\6c...) included.
    if data.startswith(_WASM_MAGIC):
        return data
    return b"\0".join(
        _WAT_ESCAPE.sub(_wat_bytes, m.group(1)) for m in _WAT_STRING.finditer(data)
    )


def _asks_for_root_id(data: bytes) -> bool:
    # The SDKs that choose a root context by id read the property by name:
    # UTF-8 (Rust, Go, WAT) or UTF-16 (AssemblyScript strings).
    name = _ROOT_ID_PROPERTY
    data = _data_strings(data)
    return name.encode() in data or name.encode("utf-16-le") in data


def root_id_warning(filter_path: str, root_id: str) -> str | None:
    """A warning when ``root_id`` is given but the module never asks for it.

    A module that never reads the ``plugin_root_id`` property (the Rust and
    Go SDKs create their root context whatever the id) runs the same with
    any root id, so a mistyped one would pass silently. ``None`` when no
    root id is given, the module reads it, or the file cannot be read.
    """
    if not root_id:
        return None
    try:
        data = Path(filter_path).read_bytes()
    except OSError:
        return None
    if _asks_for_root_id(data):
        return None
    return (
        f"warning: {os.path.basename(filter_path)} never asks for its root id "
        f"(it reads no {_ROOT_ID_PROPERTY} property): --root-id {root_id!r} "
        "changes nothing"
    )
