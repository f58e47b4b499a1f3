"""Metrics the filter defines: counters, gauges and histograms."""

from __future__ import annotations

from dataclasses import dataclass, field

from wasmkit.abi.constants import MetricType, WasmResult

PREFIX = "wasmcustom."
"""Envoy's namespace for user metrics."""


@dataclass(slots=True)
class Metric:
    """One metric."""

    id: int
    """The id the filter uses; its low two bits are the type (as in cpp-host)."""
    type: MetricType
    """Counter, gauge or histogram."""
    name: str
    """The name the filter gave."""
    value: int = 0
    """Current value (counters and gauges)."""
    samples: list[int] = field(default_factory=list)
    """Recorded values (histograms)."""


class Metrics:
    """The metrics of one VM."""

    def __init__(self) -> None:
        self._by_id: dict[int, Metric] = {}
        self._by_name: dict[tuple[MetricType, str], int] = {}
        # cpp-host numbers each type on its own: counters 4, 8, ...; gauges
        # 5, 9, ...; histograms 6, 10, ... (the low two bits are the type).
        self._next = {kind: 1 for kind in MetricType}

    def count(self) -> int:
        """How many metrics are defined."""
        return len(self._by_id)

    def known(self, metric_type: int, name: str) -> bool:
        """Whether a metric of this type and name is defined already."""
        if metric_type > MetricType.HISTOGRAM:
            return False
        return (MetricType(metric_type), name) in self._by_name

    def define(self, metric_type: int, name: str) -> int | None:
        """Define (or find) a metric; ``None`` for an unknown type."""
        if metric_type > MetricType.HISTOGRAM:
            return None
        kind = MetricType(metric_type)
        key = (kind, name)
        if key in self._by_name:
            return self._by_name[key]
        mid = (self._next[kind] << 2) | int(kind)
        self._next[kind] += 1
        self._by_id[mid] = Metric(mid, kind, name)
        self._by_name[key] = mid
        return mid

    def increment(self, mid: int, delta: int) -> WasmResult:
        """Add ``delta``: counters only upwards, histograms not at all."""
        metric = self._by_id.get(mid)
        if metric is None:
            return WasmResult.NOT_FOUND
        if metric.type is MetricType.HISTOGRAM:
            return WasmResult.BAD_ARGUMENT
        if metric.type is MetricType.COUNTER and delta <= 0:
            return WasmResult.BAD_ARGUMENT
        metric.value += delta
        return WasmResult.OK

    def record(self, mid: int, value: int) -> WasmResult:
        """Gauge: set; histogram: add a sample; counter: add (as Envoy does)."""
        metric = self._by_id.get(mid)
        if metric is None:
            return WasmResult.NOT_FOUND
        if metric.type is MetricType.GAUGE:
            metric.value = value
        elif metric.type is MetricType.HISTOGRAM:
            metric.samples.append(value)
        else:
            metric.value += value
        return WasmResult.OK

    def get(self, mid: int) -> int | WasmResult:
        """Value of a counter or gauge."""
        metric = self._by_id.get(mid)
        if metric is None:
            return WasmResult.NOT_FOUND
        if metric.type is MetricType.HISTOGRAM:
            return WasmResult.BAD_ARGUMENT
        return metric.value

    def all(self) -> list[Metric]:
        """Every metric, in definition order."""
        return list(self._by_id.values())

    def table(self) -> list[dict[str, object]]:
        """Rows for display: name (with Envoy's prefix), type, value, samples."""
        return [
            {
                "name": PREFIX + m.name,
                "type": m.type.name.lower(),
                "value": m.value if m.type is not MetricType.HISTOGRAM else None,
                "count": len(m.samples) if m.type is MetricType.HISTOGRAM else None,
                "samples": list(m.samples) if m.type is MetricType.HISTOGRAM else None,
            }
            for m in self._by_id.values()
        ]
