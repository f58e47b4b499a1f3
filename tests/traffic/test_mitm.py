from __future__ import annotations

import base64
import gzip
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import flow
from mitmproxy.io import FlowWriter, tnetstring
from mitmproxy.test import tflow

from tests.traffic import golden, helpers
from wasmkit.errors import CaptureError, CaptureFormatError, CaptureReadError
from wasmkit.traffic.mitm import FLOW_FORMAT_VERSION, read_flows, sniff
from wasmkit.traffic.model import CaptureStats, Exchange, Skipped


def exchanges(path: Path, **kw: Any) -> list[Exchange]:
    out = []
    for item in read_flows(path, **kw):
        assert isinstance(item, Exchange)
        out.append(item)
    return out


def flow_file_with_offsets(flows: Sequence[flow.Flow]) -> tuple[bytes, list[int]]:
    """The bytes of a .flow file and the offset where each flow ends."""
    buf = io.BytesIO()
    writer = FlowWriter(buf)  # type: ignore[no-untyped-call]
    ends = []
    for f in flows:
        writer.add(f)
        ends.append(buf.tell())
    return buf.getvalue(), ends


# --- round trips ---------------------------------------------------------------


def test_http_flow_round_trip(tmp_path):
    f = helpers.http_flow(5)
    path = helpers.write_flows(tmp_path / "one.flow", [f])
    (ex,) = exchanges(path)
    assert ex.index == 0 and ex.id == "flow-5"
    rq, rs = ex.request, ex.response
    assert (rq.method, rq.scheme, rq.host, rq.port) == ("GET", "http", "address", 22)
    assert rq.path == "/item/5" and rq.http_version == "HTTP/1.1"
    assert rq.headers.fields == f.request.headers.fields
    assert rq.body == b"content" and rq.trailers is None
    assert (rq.timestamp_start, rq.timestamp_end) == (946681205, 946681201)
    assert rs is not None and rs.status == 200 and rs.reason == "OK"
    assert f.response is not None
    assert rs.headers.fields == f.response.headers.fields
    assert rs.body == b"message"
    assert (rs.timestamp_start, rs.timestamp_end) == (946681202, 946681203)
    assert ex.error is None and not ex.request_only and not ex.decoded
    assert (ex.client_address, ex.client_port) == ("127.0.0.1", 22)
    assert (ex.server_address, ex.server_port) == ("192.168.0.1", 22)
    assert (ex.tls, ex.tls_version, ex.sni, ex.alpn) == (
        True,
        "TLSv1.2",
        "address",
        "http/1.1",
    )
    assert (ex.timestamp_start, ex.timestamp_end) == (946681205, 946681203)
    msg = ex.to_request_message()
    assert msg.headers[:4] == [
        (b":authority", b"address:22"),
        (b":path", b"/item/5"),
        (b":method", b"GET"),
        (b":scheme", b"http"),
    ]
    assert ex.connection().source_address == "127.0.0.1"
    resp = ex.to_response_message()
    assert resp is not None and resp.status == 200 and resp.body == b"message"


def test_repeated_headers_keep_order_and_bytes(tmp_path):
    path = helpers.write_flows(tmp_path / "r.flow", [helpers.repeated_headers_flow()])
    (ex,) = exchanges(path)
    h = ex.request.headers
    assert h.fields == (
        (b"Host", b"api.example.com"),
        (b"Accept", b"text/html"),
        (b"X-Dup", b"one"),
        (b"accept", b"application/json"),
        (b"X-Dup", b"two"),
        (b"X-Bin", b"\xff\xfe"),
    )
    assert h["accept"] == "text/html, application/json"
    assert h.get_all("x-dup") == ["one", "two"]
    assert ex.request.path == "/search?q=a%20b"
    msg = ex.to_request_message()
    assert msg.headers == [
        (b":authority", b"api.example.com"),
        (b":path", b"/search?q=a%20b"),
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b"accept", b"text/html"),
        (b"x-dup", b"one"),
        (b"accept", b"application/json"),
        (b"x-dup", b"two"),
        (b"x-bin", b"\xff\xfe"),
    ]
    assert ex.response is not None
    assert ex.response.headers.get_all("set-cookie") == ["a=1", "b=2"]


