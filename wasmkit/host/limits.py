"""Limits on what a filter VM may use: time per call, instructions, memory."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits applied to a filter VM.

    Time is limited per call into the guest by the CPU time of the thread
    running it (looked at every few milliseconds of wall-clock time by the
    epoch, and in host calls), so other work on a busy machine does not make a
    filter run out of time; unless ``fuel`` is given, which counts wasm
    instructions instead and so is deterministic. Start-up (instantiation,
    ``_initialize`` / ``_start``, ``proxy_on_vm_start``, ``proxy_on_configure``)
    has its own, larger limit: Envoy sets none there, and real filters (a WAF
    loading its rule set) take seconds to configure.
    """

    timeout_ms: int | None = 10_000
    """CPU-time limit of one stream or timer callback (ms); ``None``: none.
    Envoy has none; 10 s lets a WAF judge a large body on a busy machine (the
    WAF sample spends a few seconds on a 200 KB form) while a filter that
    never returns still ends, and with the default failure policy only once."""
    startup_timeout_ms: int | None = 60_000
    """CPU-time limit of each start-up call (ms); ``None``: none."""
    compile_timeout_ms: int | None = 600_000
    """Wall-clock limit of compiling the module (ms); ``None``: none."""
    fuel: int | None = None
    """Instructions one callback may run, instead of the time limit
    (start-up calls are not metered)."""
    memory_bytes: int | None = 1 << 30
    """Largest linear memory (bytes); growth beyond it fails. 1 GiB, as
    Envoy's (proxy-wasm-cpp-host's) default."""

    # What a filter makes the host keep. Past a quota marked "drop", what is
    # over is dropped and counted (a host note says how much); past the others
    # the callback ends with an error of kind ``quota`` naming the quota.
    # Per stream: counted from the stream's start (or, outside streams, since
    # the last stream ended).
    log_records: int = 500
    """Log records kept per stream (drop)."""
    log_bytes: int = 64 * 1024
    """Bytes of log messages kept per stream (drop; a longer message is cut)."""
    trace_events: int = 500
    """Trace events kept per stream (drop)."""
    header_map_bytes: int = 1 << 20
    """Bytes of one header map the filter builds (names + values)."""
    header_map_pairs: int = 10_000
    """Fields of one header map the filter builds."""
    property_bytes: int = 1 << 20
    """Bytes of properties the filter sets per stream."""
    shared_data_bytes: int = 64 << 20
    """Bytes of shared data (keys + values) across the host."""
    shared_data_keys: int = 100_000
    """Shared data keys across the host."""
    queue_bytes: int = 64 << 20
    """Bytes waiting in shared queues across the host."""
    queue_items: int = 100_000
    """Items waiting in one shared queue."""
    metrics: int = 10_000
    """Metrics the filter defines."""
    metric_name_bytes: int = 4096
    """Length of one metric name (bytes)."""
    callouts: int = 1000
    """HTTP and gRPC callouts in flight at once."""
    foreign_output_bytes: int = 64 << 20
    """Output of one foreign function (``uncompress``): past it, BAD_ARGUMENT."""
    table_elements: int = 1_000_000
    """Elements of a table (``table.grow`` beyond fails)."""
    ticks_per_gap: int = 1000
    """Ticks fired while virtual time jumps between two flows; later ones are
    coalesced, as a timer that was idle fires once (a note says how many)."""

    def __post_init__(self) -> None:
        for name in (
            "timeout_ms",
            "startup_timeout_ms",
            "compile_timeout_ms",
            "fuel",
            "memory_bytes",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Limits.{name} must be positive or None")
        for name in _QUOTAS:
            if getattr(self, name) < 0:
                raise ValueError(f"Limits.{name} must not be negative")

    def describe(self, *, startup: bool) -> str:
        """The limit a timed-out call ran into, and how to raise it."""
        if startup:
            return (
                f"the start-up limit of {self.startup_timeout_ms} ms "
                "(Limits.startup_timeout_ms; --start-timeout-ms on the command "
                "line and in %%wasm)"
            )
        if self.fuel is not None:
            return (
                f"its limit of {self.fuel} instructions (Limits.fuel; --fuel on "
                "the command line and in %%wasm)"
            )
        return (
            f"its limit of {self.timeout_ms} ms per callback (Limits.timeout_ms; "
            "--timeout-ms on the command line and in %%wasm)"
        )


_QUOTAS = (
    "log_records",
    "log_bytes",
    "trace_events",
    "header_map_bytes",
    "header_map_pairs",
    "property_bytes",
    "shared_data_bytes",
    "shared_data_keys",
    "queue_bytes",
    "queue_items",
    "metrics",
    "metric_name_bytes",
    "callouts",
    "foreign_output_bytes",
    "table_elements",
    "ticks_per_gap",
)
