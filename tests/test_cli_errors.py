"""Bad input to the ``wasmkit`` command: one clear line, no traceback, non-zero exit.

The command runs as a subprocess on real files: sample filters built by the
real compilers, modules made by wasmtime from WAT and then damaged, the
sample capture.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

import wasmkit

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "samples" / "captures" / "api.flow"
MINIMAL = """(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (i32.const 42424242)) (i32.const 0)))
"""


def _sleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            return bytes([*out, byte])
        out.append(byte | 0x80)


def wasmkit_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )


def one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The single stderr line of a failed command, checked for ``words``."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _build(source: str) -> Path:
    # The sample built with the real compiler through the CLI (build cache).
    proc = wasmkit_cli("build", str(ROOT / "samples" / "filters" / source))
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def rust_add_headers() -> Path:
    return _build("add_headers/rust")


@pytest.fixture(scope="module")
def rust_json_rewrite() -> Path:
    return _build("json_rewrite/rust")


@pytest.fixture(scope="module")
def minimal(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wasm") / "minimal.wasm"
    path.write_bytes(wasmtime.wat2wasm(MINIMAL))
    return path


def test_version():
    proc = wasmkit_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(
        rf"wasmkit {re.escape(wasmkit.__version__)} \(wasmtime [\d.]+, Python [\d.]+\)\n",
        proc.stdout,
    )


def test_build_of_a_missing_path_names_it():
    line = one_line(wasmkit_cli("build", "/nonexistent/filter"))
    assert line == "wasmkit build: /nonexistent/filter: no such file or folder"


@pytest.mark.parametrize("command", ["run", "replay", "inspect"])
def test_a_missing_filter_is_named(command):
    args = [command, "/nonexistent/filter.wasm"]
    if command == "replay":
        args.append(str(FLOW))
    line = one_line(wasmkit_cli(*args))
    assert (
        line
        == f"wasmkit {command}: filter /nonexistent/filter.wasm: no such file or folder"
    )


@pytest.mark.parametrize("command", ["run", "replay", "inspect"])
def test_a_file_that_is_neither_wasm_nor_wat(tmp_path, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, these are notes\nnot a filter\n")
    args = [command, str(notes)] + ([str(FLOW)] if command == "replay" else [])
    line = one_line(wasmkit_cli(*args))
    assert line == (
        f"wasmkit {command}: filter {notes} is neither a wasm module nor WAT text "
        "(it starts with 'hello, these are notes')"
    )


def test_an_empty_file(tmp_path):
    empty = tmp_path / "empty.wasm"
    empty.write_bytes(b"")
    one_line(wasmkit_cli("run", str(empty)), "empty.wasm is empty")


def test_wat_with_comments_first_is_wat(tmp_path):
    wat = tmp_path / "commented.wat"
    wat.write_text(";; a filter\n(; block ;)\n" + MINIMAL)
    proc = wasmkit_cli("run", str(wat))
    assert proc.returncode == 0, proc.stderr


def test_an_unreadable_file(tmp_path):
    target = tmp_path / "secret.wasm"
    target.write_bytes(wasmtime.wat2wasm(MINIMAL))
    target.chmod(0)
    if os.access(target, os.R_OK):
        # root reads any mode: a procfs file that is write-only even for root
        target.unlink()
        target.symlink_to("/proc/sys/vm/drop_caches")
    line = one_line(wasmkit_cli("run", str(target)))
    assert line == f"wasmkit run: cannot read filter {target}: permission denied"


def test_a_wat_syntax_error_is_one_line_with_its_place(tmp_path):
    bad = tmp_path / "bad.wat"
    bad.write_text("(module\n  (func (param i32) (i32.const 1))\n")
    line = one_line(wasmkit_cli("replay", str(bad), str(FLOW)))
    assert line.startswith(f"wasmkit replay: {bad}: ")
    assert re.search(r"\(line \d+, column \d+\)$", line), line


def test_a_corrupt_wasm_is_wasmtimes_message_on_one_line(tmp_path, minimal):
    data = minimal.read_bytes()
    # i32.const 42424242 in the function body; its opcode becomes 0xff
    leb = data.index(_sleb128(42424242))
    assert data[leb - 1] == 0x41  # i32.const
    corrupt = tmp_path / "corrupt.wasm"
    corrupt.write_bytes(data[: leb - 1] + b"\xff" + data[leb:])
    for command in ("run", "replay"):
        args = [command, str(corrupt)] + ([str(FLOW)] if command == "replay" else [])
        line = one_line(wasmkit_cli(*args), str(corrupt), "invalid wasm module")
        assert "illegal opcode" in line and "Caused by" not in line


def test_a_truncated_wasm(tmp_path, minimal):
    cut = tmp_path / "cut.wasm"
    cut.write_bytes(minimal.read_bytes()[:40])
    one_line(wasmkit_cli("replay", str(cut), str(FLOW)), "cut.wasm", "malformed")


def test_bad_json_configuration_shows_the_filters_own_words(rust_json_rewrite):
    line = one_line(
        wasmkit_cli("replay", str(rust_json_rewrite), str(FLOW), "--config", "{bad")
    )
    assert "proxy_on_configure returned false" in line
    assert "(plugin configuration: {bad)" in line
    # json_rewrite logs why before it returns false
    assert "the filter said: json_rewrite: invalid configuration" in line
    for command in ("run", "compare"):
        args = [command, str(rust_json_rewrite)]
        args += [str(rust_json_rewrite), str(FLOW)] if command == "compare" else []
        line = one_line(wasmkit_cli(*args, "--config", "{bad"))
        assert line.startswith(f"wasmkit {command}: ")
        assert "the filter said: json_rewrite: invalid configuration" in line


def test_an_unknown_root_id_warns_when_the_module_never_asks(rust_add_headers):
    proc = wasmkit_cli(
        "replay",
        str(rust_add_headers),
        str(FLOW),
        "--root-id",
        "nosuch",
        "--limit",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "wasmkit replay: warning: add_headers.rust.wasm never asks for its root id "
        "(it reads no plugin_root_id property): --root-id 'nosuch' changes nothing"
    ]
    run = wasmkit_cli("run", str(rust_add_headers), "--root-id", "nosuch")
    assert run.returncode == 0 and "never asks for its root id" in run.stderr


def test_a_module_that_reads_its_root_id_gets_no_warning(tmp_path):
    from wasmkit.testing import filter_wat

    reads = filter_wat(
        """(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
             (drop (call $proxy_get_property (global.get $s_p) (global.get $s_p_len)
               (i32.const 512) (i32.const 516)))
             (i32.const 1))""",
        strings={"p": "plugin_root_id"},
    )
    wat = tmp_path / "reads.wat"
    wat.write_text(reads)
    proc = wasmkit_cli("run", str(wat), "--root-id", "mine")
    assert proc.returncode == 0, proc.stderr
    assert "root id" not in proc.stderr


@pytest.mark.parametrize("flag", ["--json", "--out", "--har", "--html"])
def test_unwritable_replay_outputs(tmp_path, minimal, flag):
    (tmp_path / "file").write_text("a file, not a folder")
    target = tmp_path / "file" / "out"
    line = one_line(wasmkit_cli("replay", str(minimal), str(FLOW), flag, str(target)))
    assert line.startswith(f"wasmkit replay: cannot write {target}: ")


def test_unwritable_build_output(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    target = tmp_path / "file" / "out.wasm"
    source = ROOT / "samples" / "filters" / "add_headers" / "rust"
    line = one_line(wasmkit_cli("build", str(source), "-o", str(target)))
    assert line == f"wasmkit build: -o: cannot write {target}: not a directory"


def test_missing_and_bad_callouts(tmp_path, minimal):
    line = one_line(
        wasmkit_cli(
            "replay", str(minimal), str(FLOW), "--callouts", "/nonexistent.json"
        )
    )
    assert line == (
        "wasmkit replay: --callouts: cannot read /nonexistent.json: "
        "no such file or directory"
    )
    notes = tmp_path / "notes.json"
    notes.write_text("not json")
    one_line(
        wasmkit_cli("run", str(minimal), "--callouts", str(notes)),
        "wasmkit run: --callouts",
        "not JSON",
    )


def test_missing_and_bad_captures(tmp_path, minimal):
    one_line(
        wasmkit_cli("replay", str(minimal), "/nonexistent.flow"),
        "wasmkit replay:",
        "/nonexistent.flow",
    )
    notes = tmp_path / "notes.flow"
    notes.write_text("hello")
    one_line(
        wasmkit_cli("replay", str(minimal), str(notes)),
        "wasmkit replay:",
        "notes.flow is not a mitmproxy .flow or HAR capture",
    )


def test_progress_of_a_slow_load_ends_cleanly(tmp_path):
    # A start-up that takes over the heartbeat: a loop in proxy_on_vm_start.
    from wasmkit.testing import filter_wat

    slow = filter_wat(
        """(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
             (local $i i64)
             (loop $l (local.set $i (i64.add (local.get $i) (i64.const 1)))
               (br_if $l (i64.lt_u (local.get $i) (i64.const 4000000000))))
             (i32.const 1))"""
    )
    wat = tmp_path / "slow.wat"
    wat.write_text(slow)
    proc = wasmkit_cli(
        "replay", str(wat), str(FLOW), "--limit", "3", "--start-timeout-ms", "120000"
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines, "the load took over a second: it says so"
    # The load reports its own time; the replay's line counts the flows' time
    # only, and is the last line: no stale "replaying: 1 flows (12 s)".
    assert lines[-1].startswith("loaded slow.wat in "), lines
    assert not any(line.startswith("replaying:") for line in lines), lines
    assert all(
        re.fullmatch(r"loading slow\.wat \(\d+ s\)", line) for line in lines[:-1]
    ), lines


def test_a_folder_that_is_no_project_says_what_it_lacks(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line(wasmkit_cli("build", str(empty)))
    assert line.startswith(f"wasmkit build: cannot tell the language of {empty}: ")
    assert line.endswith("(or pass --lang)")
    line = one_line(wasmkit_cli("replay", str(empty), str(FLOW)))
    assert line.startswith(f"wasmkit replay: cannot build {empty}: ")
    assert "lang" not in line.split(": ", 3)[-1]  # replay has no --lang
