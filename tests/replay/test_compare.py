"""Two builds or two configurations over one capture, flow by flow."""

from __future__ import annotations

import pytest

import wasmkit
from tests.host.test_safety import TRAP_ON_BOOM
from tests.replay.test_run import ADD, FLOW
from wasmkit.replay.compare import COLUMNS, Comparison, compare_results
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ADD_NO = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-replayed", "v": "no"},
)

# Denies every request with a 403 when its plugin configuration is not empty.
DENY_IF_CONFIGURED = filter_wat(
    """(global $deny (mut i32) (i32.const 0))
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (global.set $deny (local.get 1)) (i32.const 1))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (if (global.get $deny) (then
        (drop (call $proxy_send_local_response (i32.const 403)
          (global.get $s_details) (global.get $s_details_len)
          (global.get $s_body) (global.get $s_body_len)
          (global.get $s_headers) (global.get $s_headers_len) (i32.const -1)))
        (return (i32.const 1))))
      (i32.const 0))""",
    strings={"details": "denied", "body": "no", "headers": b"\x00\x00\x00\x00"},
)


def test_same_filter_twice_differs_nowhere():
    result = wasmkit.compare(ADD, ADD, FLOW)
    assert isinstance(result, Comparison)
    assert len(result) == 17
    assert result.differing == []
    rows = result.rows
    assert [r["index"] for r in rows] == list(range(17))
    assert list(rows[0]) == COLUMNS
    assert rows[0]["method"] and rows[0]["path"].startswith("/")
    assert all(r["status_a"] == r["status_b"] for r in rows)
    assert all(r["request_headers"] == "" and not r["differs"] for r in rows)


def test_two_builds_show_the_changed_header_on_every_flow():
    result = wasmkit.compare(ADD, ADD_NO, FLOW, limit=5)
    assert len(result.differing) == 5
    flow = result.differing[0]
    assert [(c.name, c.before, c.after, c.change) for c in flow.request_headers] == [
        ("x-replayed", "yes", "no", "changed")
    ]
    assert flow.response_headers == []
    assert flow.row()["request_headers"] == "~ x-replayed: yes -> no"
    assert flow.action_a == flow.action_b == "forwarded"
    assert flow.local_reply == "" and flow.error == ""


def test_two_configurations_of_one_filter():
    result = wasmkit.compare(
        DENY_IF_CONFIGURED, DENY_IF_CONFIGURED, FLOW, config_a="", config_b="deny"
    )
    assert len(result.differing) == 17
    rows = result.rows
    assert {r["action_a"] for r in rows} == {"forwarded", "no response"}
    assert {r["action_b"] for r in rows} == {"local reply"}
    assert {r["status_b"] for r in rows} == {403}
    assert rows[0]["local_reply"] == "none -> 403 (denied)"
    assert rows[0]["status_a"] == 200
    # b held the request unchanged (its action says it never went upstream).
    assert rows[0]["request_headers"] == ""
    assert rows[0]["response_body"].endswith("(text)")


def test_failures_show_in_the_error_column():
    result = wasmkit.compare(ADD, TRAP_ON_BOOM, FLOW)
    failed = [f for f in result if f.action_b == "failed"]
    assert failed
    assert all(f.error.startswith("none -> ") and f.differs for f in failed)


def test_results_can_be_compared_directly_and_missing_flows_show():
    a = replay(ADD, FLOW)
    b = replay(ADD, FLOW, limit=3)
    result = wasmkit.compare(a, b)
    assert len(result) == 17
    assert [f.index for f in result.differing] == list(range(3, 17))
    assert result.flows[5].action_b == "missing" and result.flows[5].b is None
    assert compare_results(a, a).differing == []
    assert "17 flows, 14 differ" in repr(result)


def test_bad_arguments():
    a = replay(ADD, FLOW, limit=1)
    with pytest.raises(ValueError, match="two replay results or two filters"):
        wasmkit.compare(a, ADD, FLOW)
    with pytest.raises(ValueError, match="need a capture"):
        wasmkit.compare(ADD, ADD)
    with pytest.raises(ValueError, match="no capture or options"):
        wasmkit.compare(a, a, FLOW)


def test_frame():
    pytest.importorskip("pandas")
    result = wasmkit.compare(ADD, ADD_NO, FLOW, limit=4)
    frame = result.frame()
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 4
    assert frame["differs"].all()
    same = wasmkit.compare(ADD, ADD, FLOW, limit=4)
    assert len(same.frame(differing=True)) == 0
