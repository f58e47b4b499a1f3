"""The WASI functions SDK-built filters import, as cpp-host provides them.

Linked under both ``wasi_snapshot_preview1`` and ``wasi_unstable``. There is
no file system: each write to stdout or stderr becomes one log record (info,
error), its trailing newline removed, as Envoy logs it; clocks read the host's
virtual clock, ``random_get`` draws from a seeded generator, and
``proc_exit`` stops the guest.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from wasmkit.abi.constants import MAX_RANDOM_BYTES, LogLevel, WasiErrno
from wasmkit.abi.signatures import WASI_IMPORTS
from wasmkit.host.vm import GuestExit, HostFunction

if TYPE_CHECKING:
    from wasmkit.host.memory import GuestMemory

_OK = WasiErrno.SUCCESS
_FAULT = int(WasiErrno.FAULT)


_TAIL = 4096


class Wasi:
    """WASI state of one VM.

    Args:
        memory: guest memory accessor.
        log: receives ``(level, text, source)`` for stdout/stderr writes.
        now_ns: the virtual wall clock (ns since the epoch).
        monotonic_ns: the virtual monotonic clock (ns).
        seed: seed of ``random_get``.
        environ: environment variables visible to the guest.
    """

    def __init__(
        self,
        memory: GuestMemory,
        log: Callable[[LogLevel, str, str], None],
        now_ns: Callable[[], int],
        monotonic_ns: Callable[[], int],
        seed: int = 0,
        environ: Mapping[str, str] | None = None,
        room: Callable[[], int] | None = None,
    ) -> None:
        self.mem = memory
        self.log = log
        self.now_ns = now_ns
        self.monotonic_ns = monotonic_ns
        self.rng = random.Random(seed)
        self.environ = dict(environ or {})
        self.pending = False
        self.room: Callable[[], int] = room or (lambda: 1 << 62)
        """Bytes of output the current stream may still keep (the log quota)."""
        self.stderr_tail = b""
        """The last bytes written to stderr (a crashing runtime's last words)."""

    def functions(self) -> dict[str, HostFunction]:
        """Every WASI import name mapped to its implementation."""
        out: dict[str, HostFunction] = {}
        for name in WASI_IMPORTS:
            out[name] = getattr(self, name, None) or _default(name)
        return out

    # -- output -------------------------------------------------------------

    def _gather(self, iovs: int, count: int, room: int) -> tuple[bytes, int] | None:
        # The first ``room`` bytes of the iovecs and their whole length; every
        # buffer is bounds-checked, but only what is kept is copied.
        raw = self.mem.read(iovs, 8 * count)
        if raw is None:
            return None
        chunks = []
        total = 0
        for i in range(count):
            ptr, size = struct.unpack_from("<II", raw, 8 * i)
            if not size:
                continue  # an empty buffer is never looked at
            if not self.mem.writable(ptr, size):
                return None
            take = min(size, room)
            if take > 0:
                data = self.mem.read(ptr, take)
                if data is None:
                    return None
                chunks.append(data)
                room -= take
            total += size
        return b"".join(chunks), total

    def _emit(self, fd: int, data: bytes, total: int) -> None:
        # As Envoy (proxy-wasm-cpp-host, writevImpl): one log message per
        # write, its trailing newline removed; nothing for an empty write.
        if not total:
            return
        cut = total - len(data)
        if not cut and data.endswith(b"\n"):
            data = data[:-1]
        level = LogLevel.INFO if fd == 1 else LogLevel.ERROR
        source = "stdout" if fd == 1 else "stderr"
        text = data.decode("utf-8", "replace")
        if cut:
            text += f" [cut: {cut:,} more bytes past Limits.log_bytes]"
        if fd == 2:
            self.stderr_tail = (self.stderr_tail + data)[-_TAIL:]
        self.log(level, text, source)

    def flush(self) -> None:
        """Nothing to do: every write is logged when it happens (kept for callers)."""
        self.pending = False

    def fd_write(self, fd: int, iovs: int, count: int, nwritten: int) -> int:
        if fd not in (1, 2):
            return WasiErrno.BADF
        got = self._gather(iovs, count, self.room())
        if got is None or not self.mem.writable(nwritten, 4):
            return _FAULT
        data, total = got
        self._emit(fd, data, total)
        self.mem.write_u32(nwritten, total)
        return _OK

    def fd_pwrite(
        self, fd: int, iovs: int, count: int, _offset: int, nwritten: int
    ) -> int:
        return self.fd_write(fd, iovs, count, nwritten)

    def fd_fdstat_get(self, fd: int, stat: int) -> int:
        if fd not in (1, 2):
            return WasiErrno.BADF
        # filetype CHARACTER_DEVICE (2), flags 0, rights FD_WRITE (64).
        data = struct.pack("<BxHxxxxQQ", 2, 0, 64, 0)
        return _OK if self.mem.write(stat, data) else _FAULT

    def fd_seek(self, fd: int, offset: int, whence: int, newoffset: int) -> int:
        self.log(LogLevel.ERROR, f"wasi: fd_seek({fd}) is not supported", "host")
        return _OK

    def fd_close(self, fd: int) -> int:
        self.log(LogLevel.ERROR, f"wasi: fd_close({fd}) is not supported", "host")
        return _OK

    def fd_tell(self, fd: int, offset: int) -> int:
        if fd not in (1, 2):
            return WasiErrno.BADF
        return _OK if self.mem.write_u64(offset, 0) else _FAULT

    # -- environment and arguments ----------------------------------------------

    def _environ_items(self) -> list[bytes]:
        return [f"{k}={v}".encode() + b"\0" for k, v in self.environ.items()]

    def environ_sizes_get(self, count: int, size: int) -> int:
        items = self._environ_items()
        ok = self.mem.write_u32(count, len(items)) and self.mem.write_u32(
            size, sum(map(len, items))
        )
        return _OK if ok else _FAULT

    def environ_get(self, environ: int, buf: int) -> int:
        pos = buf
        for i, item in enumerate(self._environ_items()):
            if not (
                self.mem.write_u32(environ + 4 * i, pos) and self.mem.write(pos, item)
            ):
                return _FAULT
            pos += len(item)
        return _OK

    def args_sizes_get(self, count: int, size: int) -> int:
        ok = self.mem.write_u32(count, 0) and self.mem.write_u32(size, 0)
        return _OK if ok else _FAULT

    def args_get(self, argv: int, buf: int) -> int:
        return _OK

    # -- clocks, randomness, scheduling -----------------------------------------

    def clock_time_get(self, clock_id: int, precision: int, out: int) -> int:
        if clock_id == 0:
            value = self.now_ns()
        elif clock_id == 1:
            value = self.monotonic_ns()
        else:
            return WasiErrno.NOTSUP
        return _OK if self.mem.write_u64(out, value) else _FAULT

    def clock_res_get(self, clock_id: int, out: int) -> int:
        if clock_id not in (0, 1):
            return WasiErrno.NOTSUP
        return _OK if self.mem.write_u64(out, 1) else _FAULT

    def random_get(self, buf: int, size: int) -> int:
        if size > MAX_RANDOM_BYTES:
            return WasiErrno.INVAL
        return _OK if self.mem.write(buf, self.rng.randbytes(size)) else _FAULT

    def sched_yield(self) -> int:
        return _OK

    def poll_oneoff(self, inp: int, out: int, count: int, nevents: int) -> int:
        return _OK if self.mem.write_u32(nevents, 0) else _FAULT

    def proc_exit(self, code: int) -> None:
        self.flush()
        raise GuestExit(f"the filter exited: proc_exit({code})", code)

    # -- the rest: fixed answers, as cpp-host gives ------------------------------

    def fd_prestat_get(self, fd: int, out: int) -> int:
        return WasiErrno.BADF

    def fd_filestat_get(self, fd: int, out: int) -> int:
        return WasiErrno.BADF

    def path_open(self, *args: int) -> int:
        return WasiErrno.NOENT

    def path_readlink(self, *args: int) -> int:
        self.mem.write_u32(args[5], 0)
        return WasiErrno.NOTSUP

    def fd_readdir(self, *args: int) -> int:
        return WasiErrno.NOTDIR

    def fd_renumber(self, *args: int) -> int:
        return WasiErrno.BADF

    def fd_advise(self, *args: int) -> int:
        return _OK


_NOSYS = {"fd_read", "fd_pread", "fd_prestat_dir_name", "fd_fdstat_set_flags"}
_STDIO_OK = {
    "fd_allocate",
    "fd_datasync",
    "fd_sync",
    "fd_fdstat_set_rights",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
}


def _default(name: str) -> HostFunction:
    if name in _NOSYS:
        code = int(WasiErrno.NOSYS)
    elif name.startswith(("sock_", "path_")):
        code = int(WasiErrno.NOTSUP)
    elif name in _STDIO_OK:

        def stdio_only(fd: int, *_: int) -> int:
            return _OK if fd in (1, 2) else WasiErrno.BADF

        return stdio_only
    else:
        code = int(WasiErrno.NOSYS)

    def fixed(*_: int) -> int:
        return code

    return fixed
