"""Captures for the traffic tests, written with mitmproxy's own FlowWriter."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mitmproxy import flow, http
from mitmproxy.io import FlowWriter
from mitmproxy.test import tflow, tutils


def write_flows(path: Path, flows: Iterable[flow.Flow]) -> Path:
    with open(path, "wb") as fo:
        writer = FlowWriter(fo)  # type: ignore[no-untyped-call]
        for f in flows:
            writer.add(f)
    return path


def http_flow(n: int = 0, **req: Any) -> http.HTTPFlow:
    """A complete HTTP/1.1 exchange with a fixed id and timestamps."""
    f = tflow.tflow(req=tutils.treq(**req) if req else None, resp=True)
    f.id = f"flow-{n}"
    f.request.path = req.get("path", f"/item/{n}")
    f.request.timestamp_start = 946681200 + n
    return f


def repeated_headers_flow() -> http.HTTPFlow:
    f = http_flow(
        1,
        headers=http.Headers(
            [
                (b"Host", b"api.example.com"),
                (b"Accept", b"text/html"),
                (b"X-Dup", b"one"),
                (b"accept", b"application/json"),
                (b"X-Dup", b"two"),
                (b"X-Bin", b"\xff\xfe"),
            ]
        ),
        path=b"/search?q=a%20b",
    )
    assert f.response is not None
    f.response.headers = http.Headers(
        [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Content-Length", b"7")]
    )
    return f


def gzip_flow() -> http.HTTPFlow:
    f = http_flow(2)
    assert f.response is not None
    body = b'{"hello": "world"}' * 10
    packed = gzip.compress(body, mtime=0)
    f.response.headers = http.Headers(
        [
            (b"Content-Type", b"application/json"),
            (b"Content-Encoding", b"gzip"),
            (b"Content-Length", str(len(packed)).encode()),
        ]
    )
    f.response.raw_content = packed
    return f


def trailers_flow() -> http.HTTPFlow:
    f = http_flow(3)
    f.request.http_version = "HTTP/2.0"
    f.request.authority = "grpc.example.com"
    f.request.trailers = http.Headers([(b"x-req-trailer", b"r")])
    assert f.response is not None
    f.response.trailers = http.Headers(
        [(b"grpc-status", b"0"), (b"grpc-message", b"ok")]
    )
    return f


def mixed_flows() -> list[flow.Flow]:
    """HTTP, an error flow, a request without response, WebSocket, TCP, UDP, DNS."""
    err = tflow.tflow(err=True)
    err.id = "flow-err"
    pending = tflow.tflow()
    pending.id = "flow-pending"
    ws = tflow.twebsocketflow()
    ws.id = "flow-ws"
    return [
        http_flow(0),
        err,
        tflow.ttcpflow(),
        pending,
        tflow.tudpflow(),
        ws,
        tflow.tdnsflow(resp=True),
        http_flow(7),
    ]


def har_entry(n: int, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "startedDateTime": f"2024-05-01T10:{n // 60:02d}:{n % 60:02d}.000Z",
        "time": 12.5,
        "serverIPAddress": "93.184.216.34",
        "request": {
            "method": "POST" if n % 2 else "GET",
            "url": f"https://example.com/api/{n}?x=1",
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Host", "value": "example.com"},
                {"name": "Accept", "value": "*/*"},
                {"name": "Accept", "value": "text/plain"},
            ],
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 200,
            "statusText": "OK",
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": "Content-Type", "value": "text/plain"}],
            "cookies": [],
            "content": {"size": 5, "mimeType": "text/plain", "text": f"hi {n:02d}"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 5,
        },
        "cache": {},
        "timings": {"send": 1, "wait": 10, "receive": 1.5},
    }
    if n % 2:
        entry["request"]["postData"] = {"mimeType": "text/plain", "text": "body"}
    entry.update(extra)
    return entry


def write_har(path: Path, entries: list[dict[str, Any]], **kw: Any) -> Path:
    doc = {
        "log": {
            "version": "1.2",
            "creator": {"name": "wasmkit-tests", "version": "1"},
            "pages": [],
            "entries": entries,
        }
    }
    path.write_text(json.dumps(doc, **kw))
    return path
