"""Hostile filters: what they make the host keep is capped, deadlines hold in host calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.traffic.helpers import http_flow, write_flows
from wasmkit.host import FilterVm, Limits, PluginConfig, load, request, response
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parents[2]


def _forever(body: str) -> str:
    """A request callback that runs ``body`` in an endless loop."""
    return f"""(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (loop $l {body} (br $l)) (i32.const 0))"""


def _timed(plugin, **kw):
    started = time.monotonic()
    result = plugin.run_http(request(), response(), **kw)
    return result, time.monotonic() - started


LOG_FLOOD = filter_wat(
    _forever("(drop (call $proxy_log (i32.const 3) (i32.const 0) (i32.const 65536)))"),
    memory_pages=4,
)


def test_a_log_flood_keeps_the_first_records_and_counts_the_rest():
    plugin = load(LOG_FLOOD, limits=Limits(timeout_ms=300))
    result, took = _timed(plugin)
    assert result.error is not None and result.error.kind == "timeout"
    assert took < 10
    kept = [r for r in result.logs if r.source == "proxy_log"]
    limits = Limits()
    assert sum(len(r.message) for r in kept) <= limits.log_bytes + 100
    assert len(kept) <= limits.log_records
    assert any("log records and" in n and "dropped" in n for n in result.notes)
    # the next stream has a budget again and works
    quiet = load(filter_wat(""), limits=Limits(timeout_ms=300))
    assert quiet.run_http(request(), response()).error is None


def test_a_loop_of_cheap_host_calls_is_stopped_at_the_deadline():
    # proxy_log below the log level returns at once: wasm spends its time in
    # the host, where the epoch cannot interrupt it.
    wat = filter_wat(
        _forever("(drop (call $proxy_log (i32.const 0) (i32.const 0) (i32.const 8)))")
    )
    plugin = load(wat, limits=Limits(timeout_ms=200), log_level="info")
    result, took = _timed(plugin)
    assert result.error is not None and result.error.kind == "timeout"
    assert "200 ms per callback" in str(result.error)
    assert took < 5


def test_a_flood_of_writes_without_newlines_is_linear_and_bounded():
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (i32.store (i32.const 600) (i32.const 65536))
          (i32.store (i32.const 604) (i32.const 1048576))
          (loop $l
            (drop (call $wasi_fd_write (i32.const 1) (i32.const 600) (i32.const 1)
                    (i32.const 608)))
            (br $l))
          (i32.const 0))""",
        wasi=True,
        memory_pages=20,
    )
    plugin = load(wat, limits=Limits(timeout_ms=500))
    result, took = _timed(plugin)
    assert result.error is not None and result.error.kind == "timeout"
    assert took < 10
    assert sum(len(r.message) for r in result.logs) <= Limits().log_bytes + 200


ADD_FOREVER = filter_wat(
    _forever(
        """(drop (call $proxy_add_header_map_value (i32.const 0)
             (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))"""
    ),
    strings={"k": "x-flood", "v": "v" * 100},
)


def test_a_header_flood_ends_the_callback_with_a_quota_error():
    plugin = load(ADD_FOREVER, limits=Limits(header_map_pairs=5000))
    result, took = _timed(plugin)
    assert result.error is not None and result.error.kind == "quota"
    assert "Limits.header_map_pairs (5,000)" in str(result.error)
    assert took < 10
    assert result.response_after is not None and result.response_after.status == 503
    again, _ = _timed(plugin)  # a fresh VM, same error, host still fine
    assert again.error is not None and again.error.kind == "quota"


def test_huge_header_values_hit_the_byte_quota():
    wat = filter_wat(
        _forever(
            """(drop (call $proxy_add_header_map_value (i32.const 0)
                 (global.get $s_k) (global.get $s_k_len) (i32.const 0) (i32.const 60000)))"""
        ),
        strings={"k": "x-big"},
    )
    result, _ = _timed(load(wat))
    assert result.error is not None and result.error.kind == "quota"
    assert "Limits.header_map_bytes" in str(result.error)


