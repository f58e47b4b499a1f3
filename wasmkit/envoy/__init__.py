"""The same replay through a real Envoy (``pip install wasmkit[envoy]``).

:func:`replay` runs captured traffic through Envoy with the filter and
returns the :class:`~wasmkit.replay.results.ReplayResult` the in-process
engine returns. The pieces, each started and stopped explicitly:
:class:`EnvoyProcess` (the process), :class:`UpstreamServer` and
:class:`CalloutServer` (the local servers behind it), :class:`EnvoyRunner`
(all of them, one exchange at a time); :func:`bootstrap` writes the config.
:func:`compare_envoy` (also ``wasmkit.compare`` of a wasmkit and an Envoy
replay, and ``ReplayResult.against_envoy()``) lists where the two differ, as
an :class:`EnvoyComparison`.
"""

from __future__ import annotations

from wasmkit.envoy.binary import envoy_version, find_envoy
from wasmkit.envoy.config import WasmFilterConfig, bootstrap
from wasmkit.envoy.differ import Difference, EnvoyComparison, compare_envoy
from wasmkit.envoy.process import EnvoyProcess, running_pids
from wasmkit.envoy.run import replay
from wasmkit.envoy.runner import EnvoyRunner
from wasmkit.envoy.servers import CalloutServer, UpstreamServer

__all__ = [
    "CalloutServer",
    "Difference",
    "EnvoyComparison",
    "EnvoyProcess",
    "EnvoyRunner",
    "UpstreamServer",
    "WasmFilterConfig",
    "bootstrap",
    "compare_envoy",
    "envoy_version",
    "find_envoy",
    "replay",
    "running_pids",
]
