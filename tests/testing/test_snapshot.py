"""Replays as regression tests: the snapshot round trip, for real.

A test written by ``wasmkit replay --pytest`` (or ``ReplayResult.to_pytest``)
runs in a pytest subprocess: it passes, fails with a per-field diff once the
filter changes one line, and passes again after ``--update``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import wasmkit.replay.run
from wasmkit.testing import SnapshotMismatch, filter_wat, snapshot_records
from wasmkit.testing import snapshot as snap

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "samples" / "captures" / "api.flow"
WASMKIT = [sys.executable, "-m", "wasmkit.cli"]


def _filter(value: str) -> str:
    return filter_wat(
        """
(func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
  (drop (call $proxy_add_header_map_value (i32.const 2)
         (global.get $s_key) (global.get $s_key_len)
         (global.get $s_val) (global.get $s_val_len)))
  (drop (call $proxy_log (i32.const 2) (global.get $s_val) (global.get $s_val_len)))
  (i32.const 0))
""",
        strings={"key": "x-version", "val": value},
    )


def _pytest(test: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(test),
            *args,
        ],
        cwd=test.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _cli(*args: str):
    return subprocess.run(
        [*WASMKIT, *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_cli_round_trip_pass_fail_with_diff_update_pass(tmp_path):
    wat = tmp_path / "filter.wat"
    wat.write_text(_filter("one"))
    test = tmp_path / "test_api.py"
    done = _cli("replay", str(wat), str(CAPTURE), "--limit", "4", "--pytest", str(test))
    assert done.returncode == 0, done.stderr
    shot = tmp_path / "test_api.snapshot.json"
    assert test.exists() and shot.exists()
    assert "wrote" in done.stderr

    first = _pytest(test)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 passed" in first.stdout

    wat.write_text(_filter("two"))  # the filter changes one line
    second = _pytest(test)
    assert second.returncode == 1, second.stdout
    out = second.stdout
    assert (
        "the replay differs from test_api.snapshot.json: 12 changes in 4 flows" in out
    )
    assert "flow 0 GET http://" in out and "/api/items/1:" in out
    assert 'response.headers.after: x-version: "one" -> "two"' in out
    assert 'client_response.headers: x-version: "one" -> "two"' in out
    assert 'logs[0].message: "one" -> "two"' in out

    # Without --update the CLI will not overwrite the test.
    again = _cli(
        "replay", str(wat), str(CAPTURE), "--limit", "4", "--pytest", str(test)
    )
    assert again.returncode == 1
    assert "exists: pass --update to rewrite it" in again.stderr
    updated = _cli(
        "replay",
        str(wat),
        str(CAPTURE),
        "--limit",
        "4",
        "--pytest",
        str(test),
        "--update",
    )
    assert updated.returncode == 0, updated.stderr
    third = _pytest(test)
    assert third.returncode == 0, third.stdout
    assert json.loads(shot.read_text())["flows"][0]["logs"][0]["message"] == "two"


def test_to_pytest_and_the_pytest_update_flag(tmp_path):
    wat = tmp_path / "f.wat"
    wat.write_text(_filter("a"))
    result = wasmkit.replay.run.replay(
        str(wat), [str(CAPTURE)], limit=2, clusters=["auth"], progress=False
    )
    test, shot = result.to_pytest(tmp_path / "test_flows.py")
    assert shot == tmp_path / "test_flows.snapshot.json"
    text = test.read_text()
    assert '"clusters": [\n            "auth",' in text
    assert _pytest(test).returncode == 0

    wat.write_text(_filter("b"))
    failed = _pytest(test)
    assert failed.returncode == 1 and '"a" -> "b"' in failed.stdout
    assert _pytest(test, "--wasmkit-update").returncode == 0
    assert _pytest(test).returncode == 0

    wat.write_text(_filter("c"))
    assert _pytest(test, env={"WASMKIT_UPDATE": "1"}).returncode == 0
    assert _pytest(test).returncode == 0


def test_a_source_folder_is_rebuilt_through_the_build_cache(tmp_path):
    source = ROOT / "samples" / "filters" / "add_headers" / "rust"
    test = tmp_path / "test_rust.py"
    done = _cli(
        "replay",
        str(source),
        str(CAPTURE),
        "--limit",
        "2",
        "--config",
        '{"response": {"x-served-by": "wasmkit"}}',
        "--pytest",
        str(test),
    )
    assert done.returncode == 0, done.stderr
    text = test.read_text()
    assert '"source": "' in text and "add_headers/rust" in text
    assert "rebuilt from source through the build cache" in text
    shot = json.loads(test.with_suffix(".snapshot.json").read_text())
    assert ["x-served-by", "wasmkit"] in shot["flows"][0]["response"]["headers"][
        "after"
    ]
    run = _pytest(test)
    assert run.returncode == 0, run.stdout + run.stderr


def test_snapshots_leave_out_volatile_fields(tmp_path):
    wat = tmp_path / "f.wat"
    wat.write_text(_filter("v"))
    result = wasmkit.replay.run.replay(
        str(wat), [str(CAPTURE)], limit=2, progress=False
    )
    data = snapshot_records(result)
    text = snap.dumps(data)
    assert '"trace"' not in text and "duration_us" not in text and '"us"' not in text
    with_trace = snapshot_records(result, trace=True)
    trace = with_trace["flows"][0]["trace"]
    assert trace and all("duration_us" not in event for event in trace)
    # Stable: the same replay gives the same text.
    again = wasmkit.replay.run.replay(str(wat), [str(CAPTURE)], limit=2, progress=False)
    assert snap.dumps(snapshot_records(again)) == text
    assert ' ["x-version", "v"]' in text  # a header field is one line


def test_check_reports_each_field_and_missing_snapshots(tmp_path):
    wat = tmp_path / "f.wat"
    wat.write_text(_filter("x"))
    result = wasmkit.replay.run.replay(
        str(wat), [str(CAPTURE)], limit=3, progress=False
    )
    shot = tmp_path / "s.json"
    with pytest.raises(SnapshotMismatch, match="no snapshot"):
        snap.check(result, shot)
    snap.check(result, shot, update=True)
    snap.check(result, shot)
    data = json.loads(shot.read_text())
    data["flows"][1]["response"]["status"]["after"] = 500
    data["flows"][1]["response"]["headers"]["after"].append(["x-old", "1"])
    del data["flows"][2]
    data["metrics"]["wasmcustom.n"] = 1
    shot.write_text(json.dumps(data))
    with pytest.raises(SnapshotMismatch) as info:
        snap.check(result, shot)
    changes = info.value.changes
    assert any(c.endswith("response.status.after: 500 -> 201") for c in changes)
    assert any(
        c.endswith('response.headers.after: x-old removed (was "1")') for c in changes
    )
    assert any(
        c.startswith("flow 2 PUT") and c.endswith("not in the snapshot")
        for c in changes
    )
    assert "replay: metrics.wasmcustom.n: gone (was 1)" in changes


def test_what_cannot_be_written_into_a_test(tmp_path):
    wat = tmp_path / "f.wat"
    wat.write_text(_filter("r"))
    result = wasmkit.replay.run.replay(
        str(wat), [str(CAPTURE)], limit=1, responder=lambda call: None, progress=False
    )
    with pytest.raises(ValueError, match="callouts=FILE"):
        result.to_pytest(tmp_path / "test_r.py")
    parallel = wasmkit.replay.run.replay(
        str(wat), [str(CAPTURE)], limit=2, workers=2, balance="even", progress=False
    )
    with pytest.raises(ValueError, match="workers=1"):
        parallel.to_pytest(tmp_path / "test_p.py")
    bad = _cli("replay", str(wat), str(CAPTURE), "--update")
    assert bad.returncode == 1 and "--update goes with --pytest" in bad.stderr


def test_wat_text_is_kept_beside_the_test(tmp_path):
    result = wasmkit.replay.run.replay(
        _filter("inline"), [str(CAPTURE)], limit=1, progress=False
    )
    test, _ = result.to_pytest(tmp_path / "test_inline.py")
    kept = list(tmp_path.glob("filter-*.wat"))
    assert len(kept) == 1 and kept[0].read_text() == _filter("inline")
    assert _pytest(test).returncode == 0


def test_plugin_fixtures(wasmkit_driver, wasmkit_filter, wasmkit_capture):
    exchanges = wasmkit_capture(CAPTURE, limit=2)
    assert len(exchanges) == 2
    plugin = wasmkit_filter(_filter("p"))
    assert plugin.run_http(exchanges[0].to_request_message()).ok
    source = ROOT / "samples" / "filters" / "add_headers" / "rust"
    d = wasmkit_driver(source, config='{"request": {"x-a": "1"}}')
    http = d.http()
    assert http.on_request_headers({":path": "/"}).action == "Continue"
    assert http.request_headers["x-a"] == "1"


def test_callouts_table_travels_with_the_test(tmp_path):
    table = tmp_path / "auth.json"
    table.write_text(json.dumps({"auth": {"status": 200}}))
    test = tmp_path / "test_auth.py"
    done = _cli(
        "replay",
        str(ROOT / "build" / "samples" / "auth_callout.rust.wasm"),
        str(CAPTURE),
        "--limit",
        "2",
        "--config",
        '{"cluster": "auth", "path": "/check"}',
        "--callouts",
        str(table),
        "--pytest",
        str(test),
    )
    assert done.returncode == 0, done.stderr
    assert '"callouts": "auth.json"' in test.read_text()
    shot = json.loads(test.with_suffix(".snapshot.json").read_text())
    assert [c["outcome"] for c in shot["callouts"]] == ["response", "response"]
    assert _pytest(test).returncode == 0
    table.write_text(json.dumps({"auth": {"status": 403}}))  # the answer changes
    failed = _pytest(test)
    assert failed.returncode == 1
    out = failed.stdout
    assert "callouts[0].status: 200 -> 403" in out
    assert 'logs[0].message: "auth_callout: allowed" -> "auth_callout: denied' in out
    assert "\nE       replay:\n" in out  # the replay's own callout list too