def test_bodies_as_on_the_wire_or_decoded(tmp_path):
    path = helpers.write_flows(tmp_path / "gz.flow", [helpers.gzip_flow()])
    (wire,) = exchanges(path)
    assert wire.response is not None
    assert wire.response.body[:2] == b"\x1f\x8b"
    assert wire.response.headers["content-encoding"] == "gzip"
    (plain,) = exchanges(path, decoded=True)
    assert plain.decoded
    assert plain.response is not None
    assert plain.response.body == b'{"hello": "world"}' * 10
    assert plain.response.headers.fields == ((b"Content-Type", b"application/json"),)
    # the request had no Content-Encoding: untouched
    assert plain.request.body == wire.request.body
    assert plain.request.headers == wire.request.headers


def test_undecodable_body_is_left_as_is(tmp_path):
    f = helpers.gzip_flow()
    assert f.response is not None
    f.response.raw_content = b"not gzip at all"
    path = helpers.write_flows(tmp_path / "bad.flow", [f])
    (ex,) = exchanges(path, decoded=True)
    assert ex.response is not None
    assert ex.response.body == b"not gzip at all"
    assert ex.response.headers["content-encoding"] == "gzip"


def test_trailers_and_http2_authority(tmp_path):
    path = helpers.write_flows(tmp_path / "t.flow", [helpers.trailers_flow()])
    (ex,) = exchanges(path)
    assert ex.request.http_version == "HTTP/2.0"
    assert ex.request.trailers is not None
    assert ex.request.trailers.fields == ((b"x-req-trailer", b"r"),)
    assert ex.response is not None and ex.response.trailers is not None
    assert ex.response.trailers.get_all("grpc-status") == ["0"]
    assert ex.to_request_message().get(b":authority") == b"grpc.example.com"
    msg = ex.to_response_message()
    assert msg is not None
    assert msg.trailers == [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]


def test_mixed_capture_counts_and_skips(tmp_path):
    path = helpers.write_flows(tmp_path / "mixed.flow", helpers.mixed_flows())
    stats = CaptureStats()
    items = list(read_flows(path, stats=stats))
    kinds = [(x.index, x.kind if isinstance(x, Skipped) else "http") for x in items]
    assert kinds == [
        (0, "http"),
        (1, "http"),
        (2, "tcp"),
        (3, "http"),
        (4, "udp"),
        (5, "http"),
        (6, "dns"),
        (7, "http"),
    ]
    by_index = {x.index: x for x in items if isinstance(x, Exchange)}
    err = by_index[1]
    assert err.request_only and err.error == "error" and err.response is None
    assert err.timestamp_end == 946681207  # the error's time
    assert err.to_response_message() is None
    pending = by_index[3]
    assert pending.request_only and pending.error is None
    ws = by_index[5]
    assert ws.websocket_messages == 3 and not ws.request_only
    assert ws.response is not None and ws.response.status == 101
    assert stats.flows == 8 and stats.exchanges == 5 and stats.request_only == 2
    assert stats.skipped == {"tcp": 1, "udp": 1, "dns": 1}
    assert stats.websocket_messages == 3
    assert stats.format == "flow" and stats.format_version == str(FLOW_FORMAT_VERSION)
    assert "skipped 1 dns, 1 tcp, 1 udp" in stats.report()


def test_filter_expression(tmp_path):
    flows = [
        helpers.http_flow(0),
        helpers.http_flow(1, method=b"POST"),
        tflow.ttcpflow(),
    ]
    path = helpers.write_flows(tmp_path / "f.flow", flows)
    stats = CaptureStats()
    got = [x for x in read_flows(path, filter_expr="~m POST", stats=stats)]
    assert [(x.index, type(x).__name__) for x in got] == [
        (1, "Exchange"),
        (2, "Skipped"),
    ]
    assert stats.filtered_out == 1
    with pytest.raises(ValueError, match="Invalid filter"):
        read_flows(path, filter_expr="~q ((")


