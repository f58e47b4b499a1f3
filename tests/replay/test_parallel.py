"""Replay in several processes gives the results of one."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.host.test_safety import TRAP_ON_BOOM
from tests.replay.test_run import ADD, FLOW
from wasmkit.errors import FilterTrapError
from wasmkit.host.vm import compile_module
from wasmkit.replay import parallel
from wasmkit.replay.parallel import (
    last_cut,
    measured_share,
    merge_metrics,
    replay_parallel,
    split,
)
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat
from wasmkit.traffic import load_capture

# Per-VM numbering and timing: not the same from one VM to several.
_VOLATILE = {"duration_us", "context_id"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def test_two_workers_give_the_records_of_one():
    one = replay(ADD, FLOW)
    two = replay(ADD, FLOW, workers=2, balance="even")
    assert [f.index for f in two] == list(range(17))
    assert two.parts == [(0, range(9)), (1, range(9, 17))]
    assert _stable(two.records()) == _stable(one.records())
    strip = [{k: v for k, v in r.items() if k != "us"} for r in one.summary_rows]
    assert [
        {k: v for k, v in r.items() if k != "us"} for r in two.summary_rows
    ] == strip
    assert two.metrics == one.metrics
    assert two.capture_error is None and two.skipped == one.skipped
    assert two.filter == one.filter
    # The exchanges are the parent's, put back in place.
    assert [f.exchange.index for f in two] == list(range(17))


def test_failures_come_back_from_workers():
    one = replay(TRAP_ON_BOOM, FLOW)
    three = replay(TRAP_ON_BOOM, FLOW, workers=3, balance="even")
    assert [f.index for f in three.failed] == [f.index for f in one.failed]
    for a, b in zip(one.failed, three.failed, strict=True):
        assert isinstance(b.result.error, FilterTrapError)
        assert b.result.error.kind == a.result.error.kind
        assert b.result.error.callback == a.result.error.callback
        assert b.result.error.trap_code == a.result.error.trap_code
        assert b.result.error.wasm_backtrace == a.result.error.wasm_backtrace
        # Context ids are numbered per VM: the message names another one.
        unnumbered = re.compile(r"\(context \d+\)")
        assert unnumbered.sub("", str(b.result.error)) == unnumbered.sub(
            "", str(a.result.error)
        )
        assert b.record()["error"]["kind"] == a.record()["error"]["kind"]


def test_on_flow_runs_in_capture_order():
    seen: list[int] = []
    result = replay(
        ADD, FLOW, workers=2, balance="even", on_flow=lambda f: seen.append(f.index)
    )
    assert seen == [f.index for f in result] == list(range(17))


def test_in_memory_exchanges_and_more_workers_than_flows():
    exchanges = list(load_capture(FLOW, limit=3))
    result = replay_parallel(ADD, exchanges, workers=8, balance="even")
    assert [f.index for f in result] == [0, 1, 2]
    single = replay_parallel(ADD, exchanges, workers=1)
    assert _stable(single.records()) == _stable(result.records())
    assert len(replay_parallel(ADD, [], workers=4)) == 0


def test_a_truncated_capture_keeps_what_came_before(tmp_path):
    data = FLOW.read_bytes()
    cut = tmp_path / "cut.flow"
    cut.write_bytes(data[: len(data) // 3])
    one = replay(ADD, cut)
    two = replay(ADD, cut, workers=2, balance="even")
    assert len(two) == len(one) > 0
    assert two.capture_error == one.capture_error is not None


def test_split_is_contiguous_and_even():
    assert split(17, 2) == [range(9), range(9, 17)]
    assert split(2, 5) == [range(1), range(1, 2)]
    assert split(0, 3) == []
    parts = split(100, 7)
    assert [i for r in parts for i in r] == list(range(100))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_merge_metrics():
    a = [
        {"name": "c", "type": "counter", "value": 2, "count": None, "samples": None},
        {"name": "g", "type": "gauge", "value": 5, "count": None, "samples": None},
        {"name": "h", "type": "histogram", "value": None, "count": 1, "samples": [1]},
    ]
    b = [
        {"name": "c", "type": "counter", "value": 3, "count": None, "samples": None},
        {"name": "g", "type": "gauge", "value": 7, "count": None, "samples": None},
        {
            "name": "h",
            "type": "histogram",
            "value": None,
            "count": 2,
            "samples": [2, 3],
        },
    ]
    merged = {m["name"]: m for m in merge_metrics([a, b])}
    assert merged["c"]["value"] == 5
    assert merged["g"]["value"] == 7
    assert merged["h"]["samples"] == [1, 2, 3] and merged["h"]["count"] == 3
    assert a[2]["samples"] == [1]  # inputs untouched


def test_bad_arguments():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        replay(ADD, FLOW, workers=0)
    with pytest.raises(ValueError, match="not CompiledModule"):
        replay(compile_module(ADD), FLOW, workers=2)
    with pytest.raises(ValueError, match="cannot be pickled"):
        replay(ADD, FLOW, workers=2, responder=lambda *a: None)
    with pytest.raises(ValueError, match="balance must be one of"):
        replay(ADD, FLOW, workers=2, balance="fair")


def test_cli_replay_workers(tmp_path):
    wat = tmp_path / "add.wat"
    wat.write_text(ADD)
    out = tmp_path / "records.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wasmkit.cli",
            "replay",
            str(wat),
            str(FLOW),
            "--workers",
            "2",
            "--balance",
            "even",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "17 flows replayed" in proc.stdout
    records = json.loads(out.read_text())
    assert [r["index"] for r in records] == list(range(17))
    assert ["x-replayed", "yes"] in records[9]["request"]["headers"]["after"]


def _message(m):
    return None if m is None else (m.headers, m.body, m.trailers)


def _same_results(one, two):
    for a, b in zip(one, two, strict=True):
        ra, rb = a.result, b.result
        assert a.index == b.index and a.no_response == b.no_response
        for name in (
            "request_before",
            "request_after",
            "response_before",
            "response_after",
            "client_request",
            "upstream_request",
            "client_response",
        ):
            assert _message(getattr(rb, name)) == _message(getattr(ra, name)), name
        assert rb.host_changes == ra.host_changes
        assert rb.request_forwarded == ra.request_forwarded
        assert rb.local_reply == ra.local_reply
        assert rb.stalled == ra.stalled and rb.reset == ra.reset
        assert rb.notes == ra.notes
        assert [(r.level, r.message) for r in rb.logs] == [
            (r.level, r.message) for r in ra.logs
        ]
        assert rb.metrics == ra.metrics
        assert (rb.error is None) == (ra.error is None)


def test_compact_results_from_workers_rebuild_every_field():
    from tests.host.test_stream import DENY

    for wat in (ADD, DENY, TRAP_ON_BOOM):
        one = replay(wat, FLOW)
        two = replay(wat, FLOW, workers=2, balance="even")
        _same_results(one, two)
        assert [f.failed for f in two] == [f.failed for f in one]


def answer_teapot(request, exchange):
    from wasmkit.host import response

    return response(418, [("x-upstream", request.get(b":path").decode())], "tea")


def test_an_upstream_function_runs_in_the_workers():
    exchanges = list(load_capture(FLOW))
    one = replay_parallel(ADD, exchanges, workers=1, upstream=answer_teapot)
    two = replay_parallel(
        ADD, exchanges, workers=2, upstream=answer_teapot, balance="even"
    )
    _same_results(one, two)
    assert {f.result.response_before.status for f in two} == {418}


def test_workers_keep_only_the_changed_flows():
    full = replay(TRAP_ON_BOOM, FLOW)
    two = replay(TRAP_ON_BOOM, FLOW, workers=2, keep="changed", balance="even")
    one = replay(TRAP_ON_BOOM, FLOW, keep="changed")
    assert [f.index for f in two] == [f.index for f in one]
    assert two.totals.flows == 17 and two.totals.failed == len(full.failed)
    assert two.totals.modified == one.totals.modified
    _same_results(one, two)


def test_rows_read_in_place_give_the_exchanges_messages():
    from wasmkit.replay import _wire
    from wasmkit.replay._wire import RowExchange

    for exchange in load_capture(FLOW):
        row = RowExchange(_wire._flat(exchange))
        assert row.index == exchange.index and row.timestamp == exchange.timestamp
        assert row.to_request_message() == exchange.to_request_message()
        assert row.to_response_message() == exchange.to_response_message()
        assert row.connection() == exchange.connection()


def spinning(iterations: int) -> str:
    """A filter that spins ``iterations`` times per request, then adds
    ``x-replayed: yes``."""
    return filter_wat(
        f"""(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (local $i i32)
         (local.set $i (i32.const {iterations}))
         (loop $spin
           (local.set $i (i32.sub (local.get $i) (i32.const 1)))
           (br_if $spin (i32.ne (local.get $i) (i32.const 0))))
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
        strings={"k": "x-replayed", "v": "yes"},
    )


