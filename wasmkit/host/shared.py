"""State shared between VMs of one host: key-value data with CAS, and queues.

As in Envoy, both are process-wide and partitioned by VM id: every VM with the
same ``vm_id`` sees the same data and queues.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wasmkit.abi.constants import WasmResult
from wasmkit.host import quotas
from wasmkit.host.limits import Limits
from wasmkit.host.vm import GuestExit


@dataclass(slots=True)
class _Queue:
    vm_id: str
    name: str
    items: deque[bytes] = field(default_factory=deque)
    # Called with the queue id when an item arrives (the owner's on_queue_ready).
    notify: Callable[[int], None] | None = None


class SharedState:
    """Shared data and shared queues of one host (all its VMs)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, bytes], tuple[bytes, int]] = {}
        self._cas = 0
        self._queues: dict[int, _Queue] = {}
        self._queue_ids: dict[tuple[str, bytes], int] = {}
        self.data_bytes = 0
        """Bytes of keys and values stored (``Limits.shared_data_bytes``)."""
        self.queued_bytes = 0
        """Bytes waiting in queues (``Limits.queue_bytes``)."""

    # -- key-value data --------------------------------------------------------

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        """``(value, cas)`` of ``key``, or ``None`` if absent."""
        return self._data.get((vm_id, key))

    def set(self, vm_id: str, key: bytes, value: bytes, cas: int) -> WasmResult:
        """Store ``value``; a non-zero ``cas`` must match a stored entry's.

        As in cpp-host, the CAS is checked only against an existing entry: a
        first write with any CAS succeeds.
        """
        current = self._data.get((vm_id, key))
        if cas and current is not None and current[1] != cas:
            return WasmResult.CAS_MISMATCH
        self._cas += 1
        if current is not None:
            self.data_bytes -= len(key) + len(current[0])
        self.data_bytes += len(key) + len(value)
        self._data[(vm_id, key)] = (value, self._cas)
        return WasmResult.OK

    def over_quota(
        self, vm_id: str, key: bytes, value: bytes, limits: Limits
    ) -> GuestExit | None:
        """The quota error storing ``key`` would cause, if any."""
        current = self._data.get((vm_id, key))
        if current is None and len(self._data) >= limits.shared_data_keys:
            return quotas.exceeded(
                "shared data keys",
                len(self._data) + 1,
                "shared_data_keys",
                limits.shared_data_keys,
            )
        after = self.data_bytes + len(key) + len(value)
        if current is not None:
            after -= len(key) + len(current[0])
        if after > limits.shared_data_bytes:
            return quotas.exceeded(
                "shared data bytes",
                after,
                "shared_data_bytes",
                limits.shared_data_bytes,
            )
        return None

    def items(self, vm_id: str | None = None) -> dict[str, bytes]:
        """Every key and value (of one VM id, or all as ``vm_id/key``)."""
        return {
            (k.decode("utf-8", "replace") if vm_id is not None else f"{v}/{k!r}"): val
            for (v, k), (val, _) in self._data.items()
            if vm_id is None or v == vm_id
        }

    # -- queues -------------------------------------------------------------------

    def register_queue(
        self, vm_id: str, name: bytes, notify: Callable[[int], None]
    ) -> int:
        """Create or re-open queue ``(vm_id, name)``; its arrivals call ``notify``."""
        key = (vm_id, name)
        qid = self._queue_ids.get(key)
        if qid is None:
            qid = len(self._queues) + 1
            self._queue_ids[key] = qid
            self._queues[qid] = _Queue(vm_id, name.decode("utf-8", "replace"))
        self._queues[qid].notify = notify
        return qid

    def resolve_queue(self, vm_id: str, name: bytes) -> int | None:
        """The id of an existing queue, or ``None``."""
        return self._queue_ids.get((vm_id, name))

    def enqueue(self, qid: int, value: bytes) -> WasmResult:
        """Append to a queue and tell its owner."""
        queue = self._queues.get(qid)
        if queue is None:
            return WasmResult.NOT_FOUND
        queue.items.append(value)
        self.queued_bytes += len(value)
        if queue.notify is not None:
            queue.notify(qid)
        return WasmResult.OK

    def dequeue(self, qid: int) -> bytes | WasmResult:
        """Pop the oldest item, or ``NOT_FOUND`` / ``EMPTY``."""
        queue = self._queues.get(qid)
        if queue is None:
            return WasmResult.NOT_FOUND
        if not queue.items:
            return WasmResult.EMPTY
        item = queue.items.popleft()
        self.queued_bytes -= len(item)
        return item

    def queue_over_quota(
        self, qid: int, value: bytes, limits: Limits
    ) -> GuestExit | None:
        """The quota error enqueueing ``value`` would cause, if any."""
        queue = self._queues.get(qid)
        if queue is None:
            return None  # NOT_FOUND follows
        if len(queue.items) >= limits.queue_items:
            return quotas.exceeded(
                f"items in shared queue {queue.name!r}",
                len(queue.items) + 1,
                "queue_items",
                limits.queue_items,
            )
        if self.queued_bytes + len(value) > limits.queue_bytes:
            return quotas.exceeded(
                "shared queue bytes",
                self.queued_bytes + len(value),
                "queue_bytes",
                limits.queue_bytes,
            )
        return None

    def queue_sizes(self) -> dict[str, int]:
        """Items waiting per queue, keyed ``vm_id/name``."""
        return {f"{q.vm_id}/{q.name}": len(q.items) for q in self._queues.values()}
