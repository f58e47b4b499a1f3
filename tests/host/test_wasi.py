"""The WASI functions, called by real WAT filters in wasmtime.

``filter_wat(wasi=True)`` imports ``$wasi_<name>`` from ``wasi_snapshot_preview1``;
``wasi_unstable`` imports (AssemblyScript's) are written by hand.
"""

from __future__ import annotations

import pytest

from wasmkit.abi.constants import LogLevel
from wasmkit.abi.signatures import WASI_IMPORTS
from wasmkit.host import VirtualClock, load, request
from wasmkit.host.plugin import MONOTONIC_START_NS
from wasmkit.testing import filter_wat

BAD_PTR = "(i32.const 0x7fff0000)"  # far past the 2-page (128 KiB) memory
SUCCESS, BADF, NOTDIR, FAULT, INVAL, NOENT, NOSYS, NOTSUP = 0, 8, 20, 21, 28, 44, 52, 58

# fd_write of one buffer through an iovec at 700; nwritten goes to 708.
WRITE = """
(func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
  (i32.store (i32.const 700) (local.get $ptr))
  (i32.store (i32.const 704) (local.get $len))
  (call $wasi_fd_write (local.get $fd) (i32.const 700) (i32.const 1) (i32.const 708)))
"""


def on_request_headers(code: str) -> str:
    return f"""
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      {code}
      (i32.const 0))
    """


def write(fd: int, name: str, at: int) -> str:
    """Call $write with string $name; keep the errno at ``at``."""
    return (
        f"(i32.store (i32.const {at}) (call $write (i32.const {fd})"
        f" (global.get $s_{name}) (global.get $s_{name}_len)))"
    )


def with_imports(wat: str, *imports: str) -> str:
    return wat.replace("(module", "(module\n  " + "\n  ".join(imports), 1)


def run(code, strings=None, **options):
    wat = filter_wat(on_request_headers(code) + WRITE, strings=strings, wasi=True)
    plugin = load(wat, **options)
    result = plugin.run_http(request())
    return plugin.vm, result


def u32(vm, addr):
    return vm.mem.read_u32(addr)


def u64(vm, addr):
    return int.from_bytes(vm.mem.read(addr, 8), "little")


def records(result):
    return [(r.level, r.message, r.source) for r in result.logs]


# --- fd_write ------------------------------------------------------------------------


def test_each_write_is_one_info_or_error_record_as_in_envoy():
    code = f"""
      {write(1, "out", 512)}
      (i32.store (i32.const 516) (i32.load (i32.const 708)))
      {write(2, "err", 520)}
    """
    vm, result = run(code, {"out": "hello\nworld\n", "err": "oops\n"})
    # proxy-wasm-cpp-host's writevImpl: one message per write, its trailing
    # newline removed.
    assert records(result) == [
        (LogLevel.INFO, "hello\nworld", "stdout"),
        (LogLevel.ERROR, "oops", "stderr"),
    ]
    assert {r.context_id for r in result.logs} == {result.context_id}
    assert (u32(vm, 512), u32(vm, 516), u32(vm, 520)) == (SUCCESS, 12, SUCCESS)


def test_writes_are_not_joined_nor_split_into_lines():
    code = f"""
      {write(1, "a", 512)}
      {write(1, "b", 516)}
      {write(2, "c", 520)}
    """
    strings = {"a": "par", "b": "tial\nnext line\n", "c": "x\n\ny\n"}
    _, result = run(code, strings)
    assert records(result) == [
        (LogLevel.INFO, "par", "stdout"),
        (LogLevel.INFO, "tial\nnext line", "stdout"),
        (LogLevel.ERROR, "x\n\ny", "stderr"),
    ]


def test_one_trailing_newline_ends_the_record():
    _, result = run(write(1, "s", 512), {"s": "just one line\n"})
    assert [r.message for r in result.logs] == ["just one line"]


def test_several_iovecs_are_gathered_and_empty_writes_log_nothing():
    code = """
      (i32.store (i32.const 720) (global.get $s_a))
      (i32.store (i32.const 724) (global.get $s_a_len))
      (i32.store (i32.const 728) (i32.const 0x7fff0000))  ;; empty: never read
      (i32.store (i32.const 732) (i32.const 0))
      (i32.store (i32.const 736) (global.get $s_b))
      (i32.store (i32.const 740) (global.get $s_b_len))
      (i32.store (i32.const 512)
        (call $wasi_fd_write (i32.const 1) (i32.const 720) (i32.const 3) (i32.const 516)))
      (i32.store (i32.const 520)
        (call $wasi_fd_write (i32.const 1) (i32.const 720) (i32.const 0) (i32.const 524)))
    """
    vm, result = run(code, {"a": "gath", "b": "ered\n"})
    assert [r.message for r in result.logs] == ["gathered"]
    assert (u32(vm, 512), u32(vm, 516)) == (SUCCESS, 9)
    assert (u32(vm, 520), u32(vm, 524)) == (SUCCESS, 0)