def test_set_header_map_pairs_of_200_mb_is_refused_before_any_copy():
    wat = filter_wat(
        _forever(
            "(drop (call $proxy_set_header_map_pairs (i32.const 0) (i32.const 0) "
            "(i32.const 209715200)))"
        ),
        memory_pages=3300,
    )
    plugin = load(wat, limits=Limits(timeout_ms=2000))
    result, took = _timed(plugin)
    assert result.error is not None and result.error.kind == "quota"
    assert took < 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            "(drop (call $proxy_set_property (global.get $s_p) (global.get $s_p_len)"
            " (i32.const 0) (i32.const 65536)))",
            "property_bytes",
        ),
        (
            "(global.set $n (i32.add (global.get $n) (i32.const 1)))"
            "(i32.store (i32.const 0) (global.get $n))"
            "(drop (call $proxy_set_shared_data (i32.const 0) (i32.const 65536)"
            " (i32.const 0) (i32.const 65536) (i32.const 0)))",
            "shared_data_bytes",
        ),
        (
            "(drop (call $proxy_enqueue_shared_queue (global.get $q) (i32.const 0)"
            " (i32.const 65536)))",
            "queue_bytes",
        ),
        (
            "(global.set $n (i32.add (global.get $n) (i32.const 1)))"
            "(i32.store (i32.const 0) (global.get $n))"
            "(drop (call $proxy_define_metric (i32.const 0) (i32.const 0)"
            " (i32.const 4000) (i32.const 600)))",
            "metrics",
        ),
    ],
    ids=["properties", "shared-data", "queue", "metrics"],
)
def test_host_state_floods_hit_their_quota(body, field):
    wat = filter_wat(
        f"""(global $n (mut i32) (i32.const 0))
        (global $q (mut i32) (i32.const 0))
        (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
          (drop (call $proxy_register_shared_queue (global.get $s_p) (global.get $s_p_len)
                  (i32.const 620)))
          (global.set $q (i32.load (i32.const 620)))
          (i32.const 1))
        {_forever(body)}""",
        strings={"p": "flood"},
        memory_pages=4,
    )
    plugin = load(wat, limits=Limits(timeout_ms=20_000, metrics=2000))
    result, took = _timed(plugin)
    assert result.error is not None and result.error.kind == "quota", result.error
    assert f"Limits.{field}" in str(result.error)
    assert took < 15


def test_long_metric_names_are_refused():
    wat = filter_wat(
        _forever(
            "(drop (call $proxy_define_metric (i32.const 0) (i32.const 0)"
            " (i32.const 65536) (i32.const 600)))"
        ),
        memory_pages=2,
    )
    result, _ = _timed(load(wat))
    assert result.error is not None and result.error.kind == "quota"
    assert "Limits.metric_name_bytes" in str(result.error)


