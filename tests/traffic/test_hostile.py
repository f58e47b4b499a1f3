"""Hostile captures: nesting past the decoders' depth, files rewritten in place."""

from __future__ import annotations

import os

import pytest

from tests.traffic import helpers
from wasmkit.errors import CaptureReadError
from wasmkit.traffic import load_capture


def _read(path, **kw):
    got = []
    with pytest.raises(CaptureReadError) as info:
        for exchange in load_capture(path, **kw):
            got.append(exchange.index)
    return got, info.value


# Just past the running Python's JSON decoder (its depth differs by version),
# and far past any.
TOO_DEEP = helpers.json_depth_limit() + 1


@pytest.mark.parametrize("depth", [TOO_DEEP, 1_000_000], ids=["just", "far"])
def test_a_har_nested_too_deep_keeps_the_entries_before_it(tmp_path, depth):
    path = helpers.nested_har(tmp_path / "deep.har", 3, depth)
    got, err = _read(path)
    assert got == [0, 1, 2]
    assert (err.path, err.index) == (str(path), 3)
    assert "entry 3 is nested too deeply" in str(err)
    assert "3 entries were read" in str(err)
    assert len(str(err).splitlines()) == 1
    assert not isinstance(err.__cause__, RecursionError)


def test_a_har_nested_too_deep_before_its_entries(tmp_path):
    path = helpers.nested_har(tmp_path / "pages.har", 2, TOO_DEEP, where="pages")
    got, err = _read(path)
    assert got == [] and err.index == 0
    assert "the HAR document is nested too deeply" in str(err)


def test_a_har_nested_deep_but_within_the_limit_reads(tmp_path):
    path = helpers.nested_har(tmp_path / "ok.har", 2, 50)
    got, err = _read(path)  # the deep value is no HAR entry: a clear error too
    assert got == [0, 1] and err.index == 2
    assert "not a valid entry" in str(err)


@pytest.mark.parametrize("good", [0, 3])
def test_a_flow_record_nested_too_deep_keeps_the_flows_before_it(tmp_path, good):
    path = helpers.write_flows(
        tmp_path / "deep.flow", [helpers.http_flow(n) for n in range(good)]
    )
    with open(path, "ab") as fo:
        fo.write(helpers.nested_flow_record(2000))
        fo.write(helpers.nested_flow_record(3))  # never reached
    got, err = _read(path)
    assert got == list(range(good))
    assert err.index == good and err.path == str(path)
    assert f"flow {good} (from byte" in str(err) and "nested too deeply" in str(err)
    assert f"{good} flows were read" in str(err)


def test_a_flow_record_nested_a_little_is_read(tmp_path):
    path = helpers.write_flows(tmp_path / "ok.flow", [helpers.http_flow(0)])
    with open(path, "ab") as fo:
        fo.write(helpers.nested_flow_record(20))
    assert [e.index for e in load_capture(path)] == [0, 1]


def test_the_replay_reports_a_nested_capture_and_keeps_the_flows_before(tmp_path):
    from wasmkit.replay.run import replay
    from wasmkit.testing import filter_wat

    path = helpers.nested_har(tmp_path / "deep.har", 4, TOO_DEEP)
    result = replay(filter_wat(""), path)
    assert [f.index for f in result.flows] == [0, 1, 2, 3]
    assert result.capture_error is not None
    assert "entry 4 is nested too deeply" in result.capture_error


@pytest.mark.parametrize("where", ["head", "middle", "tail"])
def test_a_capture_rewritten_in_place_is_not_served_from_the_cache(
    tmp_path, capture_cache, where
):
    # Same size, same mtime (set back): only the contents changed.
    flows = [helpers.http_flow(n) for n in range(400)]
    path = helpers.write_flows(tmp_path / "c.flow", flows)
    before = list(load_capture(path))
    warm = load_capture(path)
    assert list(warm) == before and warm.stats.from_cache
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * (1 << 16)
    at = {"head": 0, "middle": len(data) // 2, "tail": len(data) - 1}[where]
    marker = b"/item/"
    found = data.find(marker, at) if where != "tail" else data.rfind(marker)
    data[found + 1 : found + 5] = b"ITEM"  # /ITEM/n: same length
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    cap = load_capture(path)
    after = list(cap)
    assert not cap.stats.from_cache
    assert any(e.request.path.startswith("/ITEM/") for e in after)
    assert after != before