@pytest.mark.parametrize("fd", [0, 3, 100])
def test_other_file_descriptors_are_badf(fd):
    vm, result = run(write(fd, "s", 512), {"s": "lost\n"})
    assert u32(vm, 512) == BADF
    assert result.logs == []
    assert result.error is None


@pytest.mark.parametrize(
    "code",
    [
        # iovec array outside memory
        f"(call $wasi_fd_write (i32.const 1) {BAD_PTR} (i32.const 1) (i32.const 708))",
        # an iovec pointing outside memory
        "(call $write (i32.const 1) (i32.const 0x7fff0000) (i32.const 4))",
        # a length running past the end of memory
        "(call $write (i32.const 1) (global.get $s_s) (i32.const -1))",
        # nwritten outside memory
        f"(call $wasi_fd_write (i32.const 1) (i32.const 700) (i32.const 0) {BAD_PTR})",
    ],
)
def test_bad_memory_is_fault(code):
    vm, result = run(f"(i32.store (i32.const 512) {code})", {"s": "text\n"})
    assert u32(vm, 512) == FAULT
    assert result.error is None
    assert result.logs == []


def test_fd_write_is_traced():
    _, result = run(write(1, "s", 512), {"s": "traced\n"})
    (call,) = [t for t in result.trace if t.kind == "hostcall" and t.name == "fd_write"]
    assert call.result == SUCCESS
    assert call.args["a0"] == 1


# --- clocks ---------------------------------------------------------------------------


def test_clock_time_get_reads_the_virtual_clock():
    start = 1_700_000_000_000_000_000
    clock = VirtualClock(start_ns=start)
    code = """
      (i32.store (i32.const 600)
        (call $wasi_clock_time_get (i32.const 0) (i64.const 1) (i32.const 512)))
      (i32.store (i32.const 604)
        (call $wasi_clock_time_get (i32.const 1) (i64.const 1000) (i32.const 520)))
      (i32.store (i32.const 608)
        (call $wasi_clock_time_get (i32.const 2) (i64.const 1) (i32.const 528)))
      (i32.store (i32.const 612)
        (call $wasi_clock_time_get (i32.const 0) (i64.const 1) (i32.const 131068)))
      (i32.store (i32.const 616) (call $wasi_clock_res_get (i32.const 1) (i32.const 536)))
      (i32.store (i32.const 620) (call $wasi_clock_res_get (i32.const 3) (i32.const 544)))
    """
    wat = filter_wat(on_request_headers(code), wasi=True)
    plugin = load(wat, clock=clock)
    vm = plugin.vm
    plugin.run_http(request())
    # The monotonic clock starts at a one-second "uptime", never zero.
    assert (u64(vm, 512), u64(vm, 520)) == (start, MONOTONIC_START_NS)
    assert [u32(vm, a) for a in (600, 604, 608, 612, 616, 620)] == [
        SUCCESS,
        SUCCESS,
        NOTSUP,  # CPU-time clocks
        FAULT,  # 8 bytes do not fit in the last 4 of memory
        SUCCESS,
        NOTSUP,
    ]
    assert u64(vm, 536) == 1
    clock.advance(2.5)
    plugin.run_http(request())
    assert (u64(vm, 512), u64(vm, 520)) == (
        start + 2_500_000,
        MONOTONIC_START_NS + 2_500_000,
    )


# --- random ---------------------------------------------------------------------------

RANDOM = """
  (i32.store (i32.const 600) (call $wasi_random_get (i32.const 512) (i32.const 32)))
  (i32.store (i32.const 604) (call $wasi_random_get (i32.const 65536) (i32.const 65536)))
  (i32.store (i32.const 608) (call $wasi_random_get (i32.const 0) (i32.const 65537)))
  (i32.store (i32.const 612) (call $wasi_random_get (i32.const 131060) (i32.const 32)))
  (i32.store (i32.const 616) (call $wasi_random_get (i32.const 0x7fff0000) (i32.const 0)))
"""


def _random_bytes(seed):
    vm, result = run(RANDOM, seed=seed)
    assert result.error is None
    return vm, vm.mem.read(512, 32)


def test_random_get_limits():
    vm, data = _random_bytes(1)
    assert [u32(vm, a) for a in (600, 604, 608, 612, 616)] == [
        SUCCESS,
        SUCCESS,  # exactly 64 KiB is allowed
        INVAL,  # more than 64 KiB
        FAULT,
        SUCCESS,  # nothing to write
    ]
    assert data != bytes(32)
    assert vm.mem.read(65536, 65536) != bytes(65536)