def test_reading_is_streamed(tmp_path):
    data, _ = flow_file_with_offsets([helpers.http_flow(0)])
    path = tmp_path / "s.flow"
    path.write_bytes(data + b"999999:" + b"x" * 100)
    flows = read_flows(path)
    assert not isinstance(flows, list | tuple)  # a generator, not a list
    first = next(flows)
    assert isinstance(first, Exchange) and first.index == 0
    with pytest.raises(CaptureReadError) as info:
        next(flows)
    assert info.value.index == 1


def test_empty_file_has_no_flows(tmp_path):
    path = tmp_path / "empty.flow"
    path.write_bytes(b"")
    stats = CaptureStats()
    assert list(read_flows(path, stats=stats)) == []
    assert sniff(path) is None and stats.flows == 0


# --- damage --------------------------------------------------------------------


def test_truncated_capture_yields_flows_before_and_names_the_flow(tmp_path):
    flows = [helpers.http_flow(n) for n in range(4)]
    data, ends = flow_file_with_offsets(flows)
    path = tmp_path / "cut.flow"
    cuts = sorted(
        {1, 5, ends[0] - 1, ends[0], ends[0] + 3, ends[1] + 100, ends[2], len(data) - 1}
    )
    for cut in cuts:
        path.write_bytes(data[:cut])
        complete = sum(1 for end in ends if end <= cut)
        got: list[int] = []
        if cut in ends:
            got = [x.index for x in read_flows(path)]
            assert got == list(range(complete)), cut
            continue
        with pytest.raises(CaptureReadError) as info:
            got.extend(x.index for x in read_flows(path))
        assert got == list(range(complete)), cut
        err = info.value
        assert err.index == complete and err.path == str(path)
        assert "truncated" in str(err) and f"flow {complete}" in str(err)
        assert err.format_version in (None, str(FLOW_FORMAT_VERSION))


def test_corrupt_flow_in_the_middle(tmp_path):
    flows = [helpers.http_flow(n) for n in range(3)]
    data, ends = flow_file_with_offsets(flows)
    broken = data[: ends[0]] + b"12:hello world!}" + data[ends[0] :]
    path = tmp_path / "bad.flow"
    path.write_bytes(broken)
    got: list[Exchange | Skipped] = []
    with pytest.raises(CaptureReadError) as info:
        got.extend(read_flows(path))
    assert [x.index for x in got] == [0]
    assert info.value.index == 1 and "corrupt" in str(info.value)
    assert isinstance(info.value.__cause__, Exception)


def test_garbage_is_not_a_capture(tmp_path):
    path = tmp_path / "garbage.flow"
    path.write_bytes(b"\x00\x01PNG this is not a capture")
    with pytest.raises(CaptureFormatError, match=r"not a mitmproxy \.flow or HAR"):
        read_flows(path)
    path.write_bytes(b"123abc")
    with pytest.raises(CaptureFormatError):
        list(read_flows(path))
    path.write_bytes(b"5:hello,")  # a tnetstring, but no flow
    with pytest.raises(CaptureFormatError):
        list(read_flows(path))


def test_missing_file(tmp_path):
    with pytest.raises(CaptureError, match="cannot open"):
        read_flows(tmp_path / "nope.flow")


def _state(version: object) -> bytes:
    state = helpers.http_flow(0).get_state()
    state["version"] = version
    return tnetstring.dumps(state)


@pytest.mark.parametrize("position", [0, 1])
def test_newer_flow_version_is_named(tmp_path, position):
    good, _ = flow_file_with_offsets([helpers.http_flow(0)] * position)
    path = tmp_path / "new.flow"
    path.write_bytes(good + _state(FLOW_FORMAT_VERSION + 78))
    got: list[Exchange | Skipped] = []
    with pytest.raises(CaptureReadError) as info:
        got.extend(read_flows(path))
    assert len(got) == position
    err = info.value
    assert err.index == position and err.format_version == str(FLOW_FORMAT_VERSION + 78)
    assert f"flow format version {FLOW_FORMAT_VERSION + 78}" in str(err)
    assert "update mitmproxy" in str(err)


