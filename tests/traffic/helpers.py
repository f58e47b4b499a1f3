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


def json_depth_limit() -> int:
    """How deep the running Python's JSON decoder goes before RecursionError.

    About 1,000 levels on 3.11, 1,500 on 3.12, 10,000 on 3.13 (the C decoder
    counts against a C recursion limit of its own there).
    """
    low, high = 1, 1 << 20
    while low < high:
        mid = (low + high + 1) // 2
        try:
            json.loads("[" * mid + "]" * mid)
        except RecursionError:
            high = mid - 1
        else:
            low = mid
    return low


def nested_har(path: Path, good: int, depth: int, *, where: str = "entry") -> Path:
    """A HAR of ``good`` entries, then JSON nested ``depth`` levels deep.

    ``where``: ``entry`` (an entry after the good ones holds it) or ``pages``
    (``log.pages`` before the entries does).
    """
    deep = "[" * depth + "]" * depth
    entries = [json.dumps(har_entry(n)) for n in range(good)]
    if where == "entry":
        entries.append('{"request": ' + deep + "}")
        pages = "[]"
    else:
        pages = deep
    text = (
        '{"log": {"version": "1.2", "pages": '
        + pages
        + ', "entries": ['
        + ", ".join(entries)
        + "]}}"
    )
    path.write_text(text)
    return path


def nested_flow_record(depth: int) -> bytes:
    """A flow record whose metadata holds a list nested ``depth`` levels deep.

    Built with mitmproxy's tnetstring writer around a placeholder, then the
    nesting spliced in (the writer itself recurses once per level).
    """
    from mitmproxy.io import tnetstring

    inner = b"0:]"
    for _ in range(depth - 1):
        inner = b"%d:%s]" % (len(inner), inner)
    state = http_flow(99).get_state()
    state["metadata"] = {"deep": "@@"}
    metadata = tnetstring.dumps(state["metadata"])
    record = tnetstring.dumps(state)
    spliced = b"%d:%s}" % (
        len(b"4:deep;" + inner),
        b"4:deep;" + inner,
    )
    body = record[record.index(b":") + 1 : -1].replace(metadata, spliced)
    return b"%d:%s}" % (len(body), body)


class FullDisk:
    """Makes files opened by ``wasmkit.traffic._atomic`` fail with ENOSPC.

    Install with ``monkeypatch.setattr(_atomic.os, "fdopen", FullDisk(after))``:
    each file takes ``after`` bytes (written for real), then every write
    raises ``OSError(ENOSPC)`` without a file name, as a full disk does.
    """

    def __init__(self, after: int = 0) -> None:
        import os

        self.after = after
        self.real = os.fdopen
        self.opened: list[Any] = []

    def __call__(self, fd: int, mode: str = "r", *args: Any, **kw: Any) -> Any:
        fo = self.real(fd, mode, *args, **kw)
        self.opened.append(fo)
        return _Filling(fo, self.after)


class _Filling:
    def __init__(self, fo: Any, room: int) -> None:
        self._fo = fo
        self._room = room

    def write(self, data: Any) -> int:
        import errno
        import os

        if len(data) > self._room:
            self._fo.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return int(self._fo.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fo, name)


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in, even as root.

    Without root, ``chmod 0500``; as root, an immutable directory
    (``chattr +i``, undone by :func:`release_dir`), else ``/sys``.
    """
    import os
    import shutil
    import subprocess

    d = tmp_path / "read-only"
    d.mkdir()
    d.chmod(0o500)
    if not os.access(d, os.W_OK):
        return d
    d.chmod(0o700)
    if shutil.which("chattr"):
        subprocess.run(["chattr", "+i", str(d)], capture_output=True, timeout=10)
        try:
            (d / "probe").write_text("")
        except OSError:
            return d
        (d / "probe").unlink()
    return Path("/sys")


def release_dir(d: Path) -> None:
    """Undo :func:`unwritable_dir` (so that pytest can remove it)."""
    import shutil
    import subprocess

    if d != Path("/sys") and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(d)], capture_output=True, timeout=10)
    if d != Path("/sys"):
        d.chmod(0o700)
