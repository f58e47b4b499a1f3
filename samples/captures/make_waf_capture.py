#!/usr/bin/env python3
"""Regenerate ``waf.flow``: benign and attack traffic for the WAF sample.

Starts a small local shop upstream over HTTP, runs ``mitmdump`` as a regular
proxy in front of it (the same set-up as ``make_captures.py``, whose helpers it
uses), sends a fixed list of requests through it with ``http.client``, stops
everything and writes:

* ``waf.flow`` - every exchange, as mitmdump wrote it with ``-w``;
* ``waf.md``   - one line per flow: what it is and what a WAF should do.

Every request is answered by the upstream (the capture is what reached it with
no WAF in front); the sample filter ``samples/filters/waf/go`` is expected to
let the benign flows through and to block each attack with a 403. Only the
loopback interface is used; every socket and subprocess has a timeout.

Usage::

    .venv/bin/python samples/captures/make_waf_capture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_captures  # noqa: E402  (the sibling script: mitmdump helpers)

LOOPBACK = make_captures.LOOPBACK
TIMEOUT = make_captures.TIMEOUT
HOST = "shop.test"  # the Host header; the connection goes to 127.0.0.1
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SQLMAP = "sqlmap/1.8.2#stable (https://sqlmap.org)"

# About 200 KB of form text (fixed words, so the body is the same every run),
# with a SQL injection in the last field: past coraza.conf-recommended's
# 128 KiB in-memory body limit and past the first body chunks.
LARGE_NOTES = (
    "please deliver the blue widgets to the north entrance before noon " * 3100
).strip()
LARGE_FORM = urllib.parse.urlencode(
    {
        "order": "20931",
        "notes": LARGE_NOTES,
        "coupon": "1' UNION SELECT username, password FROM users--",
    }
).encode()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class _Shop(http.server.BaseHTTPRequestHandler):
    """A careless shop: answers every route, echoing what it was sent."""

    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT

    def version_string(self) -> str:
        return "wasmkit-sample-shop/1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path == "/static/app.css":
            self._send(200, b"body { font-family: sans-serif; }\n", "text/css")
        elif path == "/api/items/1" and self.command == "GET":
            self._send(200, _json({"id": 1, "name": "widget"}), "application/json")
        elif path == "/api/items" and self.command == "POST":
            item = dict(json.loads(body), id=2)
            self._send(201, _json(item), "application/json")
        elif path == "/search":
            q = urllib.parse.parse_qs(query).get("q", [""])[0]
            page = f"<html><body>results for {q}</body></html>\n".encode()
            self._send(200, page, "text/html; charset=utf-8")
        elif path in ("/contact", "/login", "/order"):
            self._send(200, _json({"received": len(body)}), "application/json")
        elif path == "/":
            self._send(200, b"<html><body>shop</body></html>\n", "text/html")
        else:
            self._send(404, _json({"error": "not_found"}), "application/json")

    do_GET = do_POST = _dispatch


@contextmanager
def _serve() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Shop)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


@dataclass(frozen=True)
class Exchange:
    """One request sent through the proxy, and what the WAF should do with it."""

    title: str
    method: str
    path: str
    expect_status: int  # the upstream's answer
    attack: bool
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    user_agent: str = BROWSER


def _exchanges() -> list[Exchange]:
    json_ct = [("Accept", "application/json"), ("Content-Type", "application/json")]
    form_ct = [
        ("Accept", "text/html"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]
    page = [("Accept", "text/html")]
    return [
        Exchange("JSON API: read an item", "GET", "/api/items/1", 200, False,
                 [("Accept", "application/json")]),
        Exchange("JSON API: create an item", "POST", "/api/items", 201, False,
                 json_ct, _json({"name": "gadget", "price": 12.25,
                                 "tags": ["red", "large"]})),
        Exchange("a static file", "GET", "/static/app.css", 200, False,
                 [("Accept", "text/css")]),
        Exchange("a search", "GET", "/search?q=blue+widgets&page=2", 200, False,
                 page),
        Exchange("a contact form", "POST", "/contact", 200, False, form_ct,
                 b"name=Alice+Smith&email=alice%40example.com&message=Hello%2C+"
                 b"could+I+get+a+quote+for+20+widgets%3F+Thanks%21"),
        Exchange("XSS in a query argument", "GET",
                 "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E", 200,
                 True, page),
        Exchange("SQL injection in a form field", "POST", "/login", 200, True,
                 form_ct, b"username=admin%27+OR+%271%27%3D%271%27--&password=x"),
        Exchange("SQL injection in a JSON field", "POST", "/api/items", 201, True,
                 json_ct, _json({"name": "x' UNION SELECT password FROM users--",
                                 "price": 1})),
        Exchange("path traversal to /etc/passwd", "GET",
                 "/static/../../../etc/passwd", 404, True, page),
        Exchange("a scanner's User-Agent (sqlmap)", "GET", "/", 200, True, page,
                 user_agent=SQLMAP),
        Exchange("a 200 KB form, SQL injection in its last field", "POST",
                 "/order", 200, True, form_ct, LARGE_FORM),
    ]  # fmt: skip


def _send(ex: Exchange, proxy_port: int, port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, proxy_port, timeout=TIMEOUT)
    try:
        # The connection goes to the loopback upstream; Host names the shop.
        conn.putrequest(
            ex.method,
            f"http://{LOOPBACK}:{port}{ex.path}",
            skip_host=True,
            skip_accept_encoding=True,
        )
        conn.putheader("Host", HOST)
        conn.putheader("User-Agent", ex.user_agent)
        for name, value in ex.headers:
            conn.putheader(name, value)
        if ex.body is not None:
            conn.putheader("Content-Length", str(len(ex.body)))
        conn.endheaders(ex.body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _run(work: Path) -> tuple[Path, list[Exchange]]:
    flow_path = work / "waf.flow"
    exchanges = _exchanges()
    with (
        _serve() as port,
        make_captures._proxy(work, flow_path, work / "waf.har") as proxy_port,
    ):
        for ex in exchanges:
            status, body = _send(ex, proxy_port, port)
            if status != ex.expect_status:
                raise RuntimeError(
                    f"{ex.title}: got {status}, want {ex.expect_status}: {body!r}"
                )
    if not flow_path.exists():
        raise RuntimeError("mitmdump wrote no .flow")
    return flow_path, exchanges


def _check(flow_path: Path, exchanges: list[Exchange]) -> None:
    """Read the capture back with mitmproxy and fail loudly if anything is off."""
    from mitmproxy import http, io  # noqa: TID251 (a script, not wasmkit code)

    got = []
    with flow_path.open("rb") as f:
        for fl in io.FlowReader(f).stream():
            if not isinstance(fl, http.HTTPFlow) or fl.response is None:
                raise RuntimeError(f"waf.flow holds an unexpected flow: {fl!r}")
            got.append((fl.request.method, fl.request.path, fl.response.status_code))
    want = [(ex.method, ex.path, ex.expect_status) for ex in exchanges]
    if got != want:
        raise RuntimeError(f"waf.flow holds {got}, expected {want}")


def _table(exchanges: list[Exchange], flow_size: int) -> str:
    rows = []
    for i, ex in enumerate(exchanges):
        path = ex.path if len(ex.path) < 70 else ex.path[:67] + "..."
        size = f"{len(ex.body):,} B" if ex.body else ""
        verdict = "block (403)" if ex.attack else "pass"
        rows.append(
            f"| {i} | {ex.method} | `{path}` | {size} | {ex.expect_status} "
            f"| {verdict} | {ex.title} |"
        )
    table = "\n".join(rows)
    return f"""# `waf.flow`

