"""Replay the sample captures through real filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.host.test_safety import TRAP_ON_BOOM
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parent.parent.parent
FLOW = ROOT / "samples" / "captures" / "api.flow"
HAR = ROOT / "samples" / "captures" / "api.har"

ADD = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-replayed", "v": "yes"},
)


@pytest.mark.parametrize("capture", [FLOW, HAR], ids=["flow", "har"])
def test_replay_sample_capture(capture):
    result = replay(ADD, capture)
    assert len(result) == 17
    rows = result.summary_rows
    assert all(r["request_added"] == 1 for r in rows)
    actions = [r["action"] for r in rows]
    # The flow to the closed port has no response: the request path ran.
    assert actions.count("no response") == 1
    assert actions.count("forwarded") == 16
    assert [r["status_before"] for r in rows][:4] == [200, 201, 200, 204]
    assert result.capture_error is None


def test_replay_keeps_results_when_the_filter_traps_on_some_flows():
    # TRAP_ON_BOOM traps when :path has 5 bytes: /form, /gzip and /large here.
    # fail_reload with a short backoff: each flow after a trap gets a new VM.
    result = replay(
        TRAP_ON_BOOM, FLOW, failure_policy="fail_reload", reload_backoff_ms=2
    )
    failed = [f.index for f in result.failed]
    paths = {f.index: f.result.request_before.get(b":path") for f in result}
    assert failed and all(len(paths[i]) == 5 for i in failed)
    assert len(result) == 17
    ok = [f for f in result if not f.failed]
    assert ok and all(f.result.response_after is not None for f in ok)


def test_replay_of_a_truncated_capture_keeps_what_came_before(tmp_path):
    data = FLOW.read_bytes()
    cut = tmp_path / "cut.flow"
    cut.write_bytes(data[: len(data) // 3])
    result = replay(ADD, cut)
    assert 0 < len(result) < 17
    assert result.capture_error is not None and "cut.flow" in result.capture_error


def test_replay_limit_and_filter_expression():
    assert len(replay(ADD, FLOW, limit=3)) == 3
    posts = replay(ADD, FLOW, filter_expr="~m POST")
    assert {f.result.request_before.get(b":method") for f in posts} == {b"POST"}


def test_cli_replay(tmp_path):
    import json
    import subprocess
    import sys

    wat = tmp_path / "add.wat"
    wat.write_text(ADD)
    out = tmp_path / "records.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", "replay", str(wat), str(FLOW), "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "17 flows replayed" in proc.stdout and "0 failed" in proc.stdout
    records = json.loads(out.read_text())
    assert [r["index"] for r in records] == list(range(17))
    assert ["x-replayed", "yes"] in records[0]["request"]["headers"]["after"]
    trap = tmp_path / "trap.wat"
    trap.write_text(TRAP_ON_BOOM)
    proc = subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", "replay", str(trap), str(FLOW), "--limit", "8"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1
    assert "failed" in proc.stdout and "[trap]" in proc.stdout


def test_cli_replay_keep_summary_streams_records_and_counts_every_flow(tmp_path):
    import json
    import subprocess
    import sys

    trap = tmp_path / "trap.wat"
    trap.write_text(TRAP_ON_BOOM)
    out = tmp_path / "records.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", "replay", str(trap), str(FLOW),
         "--keep", "summary", "--json", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    full = replay(TRAP_ON_BOOM, FLOW)
    failed = [f.index for f in full.failed]
    assert failed
    # Every flow's record streamed out, as the full replay's records.
    records = json.loads(out.read_text())
    assert [r["index"] for r in records] == list(range(17))
    assert [r["error"] is not None for r in records] == [
        f.failed for f in full.flows
    ]
    # The summary table lists the kept (failed) flows; the totals count all 17.
    assert proc.returncode == 1, proc.stderr
    assert f"17 flows replayed: {full.totals.modified} modified, {len(failed)} failed" in proc.stdout
    assert f"{len(failed)} kept in full" in proc.stdout
    table = [line.split()[0] for line in proc.stdout.splitlines()[1:] if line[:1].isdigit() and "flows replayed" not in line]
    assert table == [str(i) for i in failed]


def test_cli_replay_keep_refuses_exports_that_need_every_flow(tmp_path):
    import subprocess
    import sys

    wat = tmp_path / "add.wat"
    wat.write_text(ADD)
    proc = subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", "replay", str(wat), str(FLOW),
         "--keep", "changed", "--out", str(tmp_path / "x.flow")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1
    assert "--out need every flow" in proc.stderr
    assert not (tmp_path / "x.flow").exists()