# Burns a few milliseconds of wasm per request, then adds a header: slow
# enough that the workers are ready long before a few hundred flows are done.
SLOW = spinning(8_000_000)


def _many(count):
    # ``count`` exchanges: the sample capture's, over and over, renumbered.
    base = list(load_capture(FLOW))
    return [dataclasses.replace(base[i % len(base)], index=i) for i in range(count)]


def test_measured_cut_gives_the_workers_their_share():
    exchanges = _many(600)
    one = replay_parallel(SLOW, exchanges, workers=1)
    two = replay_parallel(SLOW, exchanges, workers=2)
    _same_results(one, two)
    assert [f.index for f in two] == list(range(600))
    assert one.parts == []
    # Runs in capture order, covering every flow: the calling process's head
    # first, then the worker's, then (usually) a tail cut from the worker's.
    runs = two.parts
    assert [i for _, r in runs for i in r] == list(range(600))
    assert runs[0][0] == 0 and runs[1][0] == 1
    assert {k for k, _ in runs} == {0, 1}
    assert len(runs[1][1]) > 100  # the worker replayed a real share
    added = [f.result.request_after.get(b"x-replayed") for f in two]
    assert added == [b"yes"] * 600


def test_measured_cut_leaves_a_short_replay_here():
    # Done long before a worker process could start: no worker flows.
    result = replay(ADD, FLOW, workers=2)
    assert result.parts == [] and len(result) == 17


