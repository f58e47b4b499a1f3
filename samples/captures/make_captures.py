#!/usr/bin/env python3
"""Regenerate the sample captures in this folder with a real mitmdump.

Starts a local HTTP upstream and a local HTTPS upstream (self-signed certificate
made at run time), runs ``mitmdump`` as a regular proxy in front of them with a
throw-away confdir, sends a fixed list of requests through it with
``http.client``, stops everything and writes:

* ``api.flow``  - every exchange, as mitmdump wrote it with ``-w``;
* ``api.har``   - the same traffic, as mitmdump wrote it with ``--set hardump=``;
* ``README.md`` - one line per flow.

Only the loopback interface is used. Every socket and subprocess has a timeout and
everything is stopped on failure. Bodies, header order and request order are fixed;
ports, timestamps and the Date header are not.

Usage::

    .venv/bin/python samples/captures/make_captures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import http.client
import http.server
import ipaddress
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
TIMEOUT = 10.0  # seconds, for every socket operation and every wait
USER_AGENT = "wasmkit-captures/1"

# Fixed bodies, so that regenerated captures carry the same payloads.
LARGE_BODY = b"".join(
    f"line {i:05d} of the large sample body, 64 bytes a line".ljust(63, ".").encode()
    + b"\n"
    for i in range(16384)
)  # 1 MiB exactly
# 4 KiB of pseudo-random bytes (a SHA-256 counter stream): binary enough that
# mitmproxy's HAR export stores it as base64.
BINARY_BODY = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(128))
MULTIPART_BOUNDARY = "wasmkit-sample-boundary-7d1f"
MULTIPART_BODY = (
    f"--{MULTIPART_BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="title"\r\n'
    "\r\n"
    "quarterly report\r\n"
    f"--{MULTIPART_BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="file"; filename="report.csv"\r\n'
    "Content-Type: text/csv\r\n"
    "\r\n"
    "region,amount\r\nnorth,120\r\nsouth,95\r\n"
    "\r\n"
    f"--{MULTIPART_BOUNDARY}--\r\n"
).encode()
ITEM = {"id": 1, "name": "widget", "price": 9.5, "tags": ["blue", "small"]}


# --------------------------------------------------------------------------
# Upstream servers
# --------------------------------------------------------------------------


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class _Upstream(http.server.BaseHTTPRequestHandler):
    """The sample API. One method per route, dispatched on (method, path)."""

    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT

    def version_string(self) -> str:
        return "wasmkit-sample-upstream/1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- plumbing --------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self) -> None:
        route = ROUTES.get((self.command, self.path.split("?", 1)[0]))
        if route is None:
            self._send(
                404,
                _json({"error": "not_found", "path": self.path}),
                "application/json",
            )
        else:
            route(self)

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    # -- routes ----------------------------------------------------------

    def get_item(self) -> None:
        self._send(200, _json(ITEM), "application/json")

    def create_item(self) -> None:
        item = dict(json.loads(self._body()), id=2)
        self._send(201, _json(item), "application/json", [("Location", "/api/items/2")])

    def update_item(self) -> None:
        item = dict(ITEM, **json.loads(self._body()))
        self._send(200, _json(item), "application/json")

    def delete_item(self) -> None:
        self.send_response(204)
        self.end_headers()

    def form(self) -> None:
        fields = dict(
            x.split("=", 1) for x in self._body().decode("ascii").split("&") if x
        )
        self._send(200, _json({"received": fields}), "application/json")

    def upload(self) -> None:
        body = self._body()
        parts = body.count(f"--{MULTIPART_BOUNDARY}\r\n".encode())
        self._send(200, _json({"bytes": len(body), "parts": parts}), "application/json")

    def gzipped(self) -> None:
        plain = _json({"compressed": True, "items": [ITEM] * 20})
        self._send(
            200,
            gzip.compress(plain, mtime=0),
            "application/json",
            [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")],
        )

    def chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(5):
            chunk = f"chunk {i}: {'abcdefgh' * (i + 1)}\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def redirect(self) -> None:
        self._send(
            302,
            b"moved to /api/items/1\n",
            "text/plain",
            [("Location", "/api/items/1")],
        )

    def not_found(self) -> None:
        self._send(
            404,
            _json({"error": "not_found", "detail": "no item 404"}),
            "application/problem+json",
        )

    def server_error(self) -> None:
        self._send(500, b"internal error: the sample upstream failed\n", "text/plain")

    def large(self) -> None:
        self._send(200, LARGE_BODY, "text/plain; charset=utf-8")

    def binary(self) -> None:
        self._send(200, self._body(), "application/octet-stream")

    def cookies(self) -> None:
        dup = self.headers.get_all("X-Dup") or []
        self._send(
            200,
            _json({"x-dup": dup}),
            "application/json",
            [
                ("Set-Cookie", "session=abc123; Path=/; HttpOnly"),
                ("Set-Cookie", "theme=dark; Path=/; Max-Age=3600"),
            ],
        )

    def secure(self) -> None:
        self._send(200, _json({"tls": True, "item": ITEM}), "application/json")


ROUTES: dict[tuple[str, str], Callable[[_Upstream], None]] = {
    ("GET", "/api/items/1"): _Upstream.get_item,
    ("POST", "/api/items"): _Upstream.create_item,
    ("PUT", "/api/items/1"): _Upstream.update_item,
    ("DELETE", "/api/items/1"): _Upstream.delete_item,
    ("POST", "/form"): _Upstream.form,
    ("POST", "/upload"): _Upstream.upload,
    ("GET", "/gzip"): _Upstream.gzipped,
    ("GET", "/chunked"): _Upstream.chunked,
    ("GET", "/v1/items/1"): _Upstream.redirect,
    ("GET", "/missing"): _Upstream.not_found,
    ("GET", "/error"): _Upstream.server_error,
    ("GET", "/large"): _Upstream.large,
    ("POST", "/binary"): _Upstream.binary,
    ("GET", "/cookies"): _Upstream.cookies,
    ("GET", "/secure"): _Upstream.secure,
}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A P-256 key and a self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wasmkit sample")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "upstream-cert.pem"
    key_path = directory / "upstream-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def _serve(tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    """Run the sample upstream on a free loopback port; yield the port."""
    httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Upstream)
    httpd.daemon_threads = True
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        # Handshake in the handler thread (under its timeout), not in accept().
        httpd.socket = ctx.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
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


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------
# mitmdump
# --------------------------------------------------------------------------


def _mitmdump() -> str:
    sibling = Path(sys.executable).with_name("mitmdump")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("mitmdump")
    if found is None:
        raise SystemExit("mitmdump not found next to this Python or on PATH")
    return found


@contextmanager
def _proxy(work: Path, flow_path: Path, har_path: Path) -> Iterator[int]:
    """Run mitmdump as a regular proxy on a free loopback port; yield the port.

    On exit mitmdump gets SIGTERM and runs its ``done`` hooks, which close the
    ``-w`` file and write the HAR.
    """
    log_path = work / "mitmdump.log"
    cmd = [
        _mitmdump(),
        "--mode", "regular",
        "--listen-host", LOOPBACK,
        "--listen-port", "0",
        "--set", f"confdir={work / 'confdir'}",
        "--ssl-insecure",  # the upstream's certificate is self-signed
        "--set", "http2=false",
        "-w", str(flow_path),
        "--set", f"hardump={har_path}",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield _wait_listening(proc, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(TIMEOUT)
                raise RuntimeError(
                    "mitmdump did not stop on SIGTERM; killed:\n" + _tail(log_path)
                ) from None
        if proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(
                f"mitmdump exited with {proc.returncode}:\n" + _tail(log_path)
            )


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:]


def _wait_listening(proc: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + 3 * TIMEOUT
    pattern = re.compile(r"proxy listening at \*?\[?[\d.:]*\]?:(\d+)")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("mitmdump failed to start:\n" + _tail(log_path))
        match = pattern.search(log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise RuntimeError("mitmdump did not start listening:\n" + _tail(log_path))


# --------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One request sent through the proxy, and what the capture should show."""

    title: str
    method: str
    path: str
    expect_status: int | None  # None: no response, an error flow
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    tls: bool = False
    unreachable: bool = False


