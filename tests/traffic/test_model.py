from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmkit.host.message import Connection
from wasmkit.traffic.model import (
    CaptureStats,
    Exchange,
    Headers,
    Request,
    Response,
)


def test_headers_keep_bytes_order_and_repeats():
    h = Headers(
        [(b"Accept", b"text/html"), (b"X-A", b"1"), (b"accept", b"application/json")]
    )
    assert h["ACCEPT"] == "text/html, application/json"
    assert h.get_all("accept") == ["text/html", "application/json"]
    assert h.get_all_raw(b"x-a") == [b"1"]
    assert list(h) == ["Accept", "X-A"]
    assert len(h) == 2
    assert "x-a" in h and "nope" not in h
    assert b"X-A" in h and 3 not in h  # type: ignore[comparison-overlap]
    assert h.fields == (
        (b"Accept", b"text/html"),
        (b"X-A", b"1"),
        (b"accept", b"application/json"),
    )


def test_headers_set_all_replaces_in_place():
    h = Headers([(b"A", b"1"), (b"B", b"2"), (b"a", b"3"), (b"C", b"4")])
    h.set_all("a", ["x", "y"])
    assert h.fields == ((b"a", b"x"), (b"a", b"y"), (b"B", b"2"), (b"C", b"4"))
    h["D"] = "new"
    assert h.fields[-1] == (b"D", b"new")
    del h["a"]
    assert list(h) == ["B", "C", "D"]
    with pytest.raises(KeyError):
        del h["a"]
    with pytest.raises(KeyError):
        h["a"]
    h.add("B", "again")
    h.insert(0, b"First", b"0")
    assert h.fields[0] == (b"First", b"0")
    assert h.get_all("b") == ["2", "again"]


def test_headers_str_views_are_surrogateescaped():
    h = Headers([(b"X-Bin", b"\xff\x00ok")])
    text = h["x-bin"]
    assert text.encode("utf-8", "surrogateescape") == b"\xff\x00ok"
    h["x-bin"] = text
    assert h.fields == ((b"x-bin", b"\xff\x00ok"),)


def test_headers_constructor_checks_types_and_kwargs():
    with pytest.raises(TypeError):
        Headers([("str", b"x")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        Headers().add(1, "x")  # type: ignore[arg-type]
    h = Headers(content_type="text/plain")
    assert h.fields == ((b"content-type", b"text/plain"),)


def test_headers_equality_copy_pickle_bytes():
    h = Headers([(b"A", b"1"), (b"A", b"2")])
    assert h == Headers([(b"A", b"1"), (b"A", b"2")])
    assert h != Headers([(b"A", b"2"), (b"A", b"1")])
    assert h != {"A": "1, 2"}
    c = h.copy()
    c.add("B", "3")
    assert len(h.fields) == 2
    assert pickle.loads(pickle.dumps(h)) == h
    assert bytes(h) == b"A: 1\r\nA: 2\r\n"
    assert "A" in repr(h)
    with pytest.raises(TypeError):
        hash(h)


fields = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=8).filter(lambda b: b":" not in b),
        st.binary(max_size=16),
    ),
    max_size=12,
)


@given(fields)
def test_headers_round_trip_fields_and_fold(pairs):
    h = Headers(pairs)
    assert list(h.fields) == pairs
    assert h.to_pairs() == [(k.lower(), v) for k, v in pairs]
    for name in {k for k, _ in pairs}:
        raw = [v for k, v in pairs if k.lower() == name.lower()]
        assert h.get_all_raw(name) == raw
        assert h[name.decode("utf-8", "surrogateescape")].encode(
            "utf-8", "surrogateescape"
        ) == b", ".join(raw)


@given(fields, st.binary(min_size=1, max_size=8), st.lists(st.binary(max_size=8)))
def test_headers_set_all_keeps_other_fields_in_order(pairs, name, values):
    h = Headers(pairs)
    h.set_all(name, values)
    others = [(k, v) for k, v in pairs if k.lower() != name.lower()]
    assert [f for f in h.fields if f[0].lower() != name.lower()] == others
    assert h.get_all_raw(name) == values


def _request(**kw: object) -> Request:
    base = dict(
        method="GET",
        scheme="https",
        host="10.0.0.1",
        port=443,
        path="/p?q=1",
        headers=Headers([(b"Host", b"example.com"), (b"X-A", b"1")]),
    )
    base.update(kw)
    return Request(**base)  # type: ignore[arg-type]


def test_request_message_has_envoy_pseudo_headers():
    msg = _request().to_message()
    assert msg.headers == [
        (b":authority", b"example.com"),
        (b":path", b"/p?q=1"),
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b"x-a", b"1"),
    ]
    assert msg.trailers is None


@pytest.mark.parametrize(
    ("kw", "authority"),
    [
        ({"authority": "h2.example.com"}, "h2.example.com"),
        ({"headers": Headers()}, "10.0.0.1"),
        ({"headers": Headers(), "port": 8443}, "10.0.0.1:8443"),
        ({"headers": Headers(), "scheme": "http", "port": 80}, "10.0.0.1"),
    ],
)
def test_authority_falls_back_from_host_header_to_target(kw, authority):
    req = _request(**kw)
    assert req.pretty_authority == authority
    assert req.to_message().get(b":authority") == authority.encode()


def test_url():
    assert _request().url == "https://example.com/p?q=1"
    assert _request(method="CONNECT", path="").url == "example.com"


def test_response_message_and_trailers():
    resp = Response(
        204,
        headers=Headers([(b"X-B", b"2")]),
        trailers=Headers([(b"Grpc-Status", b"0")]),
    )
    msg = resp.to_message()
    assert msg.headers == [(b":status", b"204"), (b"x-b", b"2")]
    assert msg.trailers == [(b"grpc-status", b"0")]
    assert msg.status == 204


def test_exchange_request_only_and_connection():
    ok = Exchange(0, _request(), Response(200), client_address="1.2.3.4")
    assert not ok.request_only
    assert ok.to_response_message() is not None
    failed = Exchange(1, _request(), Response(200), error="connection reset")
    assert failed.request_only and failed.to_response_message() is None
    missing = Exchange(2, _request(), timestamp_start=5.0)
    assert missing.request_only and missing.timestamp == 5.0
    assert Exchange(3, _request(timestamp_start=7.0)).timestamp == 7.0

    conn = Exchange(
        0,
        _request(),
        client_address="1.2.3.4",
        client_port=5555,
        listen_address="10.0.0.9",
        listen_port=8080,
        server_address="9.9.9.9",
        server_port=443,
        tls=True,
        tls_version="TLSv1.3",
        sni="example.com",
        mtls=True,
    ).connection()
    assert conn == Connection(
        "1.2.3.4",
        5555,
        "10.0.0.9",
        8080,
        "9.9.9.9",
        443,
        "TLSv1.3",
        "example.com",
        True,
    )
    plain = Exchange(0, _request(), sni="ignored").connection()
    assert plain.tls_version is None and plain.sni is None
    assert plain.source_address == Connection().source_address


def test_stats_report():
    stats = CaptureStats(flows=9, exchanges=5, request_only=2, websocket_messages=3)
    stats.count_skip("tcp")
    stats.count_skip("dns")
    stats.count_skip("tcp")
    stats.filtered_out = 1
    text = stats.report()
    assert text == (
        "9 flows: 5 HTTP exchanges (2 request-only: error or no response); "
        "skipped 1 dns, 2 tcp; 3 WebSocket messages not replayed; 1 filtered out"
    )
    assert stats.as_dict()["skipped"] == {"tcp": 2, "dns": 1}