def test_unknown_old_version_is_named(tmp_path):
    path = tmp_path / "odd.flow"
    path.write_bytes(_state([0, 3]))
    with pytest.raises(CaptureReadError, match=r"flow format version 0\.3"):
        list(read_flows(path))


def test_flow_over_the_size_limit(tmp_path):
    data, _ = flow_file_with_offsets([helpers.http_flow(0)])
    path = tmp_path / "big.flow"
    path.write_bytes(data)
    with pytest.raises(CaptureReadError, match="too large") as info:
        list(read_flows(path, max_flow_bytes=100))
    assert info.value.index == 0


# --- HAR -----------------------------------------------------------------------


def test_har_entries(tmp_path):
    path = helpers.write_har(
        tmp_path / "a.har", [helpers.har_entry(n) for n in range(3)]
    )
    stats = CaptureStats()
    got = exchanges(path, stats=stats)
    assert sniff(path) == "har"
    assert stats.format == "har" and stats.format_version == "1.2"
    assert [x.request.method for x in got] == ["GET", "POST", "GET"]
    ex = got[1]
    assert ex.request.url == "https://example.com/api/1?x=1"
    assert ex.request.headers.get_all("accept") == ["*/*", "text/plain"]
    assert ex.request.body == b"body"
    assert ex.response is not None and ex.response.body == b"hi 01"
    assert ex.tls and ex.tls_version is None and ex.client_address is None
    assert (ex.server_address, ex.server_port) == ("93.184.216.34", 443)
    assert ex.timestamp_start == pytest.approx(1714557601.0)
    assert ex.timestamp_end == pytest.approx(1714557601.0125)
    assert ex.connection().tls_version == "TLS"


def test_har_failed_request_is_request_only(tmp_path):
    entries = golden.har_entries()
    path = helpers.write_har(tmp_path / "f.har", entries)
    got = exchanges(path)
    assert got[3].request_only and got[3].error == "net::ERR_CONNECTION_REFUSED"


def test_har_layouts_bom_whitespace_key_order_and_large_entries(tmp_path):
    big = helpers.har_entry(0)
    big["response"]["content"]["text"] = "x" * 300_000
    doc = {
        "log": {
            "entries": [big, helpers.har_entry(1)],
            "creator": {"name": "t", "version": "1"},
            "version": "1.2",
        },
        "extra": [1, 2, {"a": None}],
    }
    path = tmp_path / "b.har"
    path.write_bytes(b"\xef\xbb\xbf  \n" + json.dumps(doc, indent=3).encode())
    stats = CaptureStats()
    got = exchanges(path, stats=stats)
    assert len(got) == 2 and got[0].response is not None
    assert len(got[0].response.body) == 300_000
    assert stats.format_version == "1.2"
    path.write_text('{"log": {"entries": []}}')
    assert exchanges(path) == []


def test_har_decoded_gzip(tmp_path):
    entry = helpers.har_entry(0)
    entry["response"]["headers"].append({"name": "Content-Encoding", "value": "gzip"})
    path = helpers.write_har(tmp_path / "g.har", [entry])
    (wire,) = exchanges(path)
    assert wire.response is not None
    assert gzip.decompress(wire.response.body) == b"hi 00"
    (plain,) = exchanges(path, decoded=True)
    assert plain.response is not None and plain.response.body == b"hi 00"


def test_har_truncated_anywhere(tmp_path):
    entries = [helpers.har_entry(n) for n in range(3)]
    path = helpers.write_har(tmp_path / "t.har", entries)
    text = path.read_bytes()
    ends = []
    for entry in entries:
        chunk = json.dumps(entry).encode()
        ends.append(text.index(chunk) + len(chunk))
    first = text.index(b"[{") + 1  # where the entries start
    out = tmp_path / "cut.har"
    for cut in sorted(
        {first, first + 10, ends[0] - 1, ends[0], ends[1] + 7, ends[2], len(text) - 1}
    ):
        out.write_bytes(text[:cut])
        got: list[int] = []
        with pytest.raises(CaptureReadError) as info:
            got.extend(x.index for x in read_flows(out))
        complete = sum(1 for end in ends if end <= cut)
        assert got == list(range(complete)), cut
        assert info.value.index == complete and info.value.format_version == "1.2"
        assert "truncated" in str(info.value)


