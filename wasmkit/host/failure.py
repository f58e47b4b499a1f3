"""What happens after a filter fails: Envoy's failure policy.

Envoy 1.40's ``envoy.extensions.wasm.v3.PluginConfig.failure_policy``
(``source/extensions/common/wasm/plugin.cc``, ``PluginConfig``), measured
through a real Envoy 1.40 (``tests/envoy/test_policy.py``):

* ``fail_closed`` (the default, also when unset): the stream on which the
  filter trapped gets a 503 local reply with details ``wasm_fail_stream``
  (``content-length: 0``, no body); the VM stays failed, and every later
  stream gets the same 503 without the filter being called.
* ``fail_open``: the failing stream still gets the 503; later streams skip
  the filter (Envoy leaves it out of the filter chain).
* ``fail_reload``: the failing stream gets the 503; a later stream reloads
  the VM (a new instance: start-up and ``on_configure`` run again) when at
  least a backoff has passed since the VM was last loaded, else it gets the
  503 without the filter being called. Envoy draws each wait between
  ``reload_config.backoff.base_interval`` (default 1 s) and 1.5 times it
  (``JitteredLowerBoundBackOffStrategy``); wasmkit draws it from the VM's
  seed, on the virtual clock.
* The deprecated ``fail_open: true`` (``PluginConfig.fail_open`` here): the
  failing stream itself goes on without the filter, and so do later ones.
  Envoy refuses both fields set at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from wasmkit.errors import FilterTrapError

FailurePolicy = Literal["fail_closed", "fail_open", "fail_reload"]
"""Envoy's ``failure_policy`` values, in wasmkit's spelling."""

FAILURE_POLICIES: tuple[FailurePolicy, ...] = (
    "fail_closed",
    "fail_open",
    "fail_reload",
)

RELOAD_BACKOFF_MS = 1000
"""Envoy's default ``reload_config.backoff.base_interval`` (ms)."""

FAIL_DETAILS = "wasm_fail_stream"
"""The response code details of Envoy's 503 for a failed filter."""


def resolve_policy(
    failure_policy: str | None, fail_open: bool = False
) -> FailurePolicy:
    """The policy named by ``failure_policy`` and the legacy ``fail_open``.

    ``None`` is Envoy's ``UNSPECIFIED`` (``fail_closed``). Envoy's spelling
    (``FAIL_RELOAD``) and dashes are accepted.

    Raises:
        ValueError: an unknown name, or ``fail_open=True`` with a policy other
            than ``fail_open`` (Envoy: "only one of fail_open or
            failure_policy can be set").
    """
    if failure_policy is None:
        return "fail_open" if fail_open else "fail_closed"
    name = failure_policy.strip().lower().replace("-", "_")
    if name not in FAILURE_POLICIES:
        raise ValueError(
            f"failure_policy must be one of {', '.join(FAILURE_POLICIES)}, "
            f"not {failure_policy!r}"
        )
    if fail_open and name != "fail_open":
        raise ValueError(
            f"give fail_open=True or failure_policy={name!r}, not both (Envoy: "
            "only one of fail_open or failure_policy can be set)"
        )
    return name


@dataclass(slots=True)
class VmFailure:
    """When and where a VM failed, for the streams that come after."""

    error: FilterTrapError
    """The failure."""
    callback: str
    """The callback that failed."""
    context_id: int
    """The context it ran for."""
    flow: int | None = None
    """The replayed flow it failed on (``None``: not in a replay)."""

    def where(self) -> str:
        """``flow 3 (proxy_on_request_headers, trap)`` or the context's id."""
        at = (
            f"flow {self.flow}"
            if self.flow is not None
            else (f"context {self.context_id}")
        )
        return f"{at} ({self.callback or 'start-up'}: {self.error.kind})"

    def note(self, policy: FailurePolicy, *, reloading: bool = False) -> str:
        """The line a later stream of the failed VM carries."""
        if policy == "fail_open":
            return (
                f"the VM failed at {self.where()}: fail_open passes the stream "
                "without the filter"
            )
        text = (
            f"the VM failed at {self.where()}: {policy} answers 503 "
            f"({FAIL_DETAILS}) without calling the filter"
        )
        if reloading:
            text += " until the reload backoff has passed"
        return text

    def stream_error(
        self, policy: FailurePolicy, *, reloading: bool = False
    ) -> FilterTrapError:
        """The error a later stream answered with a 503 reports."""
        return FilterTrapError(
            self.note(policy, reloading=reloading),
            kind=self.error.kind,
            callback="",
            context_id=self.context_id,
            trap_code=self.error.trap_code,
        )


class ReloadBackoff:
    """Envoy's wait before reloading a failed VM (``fail_reload``).

    Each stream that finds the VM failed draws a wait in ``[base, 1.5 base)``
    ms, as Envoy's ``JitteredLowerBoundBackOffStrategy`` does; the VM is
    reloaded when the time since it was last loaded reaches it.

    Args:
        base_ms: ``reload_config.backoff.base_interval`` (ms, > 1).
        seed: the draws' seed (the VM's).
    """

    def __init__(self, base_ms: int = RELOAD_BACKOFF_MS, seed: int = 0) -> None:
        if base_ms <= 1:
            raise ValueError(f"reload backoff must be over 1 ms, not {base_ms}")
        self.base_ms = base_ms
        self._random = random.Random(seed)

    def due(self, since_load_ms: float) -> bool:
        """Whether a reload is due ``since_load_ms`` after the last load."""
        wait = self.base_ms + self._random.randrange(max(1, self.base_ms >> 1))
        return since_load_ms >= wait