Benign and attack traffic for the WAF sample (`samples/filters/waf/go`:
Coraza with the OWASP Core Rule Set), recorded by `mitmdump` (mitmproxy 11)
standing as a regular proxy in front of a small local shop. The upstream
answered every request (the statuses below): the capture is what reached it
with no WAF in front. `make_waf_capture.py` made it and remakes it (about a
second, loopback only):

```
.venv/bin/python samples/captures/make_waf_capture.py            # waf.flow, waf.md
.venv/bin/python samples/captures/make_waf_capture.py --out DIR  # elsewhere
```

`waf.flow` ({flow_size / 1024:.0f} KiB, almost all of it the large form of #10):
the {len(exchanges)} HTTP flows below, in order. Requests carry `Host: {HOST}`
(the connection went to `127.0.0.1:<port>`), a browser's `User-Agent` unless
listed, and no `Accept-Encoding`.

| # | method | path | request body | upstream status | WAF | what it is |
|---|--------|------|--------------|-----------------|-----|------------|
{table}

Notes:

- #5 sends `<script>alert(document.cookie)</script>` URL-encoded in `q`.
- #6 sends `username=admin' OR '1'='1'--` as a form field; #7 the same kind
  of payload in a JSON string (`Content-Type: application/json`, so Coraza's
  JSON body processor reads it).
- #8 sends the dot segments as they are (`/static/../../../etc/passwd`), as a
  scanner does; mitmproxy keeps them.
- #9 has `User-Agent: {SQLMAP}`.
- #10 is {len(LARGE_FORM):,} bytes of form (`order`, a long `notes` text, then
  `coupon`), with `1' UNION SELECT username, password FROM users--` in the last
  field, after about 200 KB of benign text: it is caught only by a WAF that
  reads the whole body (past coraza.conf-recommended's 128 KiB in-memory limit,
  and past the first chunks when the replay splits bodies).
"""


def main(argv: list[str] | None = None) -> int:
    """Make the capture; write it to ``--out`` (default: this folder)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wasmkit-waf-capture-") as tmp:
        flow_path, exchanges = _run(Path(tmp))
        _check(flow_path, exchanges)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flow_path, out / "waf.flow")
        (out / "waf.md").write_text(_table(exchanges, flow_path.stat().st_size))
    print(
        f"wrote {len(exchanges)} flows to {out} in {time.monotonic() - start:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
