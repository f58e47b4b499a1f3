from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.traffic import helpers
from wasmkit.traffic import cache
from wasmkit.traffic.mitm import read_flows
from wasmkit.traffic.model import CaptureStats, Exchange, Headers, Request, Response

_fields = st.lists(st.tuples(st.binary(max_size=6), st.binary(max_size=6)), max_size=4)
_headers = _fields.map(Headers)
_opt_headers = st.one_of(st.none(), _headers)
_time = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
_text = st.text(max_size=8)

requests = st.builds(
    Request,
    method=_text,
    scheme=_text,
    host=_text,
    port=st.integers(0, 65535),
    path=_text,
    http_version=_text,
    headers=_headers,
    body=st.binary(max_size=32),
    trailers=_opt_headers,
    authority=_text,
    timestamp_start=_time,
    timestamp_end=_time,
)
responses = st.builds(
    Response,
    status=st.integers(0, 999),
    reason=_text,
    http_version=_text,
    headers=_headers,
    body=st.binary(max_size=32),
    trailers=_opt_headers,
    timestamp_start=_time,
    timestamp_end=_time,
)
_opt_text = st.one_of(st.none(), _text)
_opt_port = st.one_of(st.none(), st.integers(0, 65535))
exchanges = st.builds(
    Exchange,
    index=st.integers(0, 2**40),
    request=requests,
    response=st.one_of(st.none(), responses),
    error=_opt_text,
    id=_text,
    client_address=_opt_text,
    client_port=_opt_port,
    listen_address=_opt_text,
    listen_port=_opt_port,
    server_address=_opt_text,
    server_port=_opt_port,
    tls=st.booleans(),
    tls_version=_opt_text,
    sni=_opt_text,
    alpn=_opt_text,
    mtls=st.booleans(),
    timestamp_start=_time,
    timestamp_end=_time,
    decoded=st.booleans(),
    websocket_messages=st.integers(0, 1000),
)


@given(exchanges)
def test_encode_decode_round_trip(ex):
    assert cache.decode(cache.encode(ex)) == ex


def test_writer_and_reader(tmp_path):
    src = helpers.write_flows(tmp_path / "a.flow", helpers.mixed_flows())
    stats = CaptureStats(path=str(src))
    items = [x for x in read_flows(src, stats=stats) if isinstance(x, Exchange)]
    entry = cache.entry_path(src, decoded=False, root=tmp_path / "c")
    writer = cache.CacheWriter(entry)
    for ex in items:
        writer.add(ex)
    assert not entry.exists()  # only complete entries are visible
    writer.commit(stats)
    writer.commit(stats)  # a second commit does nothing
    reader = cache.CacheReader(entry)
    assert list(reader) == items
    assert reader.stats is not None and reader.stats.from_cache
    assert reader.stats.skipped == stats.skipped and reader.stats.flows == 8


def test_abort_leaves_nothing(tmp_path):
    entry = tmp_path / "c" / "x-y.exchanges"
    writer = cache.CacheWriter(entry)
    writer.abort()
    writer.abort()
    assert list((tmp_path / "c").iterdir()) == []


def test_entry_path_follows_the_file(tmp_path):
    src = helpers.write_flows(tmp_path / "a.flow", [helpers.http_flow(0)])
    one = cache.entry_path(src, decoded=False, root=tmp_path)
    assert one == cache.entry_path(src, decoded=False, root=tmp_path)
    assert one != cache.entry_path(src, decoded=True, root=tmp_path)
    src.write_bytes(src.read_bytes() + b"")
    helpers.write_flows(src, [helpers.http_flow(0), helpers.http_flow(1)])
    assert one != cache.entry_path(src, decoded=False, root=tmp_path)
    with pytest.raises(OSError):
        cache.entry_path(tmp_path / "missing", decoded=False)


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("WASMKIT_CACHE", str(tmp_path))
    assert cache.cache_root() == tmp_path / "captures"
    monkeypatch.delenv("WASMKIT_CACHE")
    assert cache.cache_root() == Path.home() / ".cache" / "wasmkit" / "captures"


@pytest.mark.parametrize(
    "frames",
    [b"", b"\x00" * 8, b"\x00\x00\x00\x00\x00\x00\x00\x05ab"],
)
def test_reader_rejects_damage(tmp_path, frames):
    entry = tmp_path / "bad.exchanges"
    entry.write_bytes(frames)
    with pytest.raises((ValueError, EOFError)):
        list(cache.CacheReader(entry))