def test_random_get_is_reproducible_with_the_same_seed():
    _, first = _random_bytes(7)
    _, again = _random_bytes(7)
    _, other = _random_bytes(8)
    assert first == again
    assert first != other


def test_random_get_continues_the_sequence_across_calls():
    plugin = load(filter_wat(on_request_headers(RANDOM), wasi=True), seed=3)
    plugin.run_http(request())
    first = plugin.vm.mem.read(512, 32)
    plugin.run_http(request())
    assert plugin.vm.mem.read(512, 32) != first


# --- proc_exit --------------------------------------------------------------------------


def test_proc_exit_stops_the_filter_and_flushes_output():
    code = """
      (drop (call $write (i32.const 1) (global.get $s_bye) (global.get $s_bye_len)))
      (call $wasi_proc_exit (i32.const 3))
    """
    _, result = run(code, {"bye": "bye without newline"})
    assert result.error is not None
    assert result.error.kind == "trap"
    assert "proc_exit(3)" in str(result.error)
    assert records(result) == [(LogLevel.INFO, "bye without newline", "stdout")]
    assert result.response_after is not None and result.response_after.status == 503


# --- environment and arguments ----------------------------------------------------------

ENVIRON = """
  (i32.store (i32.const 600) (call $wasi_environ_sizes_get (i32.const 512) (i32.const 516)))
  (i32.store (i32.const 604) (call $wasi_environ_get (i32.const 520) (i32.const 800)))
"""


def test_environ_holds_the_configured_variables():
    vm, _ = run(ENVIRON, environ={"A": "1", "LONG_NAME": "value=x"})
    assert (u32(vm, 600), u32(vm, 604)) == (SUCCESS, SUCCESS)
    assert (u32(vm, 512), u32(vm, 516)) == (2, 22)
    assert (u32(vm, 520), u32(vm, 524)) == (800, 804)
    assert vm.mem.read(800, 22) == b"A=1\0LONG_NAME=value=x\0"


def test_environ_is_empty_by_default():
    vm, _ = run("(i32.store (i32.const 524) (i32.const -1))" + ENVIRON)
    assert (u32(vm, 600), u32(vm, 604)) == (SUCCESS, SUCCESS)
    assert (u32(vm, 512), u32(vm, 516)) == (0, 0)
    assert u32(vm, 520) == 0 and u32(vm, 524) == 0xFFFFFFFF  # nothing written


def test_environ_bad_pointers_are_fault():
    code = f"""
      (i32.store (i32.const 600) (call $wasi_environ_sizes_get {BAD_PTR} (i32.const 516)))
      (i32.store (i32.const 604) (call $wasi_environ_get {BAD_PTR} (i32.const 800)))
      (i32.store (i32.const 608) (call $wasi_environ_get (i32.const 520) {BAD_PTR}))
    """
    vm, result = run(code, environ={"A": "1"})
    assert [u32(vm, a) for a in (600, 604, 608)] == [FAULT] * 3
    assert result.error is None


# --- both module names -------------------------------------------------------------------

UNSTABLE = (
    '(import "wasi_unstable" "fd_write" '
    "(func $u_fd_write (param i32 i32 i32 i32) (result i32)))",
    '(import "wasi_unstable" "random_get" (func $u_random_get (param i32 i32) (result i32)))',
    '(import "wasi_unstable" "proc_exit" (func $u_proc_exit (param i32)))',
)


def test_wasi_unstable_and_preview1_share_one_implementation():
    code = """
      (i32.store (i32.const 700) (global.get $s_a))
      (i32.store (i32.const 704) (global.get $s_a_len))
      (i32.store (i32.const 512)
        (call $u_fd_write (i32.const 1) (i32.const 700) (i32.const 1) (i32.const 708)))
      (i32.store (i32.const 516) (i32.load (i32.const 708)))
      (drop (call $write (i32.const 1) (global.get $s_b) (global.get $s_b_len)))
      (i32.store (i32.const 520) (call $u_random_get (i32.const 528) (i32.const 16)))
    """
    body = on_request_headers(code) + WRITE
    wat = with_imports(
        filter_wat(body, strings={"a": "from ", "b": "both\n"}, wasi=True), *UNSTABLE
    )
    plugin = load(wat, seed=5)
    result = plugin.run_http(request())
    vm = plugin.vm
    assert [r.message for r in result.logs] == ["from ", "both"]
    assert (u32(vm, 512), u32(vm, 516), u32(vm, 520)) == (SUCCESS, 5, SUCCESS)
    # The same seed gives the same numbers whichever module name is used.
    preview1, _ = run(
        "(drop (call $wasi_random_get (i32.const 528) (i32.const 16)))", seed=5
    )
    assert vm.mem.read(528, 16) == preview1.mem.read(528, 16)


