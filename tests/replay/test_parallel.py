"""Replay on Dask gives the results of one process.

A real ``distributed.LocalCluster`` of two worker processes (started once for
the module, as a notebook session keeps it), clusters made for one test, and
a cluster of separate ``dask scheduler`` and ``dask worker`` processes on
loopback, as another machine would run them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.host.test_safety import TRAP_ON_BOOM
from tests.replay.test_run import ADD, FLOW
from wasmkit.errors import FilterStartError, FilterTrapError
from wasmkit.host.stream import StreamResult
from wasmkit.host.vm import compile_module
from wasmkit.replay import _cluster, parallel, partitions
from wasmkit.replay.parallel import merge_metrics, replay_parallel, split
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat
from wasmkit.traffic import cache, load_capture

# Per-VM numbering and timing: not the same from one VM to several.
_VOLATILE = {"duration_us", "context_id"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _message(m):
    return None if m is None else (m.headers, m.body, m.trailers)


def _same_results(one, two):
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        ra, rb = a.result, b.result
        assert a.index == b.index and a.no_response == b.no_response
        assert a.exchange == b.exchange
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
        assert rb.details == ra.details
        assert (rb.memory_bytes, rb.fuel) == (ra.memory_bytes, ra.fuel)
        assert [(r.level, r.message) for r in rb.logs] == [
            (r.level, r.message) for r in ra.logs
        ]
        assert rb.metrics == ra.metrics
        assert (rb.error is None) == (ra.error is None)
        assert b.failed == a.failed
        # Every other field of the result (a new one must come back too).
        for field in dataclasses.fields(StreamResult):
            if field.name not in {"trace", "context_id", "error", "logs"}:
                got, want = getattr(rb, field.name), getattr(ra, field.name)
                assert got == want, field.name


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


@pytest.fixture(scope="module", autouse=True)
def _local_cluster():
    # One local cluster for the module (a session keeps it too); stopped after.
    yield
    parallel.shutdown_workers()


def test_two_workers_give_the_records_of_one():
    one = replay(ADD, FLOW)
    two = replay(ADD, FLOW, workers=2)
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
    assert not two.interrupted
    _same_results(one, two)


def test_each_worker_reads_its_partition_from_the_path(tmp_path):
    # The submitting process indexes the capture once, in the warm-load
    # cache; the tasks carry byte offsets, not flows.
    index = partitions.index_capture(FLOW, decoded=False)
    assert index is not None and index.rows == 17
    entry = Path(index.entry)
    assert entry.parent == cache.cache_root() and entry.is_file()
    assert Path(str(entry) + ".parts").is_file()
    again = partitions.index_capture(FLOW, decoded=False)
    assert again == index
    parts = partitions.plan([index], decoded=False, limit=None, partitions=2)
    assert [p.positions for p in parts] == [range(9), range(9, 17)]
    assert all(p.exchanges is None and len(p.slices) == 1 for p in parts)
    second = parts[1].slices[0]
    assert (second.row, second.count, second.skip) == (9, 8, 9)
    expected = list(load_capture(FLOW))
    assert list(partitions.read_slices(parts[1].slices)) == expected[9:]
    # A worker that does not see that entry (another machine) indexes the
    # capture in its own cache, from the same path.
    elsewhere = dataclasses.replace(second, entry=str(tmp_path / "gone.exchanges"))
    assert list(partitions.read_slices([elsewhere])) == expected[9:]


def test_several_captures_and_a_limit_number_on_as_in_one_process():
    one = replay(ADD, [FLOW, FLOW], limit=30)
    two = replay(ADD, [FLOW, FLOW], limit=30, workers=2, partitions=3)
    assert [f.index for f in two] == [f.index for f in one]
    assert [p for _, p in two.parts] == [range(10), range(10, 20), range(20, 30)]
    _same_results(one, two)


def test_failures_come_back_from_workers():
    one = replay(TRAP_ON_BOOM, FLOW)
    three = replay(TRAP_ON_BOOM, FLOW, workers=2, partitions=3)
    assert [f.index for f in three.failed] == [f.index for f in one.failed]
    for a, b in zip(one.failed, three.failed, strict=True):
        assert isinstance(b.result.error, FilterTrapError)
        assert b.result.error.kind == a.result.error.kind
        assert b.result.error.callback == a.result.error.callback
        assert b.result.error.trap_code == a.result.error.trap_code
        assert b.result.error.wasm_backtrace == a.result.error.wasm_backtrace
        unnumbered = re.compile(r"\(context \d+\)")
        assert unnumbered.sub("", str(b.result.error)) == unnumbered.sub(
            "", str(a.result.error)
        )
        assert b.record()["error"]["kind"] == a.record()["error"]["kind"]


def test_on_flow_runs_in_capture_order():
    seen: list[int] = []
    result = replay(
        ADD, FLOW, workers=2, partitions=5, on_flow=lambda f: seen.append(f.index)
    )
    assert seen == [f.index for f in result] == list(range(17))


def test_in_memory_exchanges_and_more_partitions_than_flows():
    exchanges = list(load_capture(FLOW, limit=3))
    result = replay_parallel(ADD, exchanges, workers=2, partitions=8)
    assert [f.index for f in result] == [0, 1, 2]
    assert len(result.parts) == 3
    single = replay(ADD, FLOW, limit=3)
    assert _stable(single.records()) == _stable(result.records())
    assert len(replay_parallel(ADD, [], workers=2)) == 0


def test_a_truncated_capture_keeps_what_came_before(tmp_path):
    data = FLOW.read_bytes()
    cut = tmp_path / "cut.flow"
    cut.write_bytes(data[: len(data) // 3])
    one = replay(ADD, cut)
    two = replay(ADD, cut, workers=2)
    assert len(two) == len(one) > 0
    assert two.capture_error == one.capture_error is not None
    _same_results(one, two)


def test_a_filter_expression_selects_as_in_one_process():
    one = replay(ADD, FLOW, filter_expr="~m POST")
    two = replay(ADD, FLOW, filter_expr="~m POST", workers=2)
    assert 0 < len(two) < 17
    _same_results(one, two)


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
    lock = threading.Lock()
    with pytest.raises(ValueError, match="cannot be pickled"):
        replay(ADD, FLOW, workers=2, responder=lambda *a: lock)
    with pytest.raises(ValueError, match="balance must be one of"):
        replay(ADD, FLOW, workers=2, balance="fair")
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        replay(ADD, FLOW, workers=2, partitions=0)
    with pytest.raises(ValueError, match="scheduler must be an address"):
        replay(ADD, FLOW, scheduler=42)


def test_a_filter_that_does_not_start_fails_as_in_one_process():
    refuses = filter_wat(
        """(func (export "proxy_on_configure") (param i32 i32) (result i32)
             (i32.const 0))"""
    )
    with pytest.raises(FilterStartError) as one:
        replay(refuses, FLOW)
    with pytest.raises(FilterStartError) as two:
        replay(refuses, FLOW, workers=2)
    assert str(two.value) == str(one.value)


def test_compact_results_from_workers_rebuild_every_field():
    from tests.host.test_stream import DENY

    for wat in (ADD, DENY, TRAP_ON_BOOM):
        one = replay(wat, FLOW)
        two = replay(wat, FLOW, workers=2, partitions=3)
        # fail_closed: the partitions after the failing one replay again in
        # a failed VM, and read as one VM's flows would.
        _same_results(one, two)


def answer_teapot(request, exchange):
    from wasmkit.host import response

    return response(418, [("x-upstream", request.get(b":path").decode())], "tea")


def test_an_upstream_function_runs_in_the_workers():
    one = replay(ADD, FLOW, upstream=answer_teapot)
    two = replay(ADD, FLOW, workers=2, upstream=answer_teapot)
    _same_results(one, two)
    assert {f.result.response_before.status for f in two} == {418}
    # A closure goes too (cloudpickle).
    from wasmkit.host import response

    status = 402
    three = replay(ADD, FLOW, workers=2, upstream=lambda r, e: response(status))
    assert {f.result.response_before.status for f in three} == {402}


def test_workers_keep_only_the_changed_flows():
    full = replay(TRAP_ON_BOOM, FLOW)
    two = replay(TRAP_ON_BOOM, FLOW, workers=2, keep="changed")
    one = replay(TRAP_ON_BOOM, FLOW, keep="changed")
    assert [f.index for f in two] == [f.index for f in one]
    assert two.totals.flows == 17 and two.totals.failed == len(full.failed)
    assert two.totals.modified == one.totals.modified
    _same_results(one, two)


REBUILT = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-rebuilt", "v": "yes"},
)


def test_the_cluster_is_kept_and_a_rebuilt_filter_replays_as_rebuilt(tmp_path):
    wat = tmp_path / "filter.wat"
    wat.write_text(ADD)
    first = replay(wat, FLOW, workers=2)
    pids = _cluster.local_pids()
    assert len(pids) == 2 and os.getpid() not in pids
    assert parallel.idle_workers() == 2
    wat.write_text(REBUILT)
    second = replay(wat, FLOW, workers=2)
    assert _cluster.local_pids() == pids  # the same processes
    for a, b in zip(first, second, strict=True):
        assert a.result.request_after.get(b"x-replayed") == b"yes"
        assert b.result.request_after.get(b"x-rebuilt") == b"yes"
        assert b.result.request_after.get(b"x-replayed") is None
    # Another number of workers: another local cluster.
    three = replay(wat, FLOW, workers=3)
    assert parallel.idle_workers() == 3 and len(three) == 17
    parallel.shutdown_workers()
    assert parallel.idle_workers() == 0


def test_progress_counts_every_flow():
    failed = len(replay(TRAP_ON_BOOM, FLOW).failed)
    done: list[int] = []
    result = replay(
        TRAP_ON_BOOM,
        FLOW,
        workers=2,
        partitions=4,
        keep="summary",
        on_progress=done.append,
    )
    assert done[0] == 0 and len(done) == 5
    assert sum(done) == 17 == result.totals.flows
    assert len(result) == result.totals.failed == failed > 0


# Traps on six-byte paths: first /error, flow 11, in the second of three
# partitions (TRAP_ON_BOOM first traps on flow 4, in the first).
TRAP_ON_ERROR = TRAP_ON_BOOM.replace(
    "(i32.const 516)) (i32.const 5))", "(i32.const 516)) (i32.const 6))"
)
assert TRAP_ON_ERROR != TRAP_ON_BOOM


@pytest.mark.parametrize(
    ("wat", "part"), [(TRAP_ON_BOOM, 0), (TRAP_ON_ERROR, 1)], ids=["first", "second"]
)
@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
def test_a_vm_failed_on_an_earlier_partition_fails_the_later_ones(policy, wat, part):
    one = replay(wat, FLOW, failure_policy=policy)
    three = replay(wat, FLOW, failure_policy=policy, workers=2, partitions=3)
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

    for wat in (ADD, DENY):
        one = replay(wat, FLOW)
        two = replay(wat, FLOW, workers=2)
        assert [f.result.details for f in two] == [f.result.details for f in one]


def test_cli_replay_workers(tmp_path):
    wat = tmp_path / "add.wat"
    wat.write_text(ADD)
    out = tmp_path / "records.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "wasmkit.cli", "replay", str(wat), str(FLOW),
            "--workers", "2", "--partitions", "3", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "17 flows replayed" in proc.stdout
    records = json.loads(out.read_text())
    assert [r["index"] for r in records] == list(range(17))
    assert ["x-replayed", "yes"] in records[9]["request"]["headers"]["after"]
    assert "Traceback" not in proc.stderr


# -- workers that die --------------------------------------------------------------


def recorded(request, exchange):
    """An upstream that answers what the capture recorded."""
    return exchange.to_response_message()


def dies_once(marker: str):
    """:func:`recorded`, ending its worker process at flow 12 the first time."""

    def upstream(request, exchange):
        if exchange.index == 12 and not os.path.exists(marker):
            Path(marker).write_text("died")
            os._exit(1)
        return recorded(request, exchange)

    return upstream


def test_a_worker_that_dies_has_its_partition_replayed_elsewhere(tmp_path):
    # Dask replays the lost task on another worker (the nanny restarts the
    # dead one): the result is whole.
    one = replay(ADD, FLOW, upstream=recorded)
    marker = tmp_path / "died"
    two = replay(ADD, FLOW, workers=2, upstream=dies_once(str(marker)))
    assert marker.exists()
    assert not two.interrupted and len(two) == 17
    _same_results(one, two)


def dies_always(request, exchange):
    """An upstream that ends its worker process at flow 12."""
    if exchange.index == 12:
        os._exit(1)


def test_a_partition_that_kills_its_workers_is_named_and_the_rest_kept():
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    client = Client(cluster, set_as_default=False)
    try:
        with pytest.warns(RuntimeWarning) as caught:
            result = replay(ADD, FLOW, scheduler=client, upstream=dies_always)
    finally:
        client.close()
        cluster.close()
    (note,) = [str(w.message) for w in caught if "was lost" in str(w.message)]
    assert "replay partition 1 of 2 (flows at positions 9 to 16)" in note
    assert "KilledWorker" in note and "keeps the 9 flows of the others" in note
    assert result.interrupted and [f.index for f in result] == list(range(9))
    assert result.parts == [(0, range(9))]


# -- a cluster of separate processes -----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dask(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dask")), *args]


def test_a_cluster_of_dask_scheduler_and_worker_processes(tmp_path):
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "WASMKIT_CACHE": str(tmp_path / "worker-cache")}
    logs = [open(tmp_path / f"{n}.log", "w") for n in ("s", "w1", "w2")]  # noqa: SIM115
    scheduler = ["scheduler", "--host", "127.0.0.1", "--port", str(port)]
    worker = ["worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1"]
    procs = [
        subprocess.Popen(
            _dask(*scheduler, "--no-dashboard"),
            stdout=logs[0],
            stderr=subprocess.STDOUT,
            env=env,
        )
    ]
    try:
        for log in logs[1:]:
            procs.append(
                subprocess.Popen(
                    _dask(*worker, "--no-dashboard"),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        client = Client(address, timeout="60s", set_as_default=False)
        try:
            client.wait_for_workers(2, timeout=120)
        finally:
            client.close()
        # By address, as a user names an existing cluster; the capture by path.
        one = replay(ADD, FLOW)
        two = replay(ADD, FLOW, scheduler=address)
        assert two.parts == [(0, range(9)), (1, range(9, 17))]
        assert _stable(two.records()) == _stable(one.records())
        _same_results(one, two)
        # The environment names it too.
        os.environ[_cluster.SCHEDULER_ENV] = address
        try:
            three = replay(ADD, FLOW, workers=2, partitions=4)
        finally:
            del os.environ[_cluster.SCHEDULER_ENV]
        assert len(three.parts) == 4
        _same_results(one, three)
    finally:
        _cluster.shutdown()
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def test_an_unreachable_scheduler_is_one_line():
    from wasmkit.errors import ReplayError

    began = time.monotonic()
    with pytest.raises(ReplayError, match="cannot reach the Dask scheduler at"):
        replay(ADD, FLOW, scheduler=f"tcp://127.0.0.1:{_free_port()}")
    assert time.monotonic() - began < 60