def test_har_bad_entry_and_not_har(tmp_path):
    entries = [helpers.har_entry(0), {"request": {}}, helpers.har_entry(2)]
    path = helpers.write_har(tmp_path / "bad.har", entries)
    got: list[Exchange | Skipped] = []
    with pytest.raises(CaptureReadError, match="entry 1") as info:
        got.extend(read_flows(path))
    assert len(got) == 1 and info.value.index == 1
    path.write_text('{"hello": "world"}')
    with pytest.raises(CaptureFormatError, match=r"no log\.entries"):
        list(read_flows(path))
    path.write_text('{"log": {"entries": [} }')
    with pytest.raises(CaptureReadError):
        list(read_flows(path))
    path.write_text("{nope")
    with pytest.raises(CaptureFormatError):
        list(read_flows(path))
    path.write_bytes(b'{"log": {"entries": [\xff]}}')
    with pytest.raises(CaptureReadError, match="UTF-8"):
        list(read_flows(path))
    path.write_text('{"log": {"entries": []}} trailing')
    with pytest.raises(CaptureReadError, match="after the end"):
        list(read_flows(path))


# --- golden files ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [*golden.FLOW_FILES.values(), golden.HAR_FILE], ids=lambda n: n
)
def test_golden_files_read_as_recorded(name):
    expected = json.loads((golden.DATA / golden.EXPECTED).read_text())
    assert golden.read_all(name) == expected[name]


def test_golden_flow_versions_are_what_they_say():
    for version, name in golden.FLOW_FILES.items():
        stats = CaptureStats()
        list(read_flows(golden.DATA / name, stats=stats))
        assert stats.format_version == version
        assert stats.exchanges == 6 and stats.skipped == {"tcp": 1, "dns": 1}
    assert str(FLOW_FORMAT_VERSION) in golden.FLOW_FILES


# --- fuzz ----------------------------------------------------------------------

_FLOW_DATA, _FLOW_ENDS = flow_file_with_offsets(golden.golden_flows())
_HAR_DATA = (golden.DATA / golden.HAR_FILE).read_bytes()


def _read_only_declared(path: Path) -> tuple[int, CaptureError | None]:
    count = 0
    try:
        for _ in read_flows(path, max_flow_bytes=1 << 20):
            count += 1
    except CaptureError as exc:
        return count, exc
    return count, None


fuzz = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@fuzz
@given(st.sampled_from(["flow", "har"]), st.data())
def test_truncation_anywhere_raises_only_declared_errors(tmp_path, fmt, data):
    blob = _FLOW_DATA if fmt == "flow" else _HAR_DATA
    cut = data.draw(st.integers(min_value=0, max_value=len(blob)))
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(blob[:cut])
    count, err = _read_only_declared(path)
    if fmt == "flow":
        assert count == sum(1 for end in _FLOW_ENDS if end <= cut)
        if cut in (0, *_FLOW_ENDS):
            assert err is None
        else:
            assert isinstance(err, CaptureReadError) and err.index == count
    elif cut < _HAR_DATA.index(b'"entries": [') + len(b'"entries": ['):
        assert cut == 0 or isinstance(err, CaptureFormatError)  # not yet a HAR
    elif cut < len(blob.rstrip()):
        assert isinstance(err, CaptureReadError) and err.index == count
    else:
        assert err is None and count == 4


