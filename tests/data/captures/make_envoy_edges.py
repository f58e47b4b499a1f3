"""Write ``envoy_edges.flow``: the HTTP edge cases the Envoy comparison covers.

Made with mitmproxy's own API (``http.Request.make``, ``http.Response.make``,
``io.FlowWriter``), not by hand: fixed timestamps, addresses and bodies, so the
file is the same every run::

    .venv/bin/python tests/data/captures/make_envoy_edges.py [OUT]

| # | request | response | what it shows |
|---|---------|----------|---------------|
| 0 | HEAD /items/1 | 200, content-length 60, no body | HEAD keeps the length |
| 1 | GET /empty | 204 with content-length: 0 | 204 framing |
| 2 | POST /chunked (chunked body) | 200 chunked | chunked both ways |
| 3 | POST /gzip (gzip body) | 200 gzip | compressed bodies as on the wire |
| 4 | GET /repeat (x-dup x3, cookie x2) | 200, set-cookie x3, x-multi x2 | repeats |
| 5 | HEAD /denied | 200, content-length 12 | HEAD answered by a local reply |
| 6 | GET /cached | 304 with etag | no body by status |
| 7 | POST /empty-post (content-length: 0) | 200 | empty request body |
| 8 | GET /big-chunked | 200 chunked, 64 KiB | a chunked body over several reads |
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

from mitmproxy import connection, http, io

HERE = Path(__file__).resolve().parent
OUT = HERE / "envoy_edges.flow"
T0 = 1_780_000_000.0  # fixed timestamps: 2026-05-28
AGENT = b"wasmkit-edges/1"
DATE = b"Thu, 28 May 2026 20:26:40 GMT"


def _conns(index: int) -> tuple[connection.Client, connection.Server]:
    start = T0 + index
    client = connection.Client(
        peername=("127.0.0.1", 40000 + index),
        sockname=("127.0.0.1", 8080),
        timestamp_start=start,
        state=connection.ConnectionState.CLOSED,
    )
    client.timestamp_end = start + 0.5
    server = connection.Server(
        address=("127.0.0.1", 8000),
        peername=("127.0.0.1", 8000),
        sockname=("127.0.0.1", 50000 + index),
        timestamp_start=start + 0.01,
        state=connection.ConnectionState.CLOSED,
    )
    server.timestamp_tcp_setup = start + 0.02
    server.timestamp_end = start + 0.5
    return client, server


def _flow(
    index: int,
    method: str,
    path: str,
    req_headers: list[tuple[bytes, bytes]],
    req_body: bytes,
    status: int,
    resp_headers: list[tuple[bytes, bytes]],
    resp_body: bytes,
) -> http.HTTPFlow:
    client, server = _conns(index)
    flow = http.HTTPFlow(client, server)
    start = T0 + index + 0.1
    request = http.Request.make(
        method, f"http://127.0.0.1:8000{path}", b"", [(b"user-agent", AGENT)]
    )
    request.headers = http.Headers(
        [(b"Host", b"127.0.0.1:8000"), (b"user-agent", AGENT), *req_headers]
    )
    request.raw_content = req_body
    request.timestamp_start = start
    request.timestamp_end = start + 0.01
    response = http.Response.make(status, b"")
    response.headers = http.Headers(
        [(b"server", b"wasmkit-edges/1"), (b"date", DATE), *resp_headers]
    )
    response.raw_content = resp_body
    response.timestamp_start = start + 0.05
    response.timestamp_end = start + 0.06
    flow.request = request
    flow.response = response
    return flow


def flows() -> list[http.HTTPFlow]:
    """The edge-case flows, in order (see the module docstring's table)."""
    item = b'{"id": 1, "name": "widget", "price": 9.5, "tags": ["a", "b"]}'
    packed = gzip.compress(b'{"q": "compress me", "n": 12345}', mtime=0)
    big = b"".join(b"line %05d of a long chunked body\n" % i for i in range(2048))
    json = (b"content-type", b"application/json")
    return [
        _flow(0, "HEAD", "/items/1", [], b"", 200,
              [json, (b"content-length", b"%d" % len(item))], b""),
        _flow(1, "GET", "/empty", [], b"", 204, [(b"content-length", b"0")], b""),
        _flow(2, "POST", "/chunked",
              [(b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked")],
              b"hello, chunked request body", 200,
              [(b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked")],
              b"a chunked answer\n"),
        _flow(3, "POST", "/gzip",
              [json, (b"content-encoding", b"gzip"), (b"accept-encoding", b"gzip"),
               (b"content-length", b"%d" % len(packed))],
              packed, 200,
              [json, (b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding"),
               (b"content-length", b"%d" % len(packed))],
              packed),
        _flow(4, "GET", "/repeat",
              [(b"x-dup", b"one"), (b"cookie", b"a=1"), (b"x-dup", b"two"),
               (b"cookie", b"b=2"), (b"x-dup", b"three")],
              b"", 200,
              [(b"set-cookie", b"s=1; Path=/"), (b"x-multi", b"1"),
               (b"set-cookie", b"t=2; Path=/"), (b"x-multi", b"2"),
               (b"set-cookie", b"u=3; Path=/"), (b"content-length", b"3")],
              b"ok\n"),
        _flow(5, "HEAD", "/denied", [], b"", 200,
              [(b"content-type", b"text/plain"), (b"content-length", b"12")], b""),
        _flow(6, "GET", "/cached", [(b"if-none-match", b'"v1"')], b"", 304,
              [(b"etag", b'"v1"'), (b"cache-control", b"max-age=60")], b""),
        _flow(7, "POST", "/empty-post",
              [(b"content-type", b"application/json"), (b"content-length", b"0")],
              b"", 200, [json, (b"content-length", b"2")], b"{}"),
        _flow(8, "GET", "/big-chunked", [], b"", 200,
              [(b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked")],
              big),
    ]  # fmt: skip


def main(out: Path = OUT) -> None:
    """Write the flows to ``out`` and read them back to check."""
    made = flows()
    with out.open("wb") as fh:
        writer = io.FlowWriter(fh)
        for flow in made:
            writer.add(flow)
    with out.open("rb") as fh:
        back = list(io.FlowReader(fh).stream())
    assert len(back) == len(made)
    print(f"wrote {out} ({len(back)} flows, {out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
