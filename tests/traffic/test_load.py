from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import flow
from mitmproxy.test import tflow

import wasmkit.traffic as traffic
from tests.traffic import helpers
from wasmkit.errors import CaptureFormatError, CaptureReadError
from wasmkit.traffic import Exchange, capture_format, load_capture


def _many(n: int) -> list[flow.Flow]:
    return [helpers.http_flow(i) for i in range(n)]


def test_all_is_sorted_and_complete():
    assert traffic.__all__ == sorted(traffic.__all__)
    for name in traffic.__all__:
        assert hasattr(traffic, name), name
    with pytest.raises(AttributeError):
        traffic.nope  # noqa: B018


def test_importing_traffic_does_not_import_mitmproxy():
    code = (
        "import sys, wasmkit.traffic, wasmkit.traffic.load, wasmkit.traffic.cache;"
        "print('mitmproxy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


def test_load_capture_streams_exchanges_with_stats(tmp_path):
    path = helpers.write_flows(tmp_path / "m.flow", helpers.mixed_flows())
    cap = load_capture(path)
    assert iter(cap) is cap
    got = list(cap)
    assert [x.index for x in got] == [0, 1, 3, 5, 7]
    stats = cap.stats
    assert stats.flows == 8 and stats.exchanges == 5 and stats.request_only == 2
    assert stats.skipped == {"tcp": 1, "udp": 1, "dns": 1}
    assert stats.path == str(path) and stats.format == "flow"
    assert not stats.from_cache


def test_warm_load_uses_the_cache_and_gives_the_same_exchanges(tmp_path, capture_cache):
    path = helpers.write_flows(tmp_path / "w.flow", helpers.mixed_flows())
    cold = list(load_capture(path))
    entries = list(capture_cache.glob("*.exchanges"))
    assert len(entries) == 1
    warm_cap = load_capture(path)
    warm = list(warm_cap)
    assert warm == cold
    assert warm_cap.stats.from_cache
    assert warm_cap.stats.as_dict() == {
        **_stats_without_cache_flag(path),
        "from_cache": True,
    }


def _stats_without_cache_flag(path: Path) -> dict[str, Any]:
    cap = load_capture(path, cache=False)
    list(cap)
    return cap.stats.as_dict()


def test_cache_invalidated_when_the_file_changes(tmp_path, capture_cache):
    path = helpers.write_flows(tmp_path / "c.flow", _many(3))
    assert len(list(load_capture(path))) == 3
    helpers.write_flows(path, _many(5))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    cap = load_capture(path)
    assert len(list(cap)) == 5 and not cap.stats.from_cache
    assert len(list(capture_cache.glob("*.exchanges"))) == 1  # the old one went
    again = load_capture(path)
    assert len(list(again)) == 5 and again.stats.from_cache


def test_decoded_has_its_own_cache_entry(tmp_path, capture_cache):
    path = helpers.write_flows(tmp_path / "g.flow", [helpers.gzip_flow()])
    (wire,) = load_capture(path)
    (plain,) = load_capture(path, decoded=True)
    assert wire.response is not None and plain.response is not None
    assert wire.response.body != plain.response.body
    assert len(list(capture_cache.glob("*.exchanges"))) == 2
    (plain_warm,) = load_capture(path, decoded=True)
    assert plain_warm == plain


def test_damaged_cache_entry_falls_back_to_the_capture(tmp_path, capture_cache):
    path = helpers.write_flows(tmp_path / "d.flow", _many(1200))
    cold = list(load_capture(path))
    (entry,) = capture_cache.glob("*.exchanges")
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # cut after the first batch
    cap = load_capture(path)
    assert list(cap) == cold
    assert cap.stats.exchanges == 1200
    assert entry.is_file()  # rewritten
    assert list(load_capture(path)) == cold
    entry.write_bytes(b"garbage")
    assert list(load_capture(path)) == cold


def test_limit_stops_early_and_writes_no_cache(tmp_path, capture_cache):
    path = helpers.write_flows(tmp_path / "l.flow", _many(10))
    assert [x.index for x in load_capture(path, limit=3)] == [0, 1, 2]
    assert list(capture_cache.glob("*")) == []
    assert list(load_capture(path, limit=0)) == []
    list(load_capture(path))
    assert [x.index for x in load_capture(path, limit=2)] == [0, 1]
    with pytest.raises(ValueError, match="limit"):
        load_capture(path, limit=-1)


def test_filter_expression_bypasses_the_cache(tmp_path, capture_cache):
    flows = [
        helpers.http_flow(0),
        helpers.http_flow(1, method=b"POST"),
        tflow.ttcpflow(),
    ]
    path = helpers.write_flows(tmp_path / "f.flow", flows)
    cap = load_capture(path, filter_expr="~m POST")
    assert [x.index for x in cap] == [1]
    assert cap.stats.filtered_out == 1 and cap.stats.skipped == {"tcp": 1}
    assert list(capture_cache.glob("*")) == []
    with pytest.raises(ValueError):
        load_capture(path, filter_expr="~~~")


def test_several_files_are_numbered_on(tmp_path):
    a = helpers.write_flows(tmp_path / "a.flow", [*_many(2), tflow.ttcpflow()])
    b = helpers.write_har(tmp_path / "b.har", [helpers.har_entry(n) for n in range(2)])
    cap = load_capture([a, str(b)])
    assert [x.index for x in cap] == [0, 1, 3, 4]
    stats = cap.stats
    assert stats.flows == 5 and stats.exchanges == 4 and stats.skipped == {"tcp": 1}
    assert stats.format == "har" and stats.path == str(b)
    warm = load_capture([a, b])
    assert [x.index for x in warm] == [0, 1, 3, 4] and warm.stats.from_cache


def test_errors_surface_after_the_good_exchanges(tmp_path, capture_cache):
    path = helpers.write_flows(tmp_path / "t.flow", _many(3))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    got: list[Exchange] = []
    with pytest.raises(CaptureReadError) as info:
        got.extend(load_capture(path))
    assert [x.index for x in got] == [0, 1] and info.value.index == 2
    assert list(capture_cache.glob("*")) == []  # a broken capture is not cached
    bad = tmp_path / "x.txt"
    bad.write_text("hello")
    with pytest.raises(CaptureFormatError):
        list(load_capture(bad))
    assert capture_format(path) == "flow"


def test_close_and_context_manager_drop_the_unfinished_entry(tmp_path, capture_cache):
    path = helpers.write_flows(tmp_path / "x.flow", _many(5))
    with load_capture(path) as cap:
        next(cap)
    with pytest.raises(StopIteration):
        next(cap)
    assert list(capture_cache.glob("*")) == []


def test_unwritable_cache_only_costs_speed(tmp_path):
    path = helpers.write_flows(tmp_path / "u.flow", _many(2))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert len(list(load_capture(path, cache_dir=blocker / "sub"))) == 2


def test_cache_dir_argument(tmp_path):
    path = helpers.write_flows(tmp_path / "u.flow", _many(2))
    list(load_capture(path, cache_dir=tmp_path / "mine"))
    assert len(list((tmp_path / "mine").glob("*.exchanges"))) == 1
    assert Path(tmp_path / "mine").is_dir()
