"""One count everywhere: progress line, CLI footer, explorer, HTML report agree."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from wasmkit.replay.results import modified
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "samples" / "captures" / "api.flow"

# By the length of :path: 8 bytes (/chunked, /missing, /cookies) gets a local
# 403; 6 bytes (/error, /large) gets x-replayed; the rest, flow 12 (no
# upstream response, path "/") among them, passes untouched.
SOME = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (local $len i32)
      (drop (call $proxy_get_header_map_value (i32.const 0)
        (global.get $s_path) (global.get $s_path_len) (i32.const 512) (i32.const 516)))
      (local.set $len (i32.load (i32.const 516)))
      (if (i32.eq (local.get $len) (i32.const 8)) (then
        (drop (call $proxy_send_local_response (i32.const 403)
          (global.get $s_details) (global.get $s_details_len)
          (global.get $s_no) (global.get $s_no_len)
          (global.get $s_headers) (global.get $s_headers_len) (i32.const -1)))
        (return (i32.const 1))))
      (if (i32.eq (local.get $len) (i32.const 6)) (then
        (drop (call $proxy_add_header_map_value (i32.const 0)
          (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))))
      (i32.const 0))
    """,
    strings={
        "path": ":path",
        "details": "denied",
        "no": "no",
        "headers": b"\x00\x00\x00\x00",
        "k": "x-replayed",
        "v": "yes",
    },
)
# Adds a request header to every flow, the one without a response too.
EVERY = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-replayed", "v": "yes"},
)


def _html_status(html: str) -> str:
    found = re.search(r'class="status">([^<]*)<', html)
    assert found, html[:500]
    return found.group(1)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_the_categories_follow_one_definition():
    result = replay(SOME, FLOW)
    by_index = {f.index: f for f in result}
    rows = {r["index"]: r for r in result.summary_rows}
    totals = result.totals
    local = sorted(i for i, r in rows.items() if r["action"] == "local reply")
    assert local == [i for i, f in by_index.items() if f.result.local_reply]
    assert len(local) == totals.local_reply >= 3
    # The flow without a response: counted as such, not as the filter's change.
    quiet = [f for f in result if f.no_response]
    assert len(quiet) == totals.no_response == 1
    assert rows[quiet[0].index]["action"] == "no response"
    assert not modified(quiet[0]) and rows[quiet[0].index]["modified"] is False
    assert all(rows[i]["modified"] == modified(f) for i, f in by_index.items())
    assert totals.modified == sum(r["modified"] for r in rows.values())
    assert totals.modified == len(local) + sum(
        r["request_added"] > 0 for r in rows.values() if r["action"] == "forwarded"
    )
    assert totals.describe() == (
        f"{totals.modified} modified, 0 failed, {len(local)} local reply, 1 no response"
    )


def test_a_no_response_flow_the_filter_changed_is_modified():
    result = replay(EVERY, FLOW)
    (quiet,) = [f for f in result if f.no_response]
    assert modified(quiet)
    assert result.totals.modified == result.totals.flows == 17
    assert result.totals.no_response == 1
    assert result.totals.describe() == "17 modified, 0 failed, 1 no response"


def test_every_view_shows_the_same_counts(tmp_path, capsys):
    from wasmkit.notebook import formatters
    from wasmkit.notebook.explorer import ReplayExplorer

    # The progress line (a slow consumer keeps the replay over a second).
    result = replay(SOME, FLOW, on_flow=lambda flow: time.sleep(0.07), progress=True)
    counts = result.totals.describe()
    assert "local reply" in counts and "no response" in counts
    err = capsys.readouterr().err
    assert re.fullmatch(rf"replayed 17 flows in \d+\.\d s: {counts}\n", err), err
    # The explorer's status line, the notebook's text and the HTML summary.
    status = ReplayExplorer(result).status
    assert " · ".join(counts.split(", ")) in status
    assert f"17 flows, {counts}>" in formatters.text(result)
    assert _html_status(result._repr_html_()).endswith(f"17 flows, {counts}")
    # The CLI footer and the HTML report it writes.
    wat = tmp_path / "some.wat"
    wat.write_text(SOME)
    html = tmp_path / "report.html"
    proc = _cli("replay", str(wat), str(FLOW), "--html", str(html))
    assert proc.returncode == 0, proc.stderr
    footer = [line for line in proc.stdout.splitlines() if "flows replayed" in line]
    forwarded = result.totals.actions["forwarded"]
    assert footer == [
        f"17 flows replayed: {counts} ({forwarded} forwarded) through {wat}"
    ]
    assert _html_status(html.read_text()).endswith(f"17 flows, {counts}")


def test_compact_and_parallel_replays_count_the_same(tmp_path):
    full = replay(SOME, FLOW).totals
    for kwargs in ({"keep": "summary"}, {"keep": "changed"}, {"workers": 2}):
        other = replay(SOME, FLOW, **kwargs).totals
        assert other.describe() == full.describe(), kwargs
        assert (other.flows, other.modified, other.actions) == (
            full.flows,
            full.modified,
            full.actions,
        )


def test_the_flow_without_a_response_is_shown_as_counted():
    # The explorer's pages diff the response against the replay's stand-in
    # 503, as the summary counts it: the filter changed no response field.
    from wasmkit.notebook import flow_pages

    result = replay(EVERY, FLOW)
    (quiet,) = [f for f in result if f.no_response]
    row = quiet.summary()
    assert (row["response_added"], row["response_removed"]) == (0, 0)
    _, response = flow_pages.headers(quiet)
    assert "no header changed" in response
    assert "the 503 the replay stood in for it, not the filter&#x27;s" in response
    assert "every field is the filter" not in response
    assert not re.search(r"<td [^>]*class=\"data [^\"]*wk-added", response)
