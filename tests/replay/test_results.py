"""Compact replays: which flows are kept in full, and totals over all of them."""

from __future__ import annotations

import pytest

from tests.host.test_safety import TRAP_ON_BOOM
from tests.host.test_stream import DENY
from tests.replay.test_run import ADD, FLOW
from wasmkit.host import load
from wasmkit.replay.engine import replay_all
from wasmkit.replay.report import render_summary
from wasmkit.replay.results import FlowCollector, modified
from wasmkit.replay.run import replay
from wasmkit.traffic import load_capture


def _counts(result):
    t = result.totals
    return (t.flows, t.modified, t.failed, dict(t.actions))


def test_totals_of_a_full_replay_agree_with_the_summary():
    for wat in (ADD, TRAP_ON_BOOM, DENY):
        result = replay(wat, FLOW)
        rows = result.summary_rows
        # render_summary's own count of modified flows
        summary = render_summary(result).splitlines()[-1 - len(result.failed)]
        assert f"{result.totals.modified} modified" in summary
        assert result.totals.flows == len(rows) == 17
        assert result.totals.failed == len(result.failed)
        assert result.totals.kept == 17
        assert sum(result.totals.actions.values()) == 17
        assert {r["action"] for r in rows} == set(result.totals.actions)


def test_keep_changed_keeps_the_flows_the_filter_changed():
    full = replay(TRAP_ON_BOOM, FLOW)
    changed = replay(TRAP_ON_BOOM, FLOW, keep="changed")
    expected = [f.index for f in full if modified(f)]
    # the failures; the flow without a response is not the filter's change
    failed = [f.index for f in full.failed]
    assert len(failed) >= 2 and expected == failed
    assert [f.index for f in changed] == expected
    assert changed.keep == "changed"
    assert _counts(changed) == _counts(full)
    assert changed.totals.kept == len(expected)
    assert f"{len(expected)} kept in full" in changed.totals.report()
    # kept flows are whole: their records match the full replay's
    by_index = {f.index: f.record() for f in full}
    for flow in changed:
        record = flow.record()
        assert record["error"] == by_index[flow.index]["error"]
        assert record["request"] == by_index[flow.index]["request"]


def test_keep_summary_keeps_failures_only_and_max_kept_caps():
    summary = replay(TRAP_ON_BOOM, FLOW, keep="summary")
    assert [f.index for f in summary] == [
        f.index for f in replay(TRAP_ON_BOOM, FLOW).failed
    ]
    assert summary.totals.failed == len(summary) and summary.totals.flows == 17
    capped = replay(ADD, FLOW, keep="changed", max_kept=2)
    assert [f.index for f in capped] == [0, 1]
    assert capped.totals.flows == capped.totals.modified == 17
    first = replay(ADD, FLOW, keep="all", max_kept=5)
    assert len(first) == 5 and first.totals.flows == 17


def test_on_flow_sees_every_flow_whatever_is_kept():
    seen: list[int] = []
    result = replay_all(
        load(ADD),
        list(load_capture(FLOW)),
        keep="summary",
        on_flow=lambda f: seen.append(f.index),
    )
    assert seen == list(range(17))
    assert len(result) == 0 and result.totals.flows == 17


def test_bad_keep_arguments():
    with pytest.raises(ValueError, match="keep must be one of"):
        FlowCollector("some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_kept"):
        FlowCollector("changed", -1)
