"""A proxy process: several filter VMs sharing a clock, shared data and queues."""

from __future__ import annotations

import os
from typing import Any

from wasmkit.host.plugin import FilterVm, VirtualClock
from wasmkit.host.scheduler import Scheduler
from wasmkit.host.shared import SharedState
from wasmkit.host.vm import CompiledModule


class Proxy:
    """What one Envoy process holds: VMs that share time and shared state.

    Shared data and queues are partitioned by VM id, as in Envoy; ticks,
    callout replies and queue notifications of every VM fire in time order on
    one virtual clock.

    Args:
        clock: the clock (a new one by default).
    """

    def __init__(self, clock: VirtualClock | None = None) -> None:
        self.clock = clock or VirtualClock()
        self.shared = SharedState()
        self.scheduler = Scheduler(self.clock)
        self.vms: list[FilterVm] = []

    def add_vm(
        self, module: CompiledModule | bytes | str | os.PathLike[str], **options: Any
    ) -> FilterVm:
        """Start a VM in this proxy; ``options`` as for :class:`FilterVm`."""
        for name in ("clock", "shared", "scheduler"):
            if name in options:
                raise TypeError(f"{name} is the proxy's; do not pass it")
        vm = FilterVm(
            module,
            clock=self.clock,
            shared=self.shared,
            scheduler=self.scheduler,
            **options,
        )
        self.vms.append(vm)
        return vm

    def advance(self, ms: float) -> None:
        """Let ``ms`` milliseconds pass for every VM, firing what falls due."""
        if ms < 0:
            raise ValueError("time cannot go backwards")
        self.scheduler.advance_to(self.clock.now_ns() + int(ms * 1_000_000))

    def close(self) -> None:
        """Close every VM."""
        for vm in self.vms:
            vm.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
