"""Summary frames: nullable integer statuses, the recorded status, the reason column."""

from __future__ import annotations

import pandas as pd

from tests.host.test_safety import TRAP_ON_BOOM
from tests.replay.test_run import ADD, FLOW
from wasmkit.diff import frames
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

DENY_AND_SAY = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_log (i32.const 3) (global.get $s_warn) (global.get $s_warn_len)))
      (drop (call $proxy_send_local_response (i32.const 403)
        (global.get $s_det) (global.get $s_det_len)
        (global.get $s_body) (global.get $s_body_len)
        (i32.const 0) (i32.const 0) (i32.const -1)))
      (i32.const 1))
    """,
    strings={
        "warn": "blocked by rule 942100 (SQL injection)",
        "det": "waf_rule_942100",
        "body": "forbidden\n",
    },
)


def test_statuses_are_nullable_integers():
    result = replay(ADD, FLOW)
    frame = frames.summary(result)
    for column in ("status_before", "status_after", "local_reply"):
        assert str(frame[column].dtype) == "Int64"
    assert frame["local_reply"].isna().all()
    assert frame.loc[0, "status_before"] == result.flows[0].exchange.response.status
    # the capture's flow without a response stays missing, not NaN-as-float
    missing = [f.index for f in result.flows if f.no_response]
    assert missing and all(frame.loc[i, "status_before"] is pd.NA for i in missing)
    assert frame["reason"].isna().all()


def test_local_reply_keeps_the_recorded_status_and_says_why():
    result = replay(DENY_AND_SAY, FLOW)
    frame = frames.summary(result)
    recorded = [f for f in result.flows if f.exchange.response is not None]
    assert recorded and len(recorded) < len(result.flows)
    for flow in result.flows:
        if flow.exchange.response is None:
            assert frame.loc[flow.index, "status_before"] is pd.NA
            continue
        row = frame.loc[flow.index]
        assert row["local_reply"] == 403
        assert row["status_after"] == 403
        assert row["status_before"] == flow.exchange.response.status
        assert row["reason"] == (
            "waf_rule_942100 — blocked by rule 942100 (SQL injection)"
        )


def test_failure_reason_is_kind_and_message_head():
    # fail_reload: each trapping flow traps in the filter itself.
    result = replay(
        TRAP_ON_BOOM, FLOW, failure_policy="fail_reload", reload_backoff_ms=2
    )
    frame = frames.summary(result)
    failed = [f.index for f in result.failed]
    assert failed
    for i in failed:
        reason = frame.loc[i, "reason"]
        assert reason.startswith("trap: proxy_on_")
        assert "\n" not in reason