def test_measured_share_and_last_cut():
    # Each process ends together: 50 µs flows, the worker's extra per flow,
    # the extra here for each flow moved.
    w, c = parallel.WORKER_EXTRA_US, parallel.CALLER_EXTRA_US
    share = measured_share(100_000, 50.0, 1)
    assert 45_000 < share < 55_000
    here = 50 * (100_000 - share) + c * share
    assert here == pytest.approx((50 + w) * share, rel=1e-3)
    assert measured_share(10, 50.0, 1) == 0  # not worth a worker
    assert 24_000 < measured_share(100_000, 50.0, 3) <= 100_000 // 3
    # The tail: 10,000 unsent, the worker busy for 0.1 s first.
    keep = last_cut(10_000, 100_000.0, 50.0, 57.0, 2.5)
    assert 50 * (10_000 - keep) + 2.5 * keep == pytest.approx(
        100_000 + 57 * keep, rel=1e-3
    )
    assert last_cut(10_000, 1e9, 50.0, 57.0, 2.5) == 0  # the worker is far behind
    assert last_cut(0, 0.0, 50.0, 57.0, 2.5) == 0


REBUILT = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-rebuilt", "v": "yes"},
)


def _worker_pids():
    return sorted(pool.submit(os.getpid).result() for _, pool, _ in parallel._IDLE)


def test_worker_processes_wait_for_the_next_replay(tmp_path, monkeypatch):
    monkeypatch.delenv("WASMKIT_WORKER_IDLE_S", raising=False)
    parallel.shutdown_workers()
    wat = tmp_path / "filter.wat"
    wat.write_text(ADD)
    first = replay(wat, FLOW, workers=2, balance="even")
    assert parallel.idle_workers() == 1
    pids = _worker_pids()
    assert pids and os.getpid() not in pids
    # The same process replays again, with the filter as rebuilt meanwhile.
    wat.write_text(REBUILT)
    second = replay(wat, FLOW, workers=2, balance="even")
    assert _worker_pids() == pids
    assert second.parts[1][0] == 1 and len(second.parts[1][1]) == 8
    for a, b in zip(first, second, strict=True):
        assert a.result.request_after.get(b"x-replayed") == b"yes"
        assert b.result.request_after.get(b"x-rebuilt") == b"yes"
        assert b.result.request_after.get(b"x-replayed") is None
    parallel.shutdown_workers()
    assert parallel.idle_workers() == 0


def test_a_worker_that_died_while_idle_is_replaced():
    parallel.shutdown_workers()
    replay(ADD, FLOW, workers=2, balance="even")
    (pid,) = _worker_pids()
    os.kill(pid, signal.SIGKILL)
    again = replay(ADD, FLOW, workers=2, balance="even")
    assert [f.index for f in again] == list(range(17)) and not again.failed
    assert _worker_pids() != [pid]
    parallel.shutdown_workers()


