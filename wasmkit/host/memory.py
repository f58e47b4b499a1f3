"""Bounds-checked access to guest linear memory.

Every read and write checks ``ptr + size`` against the memory's size. The
address never changes (the engine reserves a 32-bit memory's whole range), so
an access is first checked against the size last seen
(``WasmtimeVm.memory_seen``, no call into wasmtime); only when that check fails
is the current size asked for (``WasmtimeVm.memory_region``: the guest may have
grown its memory since), and the access refused if it still does not fit.
Out-of-range accesses return ``None`` / ``False`` so host functions can answer
``INVALID_MEMORY_ACCESS`` instead of raising.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable

_U32_MAX = 0xFFFFFFFF


class GuestMemory:
    """The linear memory of one VM, plus copy-out through the guest allocator.

    Args:
        region: returns the memory's address and size (bytes), e.g.
            ``WasmVm.memory_region``.
        allocate: calls the guest allocator; returns a guest pointer, 0 on failure.
    """

    def __init__(
        self,
        region: Callable[[], tuple[int, int]],
        allocate: Callable[[int], int],
        seen: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self._region = region
        self._seen = seen or region
        self._allocate = allocate

    def bind(
        self,
        region: Callable[[], tuple[int, int]],
        seen: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """Read the memory's place from ``region`` from now on.

        ``seen``: the address and the size last seen, which may be smaller
        than the current one (accesses beyond it ask ``region``).
        """
        self._region = region
        self._seen = seen or region

    def size(self) -> int:
        """Current size of linear memory (bytes)."""
        return self._region()[1]

    def read(self, ptr: int, size: int) -> bytes | None:
        """``size`` bytes at ``ptr``, or ``None`` if out of range."""
        if size == 0:
            return b""
        base, limit = self._seen()
        if ptr + size > limit or ptr < 0 or size < 0:
            base, limit = self._region()
            if ptr + size > limit or ptr < 0 or size < 0:
                return None
        return ctypes.string_at(base + ptr, size)

    def write(self, ptr: int, data: bytes) -> bool:
        """Write ``data`` at ``ptr``; ``False`` if out of range."""
        size = len(data)
        if size == 0:
            return True
        base, limit = self._seen()
        if ptr + size > limit or ptr < 0:
            base, limit = self._region()
            if ptr + size > limit or ptr < 0:
                return False
        ctypes.memmove(base + ptr, data, size)
        return True

    def read_u32(self, ptr: int) -> int | None:
        """Little-endian u32 at ``ptr``, or ``None`` if out of range."""
        raw = self.read(ptr, 4)
        return None if raw is None else int.from_bytes(raw, "little")

    def write_u32(self, ptr: int, value: int) -> bool:
        """Write a little-endian u32; ``False`` if out of range."""
        return self.write(ptr, struct.pack("<I", value & _U32_MAX))

    def write_u64(self, ptr: int, value: int) -> bool:
        """Write a little-endian u64; ``False`` if out of range."""
        return self.write(ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def writable(self, ptr: int, size: int) -> bool:
        """Whether ``size`` bytes at ``ptr`` are inside memory."""
        return ptr >= 0 and (
            ptr + size <= self._seen()[1] or ptr + size <= self._region()[1]
        )

    def copy_out(self, data: bytes, ret_ptr: int, ret_size: int | None) -> bool:
        """Copy ``data`` into fresh guest memory and return pointer and size.

        The pointer goes to ``ret_ptr`` and the size to ``ret_size`` (skipped
        when ``None``). Empty data writes ``0, 0`` without calling the
        allocator, as cpp-host does (some SDK allocators reject size 0).

        Returns:
            ``False`` if an out-pointer is out of range or allocation failed.
        """
        size = len(data)
        if not self.writable(ret_ptr, 4) or (
            ret_size is not None and not self.writable(ret_size, 4)
        ):
            return False
        addr = 0
        if size:
            addr = self._allocate(size)
            if addr == 0 or not self.write(addr, data):
                return False
        self.write_u32(ret_ptr, addr)
        if ret_size is not None:
            self.write_u32(ret_size, size)
        return True