def _exchanges() -> list[Exchange]:
    json_ct = [("Content-Type", "application/json")]
    return [
        Exchange("JSON API: read an item", "GET", "/api/items/1", 200,
                 [("Accept", "application/json")]),
        Exchange("JSON API: create an item (201 + Location)", "POST", "/api/items",
                 201, json_ct, _json({"name": "gadget", "price": 12.25})),
        Exchange("JSON API: update an item", "PUT", "/api/items/1", 200, json_ct,
                 _json({"price": 10.0})),
        Exchange("JSON API: delete an item (204, no body)", "DELETE",
                 "/api/items/1", 204),
        Exchange("form-urlencoded POST", "POST", "/form", 200,
                 [("Content-Type", "application/x-www-form-urlencoded")],
                 b"user=alice&remember=on&note=hello+world%21"),
        Exchange("multipart/form-data upload (a field and a CSV file)", "POST",
                 "/upload", 200,
                 [("Content-Type",
                   f"multipart/form-data; boundary={MULTIPART_BOUNDARY}")],
                 MULTIPART_BODY),
        Exchange("gzip-encoded JSON response (raw body stays compressed)", "GET",
                 "/gzip", 200, [("Accept-Encoding", "gzip")]),
        Exchange("chunked response (Transfer-Encoding: chunked, 5 chunks)", "GET",
                 "/chunked", 200),
        Exchange("302 redirect to /api/items/1", "GET", "/v1/items/1", 302),
        Exchange("the redirect, followed", "GET", "/api/items/1", 200,
                 [("Accept", "application/json")]),
        Exchange("404 with a problem+json body", "GET", "/missing", 404),
        Exchange("500 with a text body", "GET", "/error", 500),
        Exchange("unreachable upstream (closed port): error flow, no response",
                 "GET", "/", None, unreachable=True),
        Exchange("large response body (1 MiB of text)", "GET", "/large", 200),
        Exchange("binary body both ways (4 KiB of pseudo-random bytes, echoed)", "POST",
                 "/binary", 200, [("Content-Type", "application/octet-stream")],
                 BINARY_BODY),
        Exchange("repeated headers: two X-Dup in the request, two Set-Cookie in "
                 "the response", "GET", "/cookies", 200,
                 [("X-Dup", "first"), ("Cookie", "a=1"), ("X-Dup", "second")]),
        Exchange("HTTPS through CONNECT (TLS to client and upstream)", "GET",
                 "/secure", 200, [("Accept", "application/json")], tls=True),
    ]  # fmt: skip