def test_an_uncompress_bomb_stops_at_the_output_cap():
    bomb = zlib.compress(b"\0" * (32 << 20), 9)  # 32 MiB out of 32 KiB
    assert len(bomb) < 40_000
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (i32.store (i32.const 512)
            (call $proxy_call_foreign_function (global.get $s_f) (global.get $s_f_len)
              (global.get $s_bomb) (global.get $s_bomb_len) (i32.const 600) (i32.const 604)))
          (i32.const 0))""",
        strings={"f": "uncompress", "bomb": bomb},
        memory_pages=4,
    )
    plugin = load(wat, limits=Limits(foreign_output_bytes=1 << 20))
    result, took = _timed(plugin)
    assert result.error is None
    assert plugin.vm.mem.read_u32(512) == 2  # BAD_ARGUMENT
    assert took < 5
    # A small payload still works.
    assert plugin.vm.foreign_functions["uncompress"](zlib.compress(b"hi")) == b"hi"


def test_table_growth_is_capped():
    wat = filter_wat(
        """(table $t 1 funcref)
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (i32.store (i32.const 512)
            (table.grow $t (ref.null func) (i32.const 700000000)))
          (i32.const 0))"""
    )
    plugin = load(wat, limits=Limits(table_elements=10_000))
    result, took = _timed(plugin)
    assert result.error is None
    assert plugin.vm.mem.read_u32(512) == 0xFFFFFFFF  # refused: -1
    assert took < 5


TICKING = filter_wat(
    """(global $ticks (mut i32) (i32.const 0))
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 1)))
      (i32.const 1))
    (func (export "proxy_on_tick") (param i32)
      (global.set $ticks (i32.add (global.get $ticks) (i32.const 1))))"""
)


def _far_apart(path: Path, stamps: list[float]) -> Path:
    flows = []
    for n, stamp in enumerate(stamps):
        f = http_flow(n)
        f.request.timestamp_start = stamp
        f.request.timestamp_end = stamp
        if f.response is not None:
            f.response.timestamp_start = f.response.timestamp_end = stamp
        flows.append(f)
    return write_flows(path, flows)


def test_tick_storms_over_a_day_long_gap_are_coalesced(tmp_path):
    day = 86_400
    capture = _far_apart(tmp_path / "gaps.flow", [1e9, 1e9 + day, 1e9 + 2 * day])
    started = time.monotonic()
    result = replay(TICKING, capture)
    assert time.monotonic() - started < 30
    assert len(result.flows) == 3 and not result.failed
    notes = result.flows[1].result.notes
    assert notes and "ticks skipped past Limits.ticks_per_gap" in notes[0]
    assert "about 86,39" in notes[0]


@pytest.mark.parametrize(
    "stamps",
    [
        [1e9, 253402300799.0, 1e9 + 5],  # 9999-12-31, then back in time
        [1e9, float("nan"), float("inf"), -1e15, 1e9 + 1],
    ],
    ids=["year-9999", "nan-inf-negative"],
)
def test_wild_timestamps_never_wedge_the_clock(tmp_path, stamps):
    capture = _far_apart(tmp_path / "wild.flow", stamps)
    started = time.monotonic()
    result = replay(TICKING, capture)
    assert time.monotonic() - started < 30
    assert len(result.flows) == len(stamps) and not result.failed


def test_shared_state_keeps_its_byte_count_right():
    vm = FilterVm(filter_wat(""))
    shared = vm.shared
    shared.set("", b"k", b"12345", 0)
    shared.set("", b"k", b"12", 0)
    assert shared.data_bytes == 3
    vm.add_plugin(PluginConfig())


# Peak RSS from VmHWM: ru_maxrss of a process started by fork and exec also
# counts the parent's peak (Linux keeps it across exec), here pytest's.
FLOOD_RSS = """
import json, sys
from pathlib import Path
from wasmkit.replay.run import replay
result = replay(sys.argv[1], sys.argv[2])
status = Path("/proc/self/status").read_text().splitlines()
rss = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024
print(json.dumps({"flows": len(result.flows), "rss_mib": rss,
                  "logs": sum(len(f.result.logs) for f in result.flows)}))
"""


def test_replaying_a_log_flooding_filter_keeps_rss_flat(tmp_path):
    # Every flow floods the log with 5,000 records of 4 KiB; the replay keeps
    # every flow in full and stays well under 300 MiB.
    wat = tmp_path / "flood.wat"
    wat.write_text(
        filter_wat(
            """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
              (local $i i32)
              (loop $l
                (drop (call $proxy_log (i32.const 3) (i32.const 0) (i32.const 4096)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $i) (i32.const 5000))))
              (i32.const 0))"""
        )
    )
    capture = write_flows(tmp_path / "many.flow", (http_flow(n) for n in range(1000)))
    proc = subprocess.run(
        [sys.executable, "-c", FLOOD_RSS, str(wat), str(capture)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    got = json.loads(proc.stdout)
    assert got["flows"] == 1000
    assert got["logs"] >= 1000 * 15  # the first records of every flow are kept
    assert got["rss_mib"] < 300, got
