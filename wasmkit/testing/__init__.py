"""The unit-testing API: drive a filter callback by callback, snapshot replays.

* :class:`Driver` (:mod:`wasmkit.testing.driver`): make root, HTTP and TCP
  contexts and call any callback on them directly, as Envoy's own Wasm tests
  do; each call returns a :class:`CallResult` (Envoy's converted action,
  logs by level, trace, local reply, callouts, metrics). TCP contexts
  (:mod:`wasmkit.testing.tcp`) also take the network filter's entry points as
  Envoy makes them (``on_data``, ``on_write``, ``on_event``, ``finish``).
* :mod:`wasmkit.testing.snapshot`: a replay as a golden file without its
  volatile fields, checked with a per-flow, per-field diff; what
  ``ReplayResult.to_pytest`` and ``wasmkit replay --pytest`` write.
* :func:`filter_wat`: a complete filter module around hand-written WAT.
* Envoy's knobs: ``allowed_capabilities=`` (any VM), :class:`DispatchFailure`
  and :class:`InlineReply` (responder answers that make
  ``proxy_http_call`` fail), :class:`StreamInfo` (timing, details and flags
  the properties read), :meth:`HttpDriver.log` (the access log, also on a
  stream the filter never saw, complete or not).
* The pytest plugin (:mod:`wasmkit.testing.plugin`, loaded by entry point):
  fixtures ``wasmkit_filter``, ``wasmkit_driver``, ``wasmkit_capture`` and
  the ``--wasmkit-update`` option.
"""

from __future__ import annotations

from wasmkit.host.callouts import DispatchFailure, InlineReply, no_healthy_upstream
from wasmkit.host.properties import RESPONSE_FLAGS, StreamInfo
from wasmkit.testing._wat import DATA_BASE, HEAP_BASE, SCRATCH, filter_wat
from wasmkit.testing.driver import (
    CallResult,
    Driver,
    HeaderMap,
    HttpDriver,
    Logs,
    RootDriver,
    TcpDriver,
    built,
    headers,
)
from wasmkit.testing.snapshot import (
    SnapshotMismatch,
    check_replay,
    snapshot_records,
    write_pytest,
)

__all__ = [
    "CallResult",
    "DATA_BASE",
    "DispatchFailure",
    "Driver",
    "HEAP_BASE",
    "HeaderMap",
    "HttpDriver",
    "InlineReply",
    "Logs",
    "RESPONSE_FLAGS",
    "RootDriver",
    "SCRATCH",
    "SnapshotMismatch",
    "StreamInfo",
    "TcpDriver",
    "built",
    "check_replay",
    "filter_wat",
    "headers",
    "no_healthy_upstream",
    "snapshot_records",
    "write_pytest",
]
