"""Records on disk, the summary as a Dask DataFrame, captures by fsspec URL.

A real ``distributed.LocalCluster`` of two worker processes (started once for
the module), the sample captures, and the records each partition writes.
"""

from __future__ import annotations

import dataclasses
import http.server
import importlib.util
import json
import threading
import zipfile
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pytest

from tests.host.test_safety import TRAP_ON_BOOM
from tests.replay.test_parallel import _same_results, _stable
from tests.replay.test_run import ADD, FLOW
from wasmkit.errors import CaptureError, ReplayError
from wasmkit.replay import parallel, partitions, sources
from wasmkit.replay.run import replay
from wasmkit.replay.stored import MANIFEST, StoredRecords
from wasmkit.traffic import load_capture


@pytest.fixture(scope="module", autouse=True)
def _local_cluster():
    yield
    parallel.shutdown_workers()


def _without_us(frame):
    return frame.drop(columns="us")


def test_keep_summary_on_dask_streams_every_record_to_partition_files():
    one = replay(TRAP_ON_BOOM, FLOW)  # one process, every flow kept
    two = replay(TRAP_ON_BOOM, FLOW, workers=2, keep="summary", partitions=3)
    # Only the failed flows came back in full; the totals count them all.
    assert len(two.flows) == len(one.failed) < 17
    assert two.totals.flows == 17
    assert (two.totals.modified, two.totals.failed, two.totals.actions) == (
        one.totals.modified,
        one.totals.failed,
        one.totals.actions,
    )
    stored = two.stored
    assert stored is not None and stored.owned and len(stored) == 17
    folder = Path(stored.folder)
    assert [(p.number, p.start, p.flows) for p in stored.parts] == [
        (0, 0, 6),
        (1, 6, 6),
        (2, 12, 5),
    ]
    # The VM failed in partition 0 stays failed: the later partitions were
    # replayed again, and only those files remain.
    assert sorted(f.name for f in folder.iterdir()) == sorted(
        [MANIFEST, *(Path(f).name for f in stored.files)]
    )
    assert [Path(f).name for f in stored.files[2:4]] == [
        "part-00001.r1.records.jsonl",
        "part-00001.r1.summary.jsonl",
    ]
    # Flow by flow, the records of one process.
    on_disk = list(two.iter_records())
    assert [r["index"] for r in on_disk] == [f.index for f in one.flows]
    for got, want in zip(on_disk, one.records(), strict=True):
        assert _stable(got) == _stable(want)
    # Read back by another session from the manifest.
    again = StoredRecords.open(folder)
    assert [r["index"] for r in again] == list(range(17))
    assert not again.owned
    # The temporary folder goes with the result.
    stored.close()
    assert not folder.exists()


def test_records_to_a_folder_as_a_path_or_a_file_url(tmp_path):
    one = replay(ADD, FLOW)
    for where in (tmp_path / "by-path", (tmp_path / "by-url").as_uri()):
        two = replay(ADD, FLOW, workers=2, records_to=where)
        assert two.stored is not None and not two.stored.owned
        assert len(two.flows) == 17  # keep="all": kept here as well
        assert [_stable(r) for r in two.stored] == _stable(one.records())
        manifest = json.loads(
            Path(tmp_path / Path(str(where)).name / MANIFEST).read_text()
        )
        assert manifest["flows"] == 17 and not manifest["interrupted"]
    # A folder written before holds the last replay only.
    three = replay(ADD, FLOW, workers=2, records_to=tmp_path / "by-path", partitions=3)
    assert len(list((tmp_path / "by-path").glob("part-*"))) == 6
    assert len(StoredRecords.open(tmp_path / "by-path").parts) == 3
    assert [r["index"] for r in three.stored] == list(range(17))


def test_streamed_json_is_the_records_to_json_writes(tmp_path):
    one = replay(ADD, FLOW)
    one.to_json(tmp_path / "one.json")
    two = replay(ADD, FLOW, workers=2, keep="summary", partitions=2)
    two.stored.to_json(tmp_path / "two.json")
    got = json.loads((tmp_path / "two.json").read_text())
    want = json.loads((tmp_path / "one.json").read_text())
    assert _stable(got) == _stable(want)


def test_the_dask_summary_is_the_pandas_summary_and_round_trips_parquet(tmp_path):
    one = replay(TRAP_ON_BOOM, FLOW)
    want = one.summary()
    two = replay(TRAP_ON_BOOM, FLOW, workers=2, keep="summary", partitions=3)
    lazy = two.summary(lazy=True)
    assert isinstance(lazy, dd.DataFrame)
    assert lazy.npartitions == 3 and lazy.divisions == (0, 6, 12, 16)
    assert list(lazy.columns) == list(want.columns)
    assert dict(lazy.dtypes) == dict(want.dtypes)
    got = lazy.compute()
    assert dict(got.dtypes) == dict(want.dtypes)
    pd.testing.assert_frame_equal(_without_us(got), _without_us(want))
    # Only the failed flows are in memory: the eager summary has those.
    assert len(two.summary()) == len(one.failed)
    # Parquet, written partition by partition, reads back the same.
    lazy.to_parquet(tmp_path / "summary.parquet")
    back = dd.read_parquet(tmp_path / "summary.parquet").compute()
    pd.testing.assert_frame_equal(back, got, check_frame_type=False)
    flat = pd.read_parquet(tmp_path / "summary.parquet")
    assert dict(flat.dtypes) == dict(want.dtypes)
    assert flat["index"].tolist() == list(range(17))