def test_workers_are_not_kept_when_asked_or_given_functions(monkeypatch):
    parallel.shutdown_workers()
    monkeypatch.setenv("WASMKIT_WORKER_IDLE_S", "0")
    replay(ADD, FLOW, workers=2, balance="even")
    assert parallel.idle_workers() == 0
    monkeypatch.delenv("WASMKIT_WORKER_IDLE_S")
    # A function's module may change before the next replay: new processes.
    exchanges = list(load_capture(FLOW))
    replay_parallel(ADD, exchanges, workers=2, upstream=answer_teapot, balance="even")
    assert parallel.idle_workers() == 0


def test_idle_workers_exit_after_their_time(monkeypatch):
    parallel.shutdown_workers()
    monkeypatch.setenv("WASMKIT_WORKER_IDLE_S", "0.5")
    replay(ADD, FLOW, workers=2, balance="even")
    assert parallel.idle_workers() == 1
    deadline = time.monotonic() + 10
    while parallel.idle_workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert parallel.idle_workers() == 0


def test_other_exchange_types_are_pickled_to_the_workers():
    from wasmkit.replay._wire import RowExchange, _flat

    exchanges = list(load_capture(FLOW))
    rows = [RowExchange(_flat(e)) for e in exchanges]
    one = replay_parallel(ADD, exchanges, workers=1)
    two = replay_parallel(ADD, rows, workers=2, balance="even")
    assert two.parts == [(0, range(9)), (1, range(9, 17))]
    assert [f.exchange for f in two] == rows
    _same_results(one, two)


def _killing_the_worker(monkeypatch):
    # An on_flow that kills the (first) worker process at the first flow.
    made = []
    new_worker = parallel._new_worker

    def recording(*args):
        worker = new_worker(*args)
        made.append(worker)
        return worker

    monkeypatch.setattr(parallel, "_new_worker", recording)
    killed = []

    def kill(flow):
        if not killed:
            # Queued behind its first pieces: it has answered some by now.
            pid = made[-1].pool.submit(os.getpid).result()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    return kill, killed


@pytest.mark.parametrize("keep", ["all", "changed"])
def test_a_worker_process_that_dies_leaves_its_flows_to_this_one(monkeypatch, keep):
    parallel.shutdown_workers()
    kill, killed = _killing_the_worker(monkeypatch)
    exchanges = _many(3000)
    one = replay_parallel(TRAP_ON_BOOM, exchanges, workers=1, keep=keep)
    with pytest.warns(RuntimeWarning, match="replay worker process 1 stopped"):
        two = replay_parallel(
            TRAP_ON_BOOM, exchanges, workers=2, balance="even", on_flow=kill, keep=keep
        )
    assert killed
    assert [f.index for f in two] == [f.index for f in one]
    _same_results(one, two)
    assert two.totals.flows == 3000
    assert (two.totals.failed, two.totals.modified) == (
        one.totals.failed,
        one.totals.modified,
    )
    # The worker answered its first pieces; this process replayed the rest.
    (head, worker, recovered) = two.parts
    assert head == (0, range(1500)) and worker[0] == 1 and recovered[0] == 0
    assert worker[1].start == 1500 and recovered[1].stop == 3000
    assert worker[1].stop == recovered[1].start and len(worker[1]) >= 256
    assert parallel.idle_workers() == 0  # a stopped worker is not kept