@fuzz
@given(
    st.sampled_from(["flow", "har"]),
    st.lists(
        st.tuples(st.integers(min_value=0), st.binary(min_size=1, max_size=4)),
        min_size=1,
        max_size=4,
    ),
)
def test_corruption_anywhere_raises_only_declared_errors(tmp_path, fmt, edits):
    blob = bytearray(_FLOW_DATA if fmt == "flow" else _HAR_DATA)
    for pos, junk in edits:
        at = pos % len(blob)
        blob[at : at + len(junk)] = junk
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(bytes(blob))
    _read_only_declared(path)


_names = st.binary(min_size=1, max_size=10).filter(
    lambda b: b.strip() == b and b":" not in b
)


@fuzz
@given(
    st.lists(st.tuples(_names, st.binary(max_size=20)), max_size=10),
    st.binary(max_size=300),
    st.binary(max_size=40),
    st.sampled_from([b"GET", b"POST", b"PUT", b"X-CUSTOM"]),
    st.one_of(
        st.none(), st.lists(st.tuples(_names, st.binary(max_size=8)), max_size=3)
    ),
)
def test_any_flow_round_trips(tmp_path, fields, body, path_bytes, method, trailers):
    from mitmproxy import http
    from mitmproxy.test import tutils

    f = tflow.tflow(
        req=tutils.treq(
            method=method,
            path=b"/" + path_bytes,
            headers=http.Headers(fields),
            content=body,
            trailers=None if trailers is None else http.Headers(trailers),
        ),
        resp=True,
    )
    path = helpers.write_flows(tmp_path / "rt.flow", [f])
    (ex,) = exchanges(path)
    rq = ex.request
    assert rq.method.encode("utf-8", "surrogateescape") == method
    assert rq.path.encode("utf-8", "surrogateescape") == b"/" + path_bytes
    assert list(rq.headers.fields) == fields
    assert rq.body == body
    assert (rq.trailers is None) == (trailers is None)
    if trailers is not None:
        assert rq.trailers is not None and list(rq.trailers.fields) == trailers
    msg = ex.to_request_message()
    assert msg.body == body
    assert msg.get(b":path") == b"/" + path_bytes
    assert [p for p in msg.headers if not p[0].startswith(b":")] == [
        (k.lower(), v) for k, v in fields if k.lower() != b"host"
    ]


@pytest.mark.parametrize("fmt", ["flow", "har"])
def test_memory_stays_bounded_while_streaming(tmp_path, fmt):
    import tracemalloc

    body = bytes(range(256)) * 200  # 50 KiB per flow, 20 MiB in all
    if fmt == "flow":
        flows = []
        for n in range(400):
            f = helpers.http_flow(n)
            assert f.response is not None
            f.response.content = body
            flows.append(f)
        path = helpers.write_flows(tmp_path / "big.flow", flows)
    else:
        entries = []
        for n in range(400):
            entry = helpers.har_entry(n)
            entry["response"]["content"] = {
                "size": len(body),
                "encoding": "base64",
                "text": base64.b64encode(body).decode(),
            }
            entries.append(entry)
        path = helpers.write_har(tmp_path / "big.har", entries)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_flows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 400
    # A few flows' worth (mitmproxy's copies, the JSON text buffer), not the file.
    assert size > 20_000_000
    assert peak < 6_000_000, (peak, size)


def test_header_maps_over_the_abi_limits_are_skipped(tmp_path):
    from mitmproxy import http

    many = helpers.http_flow(0)
    many.request.headers = http.Headers([(b"x-h", b"%d" % i) for i in range(1025)])
    huge = helpers.http_flow(1)
    assert huge.response is not None
    huge.response.headers = http.Headers([(b"x-big", b"v" * (1 << 20))])
    path = helpers.write_flows(
        tmp_path / "big.flow", [many, huge, helpers.http_flow(2)]
    )
    stats = CaptureStats()
    items = list(read_flows(path, stats=stats))
    assert [type(x).__name__ for x in items] == ["Skipped", "Skipped", "Exchange"]
    assert isinstance(items[0], Skipped) and "1025 request headers" in items[0].reason
    assert isinstance(items[1], Skipped) and "response headers" in items[1].reason
    assert stats.skipped == {"oversized": 2} and stats.exchanges == 1