def test_a_module_importing_only_wasi_unstable_loads_and_exits():
    body = on_request_headers("(call $u_proc_exit (i32.const 1))")
    wat = with_imports(filter_wat(body), *UNSTABLE)
    result = load(wat).run_http(request())
    assert result.error is not None
    assert "proc_exit(1)" in str(result.error)


# --- the rest: fixed answers, as cpp-host gives ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "errno"),
    [
        ("fd_read", (1, 512, 0, 520), NOSYS),
        ("fd_pread", (1, 512, 0, 0, 520), NOSYS),
        ("fd_prestat_get", (3, 512), BADF),
        ("fd_prestat_dir_name", (3, 512, 0), NOSYS),
        ("fd_fdstat_set_flags", (1, 0), NOSYS),
        ("fd_filestat_get", (3, 512), BADF),
        ("fd_fdstat_get", (3, 512), BADF),
        ("fd_fdstat_get", (1, 512), SUCCESS),
        ("fd_sync", (1,), SUCCESS),
        ("fd_sync", (3,), BADF),
        ("fd_datasync", (2,), SUCCESS),
        ("fd_allocate", (5, 0, 0), BADF),
        ("fd_tell", (1, 512), SUCCESS),
        ("fd_tell", (3, 512), BADF),
        ("fd_renumber", (1, 2), BADF),
        ("fd_readdir", (3, 512, 0, 0, 520), NOTDIR),
        ("fd_advise", (3, 0, 0, 0), SUCCESS),
        ("fd_pwrite", (7, 700, 1, 0, 708), BADF),
        ("path_open", (3, 0, 512, 1, 0, 0, 0, 0, 520), NOENT),
        ("path_unlink_file", (3, 512, 1), NOTSUP),
        ("path_filestat_get", (3, 0, 512, 1, 520), NOTSUP),
        ("path_readlink", (3, 512, 1, 520, 8, 600), NOTSUP),
        ("sock_recv", (3, 512, 1, 0, 520, 524), NOTSUP),
        ("sock_shutdown", (3, 0), NOTSUP),
        ("args_sizes_get", (512, 516), SUCCESS),
        ("args_get", (512, 516), SUCCESS),
        ("sched_yield", (), SUCCESS),
        ("poll_oneoff", (512, 600, 1, 520), SUCCESS),
    ],
)
def test_fixed_answers(name, args, errno):
    sig = WASI_IMPORTS[name]
    argv = " ".join(f"({t}.const {a})" for t, a in zip(sig.params, args, strict=True))
    code = f"""
      (i32.store (i32.const 512) (i32.const -1))
      (i32.store (i32.const 516) (i32.const -1))
      (i32.store (i32.const 520) (i32.const -1))
      (i32.store (i32.const 600) (i32.const -1))
      (i32.store (i32.const 1000) (call $wasi_{name} {argv}))
    """
    vm, result = run(code)
    assert u32(vm, 1000) == errno
    assert result.error is None
    if name in ("args_sizes_get",):
        assert (u32(vm, 512), u32(vm, 516)) == (0, 0)
    if name == "poll_oneoff":
        assert u32(vm, 520) == 0  # no events
    if name == "path_readlink":
        assert u32(vm, 600) == 0  # nothing read
    if name == "fd_tell" and errno == SUCCESS:
        assert u64(vm, 512) == 0
    if name == "fd_fdstat_get" and errno == SUCCESS:
        stat = vm.mem.read(512, 24)
        assert stat[2:4] == b"\0\0"  # no flags
        assert int.from_bytes(stat[8:16], "little") == 64  # rights: FD_WRITE
        assert int.from_bytes(stat[16:24], "little") == 0


@pytest.mark.parametrize("name", ["fd_seek", "fd_close"])
def test_seek_and_close_log_an_error_and_succeed(name):
    # fd_seek(fd 1, offset 1, whence 1, *newoffset) / fd_close(fd 1)
    argv = {
        "fd_seek": "(i32.const 1) (i64.const 1) (i32.const 1) (i32.const 512)",
        "fd_close": "(i32.const 1)",
    }[name]
    vm, result = run(f"(i32.store (i32.const 1000) (call $wasi_{name} {argv}))")
    assert u32(vm, 1000) == SUCCESS
    assert [(r.level, r.source) for r in result.logs] == [(LogLevel.ERROR, "host")]
    assert f"{name}(1) is not supported" in result.logs[0].message