# SLOW's spin, then a trap on 5-byte paths (as TRAP_ON_BOOM): failures all
# along the capture.
TRAP_ON_BOOM_SLOW = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (local $i i32)
         (local.set $i (i32.const 8000000))
         (loop $spin
           (local.set $i (i32.sub (local.get $i) (i32.const 1)))
           (br_if $spin (i32.ne (local.get $i) (i32.const 0))))
         (drop (call $proxy_get_header_map_value (i32.const 0)
           (global.get $s_path) (global.get $s_path_len) (i32.const 512) (i32.const 516)))
         (if (i32.eq (i32.load (i32.const 516)) (i32.const 5)) (then unreachable))
         (i32.const 0))""",
    strings={"path": ":path"},
)


def test_measured_cut_keeps_capture_order_for_caps_and_callbacks():
    # 10 ms apart, with fail_reload's backoff at 2 ms: every flow after a
    # trap runs on a reloaded VM, so failures fall all along the capture.
    exchanges = [
        dataclasses.replace(e, timestamp_start=1000.0 + e.index * 0.01)
        for e in _many(600)
    ]
    reloading = {"failure_policy": "fail_reload", "reload_backoff_ms": 2}
    seen: list[int] = []
    one = replay_parallel(
        TRAP_ON_BOOM_SLOW, exchanges, workers=1, keep="summary", **reloading
    )
    two = replay_parallel(
        TRAP_ON_BOOM_SLOW,
        exchanges,
        workers=2,
        keep="summary",
        max_kept=50,
        on_flow=lambda f: seen.append(f.index),
        **reloading,
    )
    assert {k for k, _ in two.parts} == {0, 1}
    # Failures all along the capture: the cap falls past this process's head.
    kept = [f.index for f in one][:50]
    assert len(one) > 50 and kept[-1] > two.parts[0][1].stop
    assert [f.index for f in two] == kept == seen
    assert two.totals.flows == 600 and two.totals.kept == 50
    assert (two.totals.failed, two.totals.modified) == (
        one.totals.failed,
        one.totals.modified,
    )


def test_progress_counts_every_flow_with_workers_and_compact_keeps():
    failed = len(replay(TRAP_ON_BOOM, FLOW).failed)
    for workers, balance in ((1, "measured"), (2, "even"), (2, "measured")):
        done: list[int] = []
        result = replay(
            TRAP_ON_BOOM,
            FLOW,
            workers=workers,
            balance=balance,
            keep="summary",
            on_progress=done.append,
        )
        assert sum(done) == 17 == result.totals.flows
        assert len(result) == result.totals.failed == failed > 0
    done = []
    replay_parallel(SLOW, _many(600), workers=2, on_progress=done.append)
    assert sum(done) == 600 and len(done) > 2


# Traps on six-byte paths: first /error, flow 11, in the second of three
# even parts (TRAP_ON_BOOM first traps on flow 4, in the first).
TRAP_ON_ERROR = TRAP_ON_BOOM.replace(
    "(i32.const 516)) (i32.const 5))", "(i32.const 516)) (i32.const 6))"
)
assert TRAP_ON_ERROR != TRAP_ON_BOOM


@pytest.mark.parametrize(
    ("wat", "part"), [(TRAP_ON_BOOM, 0), (TRAP_ON_ERROR, 1)], ids=["head", "worker"]
)
@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_a_vm_failed_on_an_earlier_part_fails_the_later_parts(policy, wat, part):
    # One VM keeps failing (fail_closed) or skips the filter (fail_open) for
    # every flow after its failure; the later parts' VMs must say the same.
    one = replay(wat, FLOW, failure_policy=policy)
    three = replay(wat, FLOW, failure_policy=policy, workers=3, balance="even")
    assert len(three.parts) == 3
    first = one.failed[0].index
    assert first in three.parts[part][1]
    assert [f.index for f in three.failed] == [f.index for f in one.failed]
    for a, b in zip(one.flows, three.flows, strict=True):
        ra, rb = a.result, b.result
        assert (ra.response_after.status, ra.request_forwarded) == (
            rb.response_after.status,
            rb.request_forwarded,
        )
        assert ra.notes == rb.notes
        if a.index > first:
            assert str(ra.error) == str(rb.error)
            assert not [t for t in rb.trace if t.kind == "callback"]
    later = three.flows[-1].result
    if policy == "fail_closed":
        assert later.response_after.status == 503
        assert f"the VM failed at flow {first}" in str(later.error)
    else:
        assert later.error is None and later.request_forwarded
    assert three.totals.failed == one.totals.failed


def test_response_code_details_come_back_from_workers():
    from tests.host.test_stream import DENY

    for wat in (ADD, DENY, TRAP_ON_BOOM):
        one = replay(wat, FLOW)
        two = replay(wat, FLOW, workers=2, balance="even")
        details = [f.result.details for f in one]
        assert [f.result.details for f in two] == details
        if wat is ADD:
            # Flow 12's upstream refused the connection: the router's details.
            assert details.pop(12).startswith("upstream_reset_before_response_started{")
            assert set(details) == {"via_upstream"}
        elif wat is DENY:
            assert set(details) == {"access_denied"}
        else:  # fail_closed from flow 4 on
            assert details == ["via_upstream"] * 4 + ["wasm_fail_stream"] * 13