def test_one_process_writes_its_records_when_asked(tmp_path):
    one = replay(TRAP_ON_BOOM, FLOW, records_to=tmp_path / "records")
    stored = one.stored
    assert stored is not None and len(stored.parts) == 1 and len(stored) == 17
    assert list(stored) == one.records()
    # The very same flows: the lazy summary equals the eager one, µs included.
    pd.testing.assert_frame_equal(
        one.summary(lazy=True).compute(), one.summary(), check_frame_type=False
    )
    pd.testing.assert_frame_equal(
        stored.summary(lazy=False), one.summary(), check_frame_type=False
    )
    # Without records on disk, the lazy summary holds the kept flows.
    plain = replay(ADD, FLOW)
    assert plain.stored is None
    pd.testing.assert_frame_equal(
        plain.summary(lazy=True).compute(), plain.summary(), check_frame_type=False
    )
    temporary = replay(ADD, FLOW, keep="summary", records_to=True)
    folder = Path(temporary.stored.folder)
    assert temporary.stored.owned and len(list(temporary.iter_records())) == 17
    del temporary
    assert not folder.exists()


def test_records_to_a_file_is_one_line(tmp_path):
    target = tmp_path / "a-file"
    target.write_text("")
    with pytest.raises(ReplayError) as info:
        replay(ADD, FLOW, workers=2, records_to=target)
    assert str(target) in str(info.value) and "\n" not in str(info.value)
    # records_to=False: no files even with keep="summary" on the local cluster.
    assert replay(ADD, FLOW, workers=2, keep="summary", records_to=False).stored is None


def test_a_file_url_replays_as_its_path():
    url = FLOW.absolute().as_uri()
    by_path = replay(ADD, FLOW, workers=2)
    by_url = replay(ADD, url, workers=2)
    assert _stable(by_url.records()) == _stable(by_path.records())
    _same_results(by_path, by_url)
    # The partition index is the URL's, over the same cache entry.
    index = partitions.index_capture(url, decoded=False)
    assert index is not None and index.capture == url
    assert index.entry == partitions.index_capture(FLOW, decoded=False).entry
    # One process reads the URL too.
    assert _stable(replay(ADD, url).records()) == _stable(by_path.records())


def test_a_capture_inside_a_zip_archive_by_fsspec_url(tmp_path):
    archive = tmp_path / "captures.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(FLOW, "api.flow")
    url = f"zip://api.flow::{archive.as_uri()}"
    by_path = replay(ADD, FLOW)
    by_url = replay(ADD, url, workers=2, partitions=2)
    assert _stable(by_url.records()) == _stable(by_path.records())
    # This machine's copy, named after the URL, feeds the warm-load cache.
    (copy,) = sources.remote_root().iterdir()
    assert copy.suffix == ".flow" and copy.read_bytes() == FLOW.read_bytes()
    assert sources.local_path(url) == copy
    # A worker that does not see the submitting process's cache entry reads
    # the URL itself.
    index = partitions.index_capture(url, decoded=False)
    assert index is not None and index.capture == url
    (part,) = partitions.plan([index], decoded=False, limit=None, partitions=2)[1:]
    elsewhere = dataclasses.replace(part.slices[0], entry=str(tmp_path / "gone"))
    assert list(partitions.read_slices([elsewhere])) == list(load_capture(FLOW))[9:]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def test_an_http_url(tmp_path):
    # A local HTTP server with the sample captures.
    root = FLOW.parent

    def handler(*args, **kwargs):
        return _Quiet(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{FLOW.name}"
        if importlib.util.find_spec("aiohttp") is not None:
            by_url = replay(ADD, url, workers=2)
            assert _stable(by_url.records()) == _stable(replay(ADD, FLOW).records())
        else:
            # fsspec's HTTP file system needs aiohttp: one line says so.
            with pytest.raises(CaptureError) as info:
                replay(ADD, url, workers=2)
            message = str(info.value)
            assert message.startswith(url) and "aiohttp" in message
            assert "\n" not in message
    finally:
        server.shutdown()
        server.server_close()


def test_an_unknown_protocol_is_one_line():
    with pytest.raises(CaptureError) as info:
        replay(ADD, "nosuchproto://x/api.flow", workers=2)
    assert str(info.value).startswith("nosuchproto://x/api.flow: cannot open")