def _send(
    ex: Exchange, proxy_port: int, host: str, ca_file: Path
) -> tuple[int, bytes, list[tuple[str, str]]]:
    conn: http.client.HTTPConnection
    if ex.tls:
        ctx = ssl.create_default_context(cafile=str(ca_file))  # mitmproxy's CA
        ctx.set_alpn_protocols(["http/1.1"])
        conn = http.client.HTTPSConnection(
            LOOPBACK, proxy_port, timeout=TIMEOUT, context=ctx
        )
        conn.set_tunnel(host)
        target = ex.path
    else:
        conn = http.client.HTTPConnection(LOOPBACK, proxy_port, timeout=TIMEOUT)
        target = f"http://{host}{ex.path}"
    try:
        conn.putrequest(ex.method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.putheader("User-Agent", USER_AGENT)
        for name, value in ex.headers:
            conn.putheader(name, value)
        if ex.body is not None:
            conn.putheader("Content-Length", str(len(ex.body)))
        conn.endheaders(ex.body)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheaders()
    finally:
        conn.close()


def _run(
    work: Path, exchanges: list[Exchange] | None = None
) -> tuple[Path, Path, list[Exchange]]:
    """Send ``exchanges`` (default: all of them) through mitmdump in ``work``."""
    flow_path, har_path = work / "api.flow", work / "api.har"
    exchanges = _exchanges() if exchanges is None else exchanges
    tls_files = _self_signed(work)
    with (
        _serve() as http_port,
        _serve(tls_files) as https_port,
        _proxy(work, flow_path, har_path) as proxy_port,
    ):
        ca_file = work / "confdir" / "mitmproxy-ca-cert.pem"
        dead_port = _closed_port()
        for ex in exchanges:
            if ex.unreachable:
                port = dead_port
            elif ex.tls:
                port = https_port
            else:
                port = http_port
            status, body, _ = _send(ex, proxy_port, f"{LOOPBACK}:{port}", ca_file)
            # mitmproxy answers the client with 502 when the upstream is down.
            want = 502 if ex.expect_status is None else ex.expect_status
            if status != want:
                raise RuntimeError(f"{ex.title}: got {status}, want {want}: {body!r}")
    if not flow_path.exists() or not har_path.exists():
        raise RuntimeError("mitmdump wrote no .flow or no .har")
    return flow_path, har_path, exchanges


def _check(flow_path: Path, har_path: Path, exchanges: list[Exchange]) -> None:
    """Read the outputs back with mitmproxy and fail loudly if anything is off."""
    from mitmproxy import http, io  # noqa: TID251 (a script, not wasmkit code)

    got = []
    with flow_path.open("rb") as f:
        for fl in io.FlowReader(f).stream():
            if not isinstance(fl, http.HTTPFlow):
                raise RuntimeError(f"{flow_path.name} holds a {type(fl).__name__}")
            got.append((fl.request.method, fl.request.path))
    want = [(ex.method, ex.path) for ex in exchanges]
    if got != want:
        raise RuntimeError(f"{flow_path.name} holds {got}, expected {want}")
    entries = json.loads(har_path.read_text())["log"]["entries"]
    if len(entries) != len(exchanges):
        raise RuntimeError(
            f"{har_path.name} has {len(entries)} entries, not {len(exchanges)}"
        )


def _readme(exchanges: list[Exchange], flow_size: int, har_size: int) -> str:
    rows = []
    for i, ex in enumerate(exchanges):
        status = "error" if ex.expect_status is None else str(ex.expect_status)
        scheme = "https" if ex.tls else "http"
        rows.append(
            f"| {i} | {ex.method} | {scheme} | `{ex.path}` | {status} | {ex.title} |"
        )
    table = "\n".join(rows)
    n = len(exchanges)
    return f"""# Sample captures

Real traffic recorded by `mitmdump` (mitmproxy 11) standing as a regular proxy
in front of a small local API. `make_captures.py` made these files and remakes
them (about a second, loopback only):

```
.venv/bin/python samples/captures/make_captures.py            # rewrites this folder
.venv/bin/python samples/captures/make_captures.py --out DIR  # writes elsewhere
```

The script starts the upstream over HTTP and over HTTPS (a self-signed
certificate made at run time), runs `mitmdump -w api.flow --set hardump=api.har`
with a temporary confdir and `--ssl-insecure`, sends the requests below with
`http.client` (the HTTPS one through `CONNECT`, trusting the temporary mitmproxy
CA), stops mitmdump with SIGTERM and reads both files back to check them. Every
wait is bounded. Bodies, header order and request order are fixed; ports,
timestamps, the `Date` header and the certificates change on each run.

- `api.flow` ({flow_size / 2**20:.2f} MiB): the {n} HTTP flows below, in order,
  as written by `mitmdump -w` (read it with `mitmproxy.io.FlowReader`).
- `api.har` ({har_size / 2**20:.2f} MiB): the same {n} flows as HAR 1.2, written
  by mitmproxy's own HAR export (`hardump`), one entry per flow in the same order.
- `README.md`: this file, also written by the script.
- `waf.flow` (with `waf.md`, its table): benign and attack traffic for the WAF
  sample, made the same way by `make_waf_capture.py`.
- `api-mitmproxy12.flow` and `api-mitmproxy12.har` (with `mitmproxy12.md`): the
  same traffic but #13 (the 1 MiB body), recorded by mitmproxy 12.3's mitmdump
  with `make_mitmproxy12_capture.py` (run it from a Python >= 3.12 venv), so
  both mitmproxy versions are tested on files the other wrote.

| # | method | scheme | path | status | what it shows |
|---|--------|--------|------|--------|---------------|
{table}

Notes:

- Every request carries `User-Agent: {USER_AGENT}` and no `Accept-Encoding`
  unless listed (the gzip one sends `gzip`). Hosts are `127.0.0.1:<port>`.
- #6: the flow keeps the response as sent, `Content-Encoding: gzip` and a
  compressed raw body (`response.content` decodes it); the HAR holds the
  decoded text with `content.compression` set.
- #7: the flow keeps `Transfer-Encoding: chunked`; mitmproxy stores the
  de-chunked body.
- #8 has `Location: /api/items/1`; #9 is the client following it.
- #12: a loopback port nobody listens on. The flow has `error` set ("Connect
  call failed") and no response; the client got mitmproxy's 502, which is not
  recorded. In the HAR it is an entry with `status: 0` and the message in
  `response._error`.
- #13: 1 MiB (16384 lines of 64 bytes) of text, stored in both files.
- #14: 4 KiB of pseudo-random bytes posted and echoed back. The HAR stores the
  response base64; mitmproxy exports the request body as latin-1 text in
  `postData.text` (`.encode("latin-1")` gives the bytes back).
- #15: the request sends `X-Dup: first`, `Cookie: a=1`, `X-Dup: second` in that
  order; the response has two `Set-Cookie` fields. Both files keep the order.
- #16: `client_conn.tls_established` and `server_conn.tls_established` are set;
  the `CONNECT` itself is not a separate flow.
"""


def main(argv: list[str] | None = None) -> int:
    """Make the captures; write them to ``--out`` (default: this folder)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wasmkit-captures-") as tmp:
        flow_path, har_path, exchanges = _run(Path(tmp))
        _check(flow_path, har_path, exchanges)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flow_path, out / "api.flow")
        shutil.copyfile(har_path, out / "api.har")
        readme = _readme(exchanges, flow_path.stat().st_size, har_path.stat().st_size)
        (out / "README.md").write_text(readme)
    print(
        f"wrote {len(exchanges)} flows to {out} in {time.monotonic() - start:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
