"""What driver calls give back: call results, log lists, live header maps."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from wasmkit.abi.constants import LogLevel, StreamType
from wasmkit.errors import FilterTrapError
from wasmkit.host.callouts import Callout
from wasmkit.host.context import LogRecord, TraceEvent
from wasmkit.host.message import (
    HeaderInput,
    HeaderPairs,
    LocalReply,
    normalize_headers,
)
from wasmkit.host.plugin import FilterVm


class Logs(list[LogRecord]):
    """Log records, with the texts of each level as attributes.

    ``logs.info`` is the list of info messages, ``logs.warn`` the warnings
    ..., so a test reads ``assert r.logs.warn == ["quota reached"]``.
    """

    def at(self, level: LogLevel | str) -> list[str]:
        """The messages logged at exactly ``level``."""
        want = LogLevel[level.upper()] if isinstance(level, str) else level
        return [r.message for r in self if r.level == want]

    @property
    def messages(self) -> list[str]:
        """Every message, in order."""
        return [r.message for r in self]

    @property
    def trace(self) -> list[str]:
        """Trace-level messages."""
        return self.at(LogLevel.TRACE)

    @property
    def debug(self) -> list[str]:
        """Debug messages."""
        return self.at(LogLevel.DEBUG)

    @property
    def info(self) -> list[str]:
        """Info messages."""
        return self.at(LogLevel.INFO)

    @property
    def warn(self) -> list[str]:
        """Warnings."""
        return self.at(LogLevel.WARN)

    @property
    def error(self) -> list[str]:
        """Error messages."""
        return self.at(LogLevel.ERROR)

    @property
    def critical(self) -> list[str]:
        """Critical messages."""
        return self.at(LogLevel.CRITICAL)


class HeaderMap:
    """A live view of a header map the filter reads and edits.

    Names are matched case-insensitively; values are ``str`` (bytes decoded
    with ``surrogateescape``). ``map[name]`` is the first value (KeyError if
    none), :meth:`get_all` every value. Compares equal to a mapping of the
    same fields or to the same list of pairs (in order).
    """

    def __init__(self, items: HeaderPairs) -> None:
        self._items = items

    @staticmethod
    def _key(name: str | bytes) -> bytes:
        raw = (
            name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")
        )
        return raw.lower()

    @staticmethod
    def _text(value: bytes) -> str:
        return value.decode("utf-8", "surrogateescape")

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = self._key(name)
        for k, v in self._items:
            if k == key:
                return self._text(v)
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = self._key(name)
        return [self._text(v) for k, v in self._items if k == key]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        key = self._key(name)
        kept = [(k, v) for k, v in self._items if k != key]
        kept.append((key, value.encode("utf-8", "surrogateescape")))
        self._items[:] = kept

    def __delitem__(self, name: str) -> None:
        key = self._key(name)
        if not any(k == key for k, _ in self._items):
            raise KeyError(name)
        self._items[:] = [(k, v) for k, v in self._items if k != key]

    def add(self, name: str, value: str) -> None:
        """Append a field (keeping the others of that name)."""
        self._items.append((self._key(name), value.encode("utf-8", "surrogateescape")))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str | bytes) and any(
            k == self._key(name) for k, _ in self._items
        )

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._text(k) for k, _ in self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        """Every field as ``(name, value)``, in order, repeats kept."""
        return [(self._text(k), self._text(v)) for k, v in self._items]

    def pairs(self) -> HeaderPairs:
        """A copy of the raw ``(bytes, bytes)`` pairs."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HeaderMap):
            return self._items == other._items
        if isinstance(other, Mapping):
            mine: dict[str, str] = {}
            for k, v in self.items():
                mine.setdefault(k, v)
            return len(mine) == len(self._items) and mine == {
                str(k).lower(): str(v) for k, v in other.items()
            }
        if isinstance(other, list | tuple):
            try:
                return self._items == normalize_headers(other)
            except (TypeError, ValueError, AttributeError):
                return False
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HeaderMap({self.items()!r})"


Headers: TypeAlias = Mapping[str, str] | HeaderInput | HeaderMap
"""A header map as given to the driver: a mapping or ``(name, value)`` pairs."""


def to_pairs(headers: Headers) -> HeaderPairs:
    """Header pairs (names lower-cased) from any form the driver takes."""
    if isinstance(headers, HeaderMap):
        return headers.pairs()
    if isinstance(headers, Mapping):
        return normalize_headers(headers.items())
    return normalize_headers(headers)


def to_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


@dataclass(slots=True)
class CallResult:
    """What one callback did."""

    callback: str
    """The export called, e.g. ``proxy_on_request_headers``."""
    context_id: int
    """The context it was called for."""
    value: int | None
    """What the callback returned (``None``: not exported, not called, or it
    failed)."""
    action: str | None
    """The return as Envoy converts it: ``Continue``, ``StopIteration``,
    ``StopAllIterationAndWatermark``, ``StopIterationAndBuffer``,
    ``StopIterationNoBuffer`` ... for stream callbacks (a local reply sent in
    the call stops iteration; a failed VM gives Envoy's ``CHECK_FAIL``
    status); ``None`` for callbacks without one (root, log, done...)."""
    logs: Logs
    """Log records of this call (and of the deliveries that followed it)."""
    trace: list[TraceEvent]
    """Callbacks and host calls of this call."""
    error: FilterTrapError | None = None
    """The failure, if the filter failed here (or the VM had failed before)."""
    local_reply: LocalReply | None = None
    """The local reply the filter sent in this call, if any."""
    callouts: list[Callout] = field(default_factory=list)
    """HTTP callouts the filter made in this call."""
    continued: list[StreamType] = field(default_factory=list)
    """Streams the filter resumed (``proxy_continue_stream``) in this call, on
    any context of the driver (a callout reply resumes a stream)."""
    closed: list[StreamType] = field(default_factory=list)
    """Streams the filter closed (``proxy_close_stream``) in this call."""
    notes: list[str] = field(default_factory=list)
    """Host remarks (unknown clusters, dropped records, failure handling)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The VM's metrics after the call: name (with Envoy's ``wasmcustom.``
    prefix) to value (a histogram: its samples)."""

    @property
    def ok(self) -> bool:
        """The filter did not fail."""
        return self.error is None

    @property
    def called(self) -> bool:
        """The callback ran (the module exports it and the VM was usable)."""
        return (
            any(
                t.kind == "callback" and t.name == self.callback and t.depth == 0
                for t in self.trace
            )
            or self.value is not None
        )

    def host_calls(self, name: str | None = None) -> list[TraceEvent]:
        """The host calls made (named ``name``, with or without ``proxy_``)."""
        calls = [t for t in self.trace if t.kind == "hostcall"]
        if name is None:
            return calls
        full = name if name.startswith(("proxy_", "fd_", "clock_")) else "proxy_" + name
        return [t for t in calls if t.name in (name, full)]


def metrics_by_name(vm: FilterVm) -> dict[str, Any]:
    """The VM's metrics by name (with Envoy's prefix); histograms: samples."""
    return {
        str(m["name"]): m["samples"] if m["type"] == "histogram" else m["value"]
        for m in vm.metrics.table()
    }


def headers(items: Iterable[tuple[str, str]] | Mapping[str, str]) -> HeaderMap:
    """A free-standing :class:`HeaderMap` (to compare against, or to pass)."""
    return HeaderMap(to_pairs(items))
