"""The sample captures in samples/captures/, read with mitmproxy itself.

Every check runs twice: on the committed files and on a fresh set made by
``samples/captures/make_captures.py`` in a temporary folder (about a second), so
the script keeps working and the committed files keep matching what it makes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http, io

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "samples" / "captures"
SCRIPT = CAPTURES / "make_captures.py"

# (method, scheme, path, status); status None is the error flow.
EXPECTED = [
    ("GET", "http", "/api/items/1", 200),
    ("POST", "http", "/api/items", 201),
    ("PUT", "http", "/api/items/1", 200),
    ("DELETE", "http", "/api/items/1", 204),
    ("POST", "http", "/form", 200),
    ("POST", "http", "/upload", 200),
    ("GET", "http", "/gzip", 200),
    ("GET", "http", "/chunked", 200),
    ("GET", "http", "/v1/items/1", 302),
    ("GET", "http", "/api/items/1", 200),
    ("GET", "http", "/missing", 404),
    ("GET", "http", "/error", 500),
    ("GET", "http", "/", None),
    ("GET", "http", "/large", 200),
    ("POST", "http", "/binary", 200),
    ("GET", "http", "/cookies", 200),
    ("GET", "https", "/secure", 200),
]
(JSON_GET, JSON_POST, JSON_PUT, JSON_DELETE, FORM, MULTIPART, GZIP, CHUNKED,
 REDIRECT, FOLLOWED, NOT_FOUND, SERVER_ERROR, UNREACHABLE, LARGE, BINARY,
 REPEATED, TLS) = range(len(EXPECTED))  # fmt: skip
BINARY_BODY = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(128))


@dataclass
class Captures:
    folder: Path
    flows: list[http.HTTPFlow]
    har: dict[str, Any]

    @property
    def entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.har["log"]["entries"]
        return entries


def _load(folder: Path) -> Captures:
    with (folder / "api.flow").open("rb") as f:
        raw = list(io.FlowReader(f).stream())
    flows = [fl for fl in raw if isinstance(fl, http.HTTPFlow)]
    assert len(flows) == len(raw)
    har = json.loads((folder / "api.har").read_text(encoding="utf-8"))
    return Captures(folder, flows, har)


@pytest.fixture(scope="module", params=["committed", "regenerated"])
def cap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Captures:
    if request.param == "committed":
        return _load(CAPTURES)
    out = tmp_path_factory.mktemp("captures")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return _load(out)


def test_files_are_small(cap):
    sizes = {p.name: p.stat().st_size for p in cap.folder.glob("api.*")}
    assert set(sizes) == {"api.flow", "api.har"}
    assert sum(sizes.values()) < 3 * 2**20
    assert (cap.folder / "README.md").is_file()


def test_flows_in_order(cap):
    got = [
        (
            fl.request.method,
            fl.request.scheme,
            fl.request.path,
            fl.response.status_code if fl.response else None,
        )
        for fl in cap.flows
    ]
    assert got == EXPECTED
    assert all(fl.request.host == "127.0.0.1" for fl in cap.flows)
    assert all(
        fl.request.headers["user-agent"] == "wasmkit-captures/1" for fl in cap.flows
    )


def test_json_api(cap):
    item = json.loads(cap.flows[JSON_GET].response.content)
    assert item["name"] == "widget"
    assert cap.flows[JSON_GET].response.headers["content-type"] == "application/json"
    post = cap.flows[JSON_POST]
    assert json.loads(post.request.content) == {"name": "gadget", "price": 12.25}
    assert post.response.headers["location"] == "/api/items/2"
    assert json.loads(cap.flows[JSON_PUT].response.content)["price"] == 10.0
    delete = cap.flows[JSON_DELETE]
    assert delete.response.raw_content == b""
    assert "content-length" not in delete.response.headers


def test_form_and_multipart(cap):
    form = cap.flows[FORM].request
    assert form.urlencoded_form["user"] == "alice"
    assert form.urlencoded_form["note"] == "hello world!"
    multipart = cap.flows[MULTIPART].request
    assert multipart.headers["content-type"].startswith("multipart/form-data;")
    assert list(multipart.multipart_form.keys()) == [b"title", b"file"]
    assert multipart.multipart_form[b"title"] == b"quarterly report"
    # mitmproxy's multipart parser drops the line breaks inside a part; the raw
    # body keeps them.
    assert b'filename="report.csv"' in multipart.raw_content
    assert b"\r\n\r\nregion,amount\r\nnorth,120\r\nsouth,95\r\n" in (
        multipart.raw_content
    )
    assert json.loads(cap.flows[MULTIPART].response.content) == {
        "bytes": len(multipart.raw_content),
        "parts": 2,
    }


def test_gzip_response_stays_encoded(cap):
    resp = cap.flows[GZIP].response
    assert cap.flows[GZIP].request.headers["accept-encoding"] == "gzip"
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.raw_content[:2] == b"\x1f\x8b"
    assert int(resp.headers["content-length"]) == len(resp.raw_content)
    assert json.loads(resp.content)["compressed"] is True


def test_chunked_response(cap):
    resp = cap.flows[CHUNKED].response
    assert resp.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in resp.headers
    lines = resp.content.decode().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"chunk {i}" for i in range(5)]


def test_redirect_followed(cap):
    redirect, followed = cap.flows[REDIRECT], cap.flows[FOLLOWED]
    assert redirect.response.headers["location"] == followed.request.path
    assert followed.response.status_code == 200


def test_client_and_server_errors(cap):
    assert cap.flows[NOT_FOUND].response.headers["content-type"] == (
        "application/problem+json"
    )
    assert json.loads(cap.flows[NOT_FOUND].response.content)["error"] == "not_found"
    assert cap.flows[SERVER_ERROR].response.content.startswith(b"internal error")


def test_unreachable_upstream_is_an_error_flow(cap):
    fl = cap.flows[UNREACHABLE]
    assert fl.response is None
    assert fl.error is not None
    assert "connect" in fl.error.msg.lower()
    others = {f.request.port for i, f in enumerate(cap.flows) if i != UNREACHABLE}
    assert fl.request.port not in others
    assert all(f.error is None for i, f in enumerate(cap.flows) if i != UNREACHABLE)


def test_large_and_binary_bodies(cap):
    large = cap.flows[LARGE].response
    assert len(large.raw_content) == 2**20
    assert int(large.headers["content-length"]) == 2**20
    assert large.content.count(b"\n") == 16384
    binary = cap.flows[BINARY]
    assert binary.request.headers["content-type"] == "application/octet-stream"
    assert binary.request.raw_content == BINARY_BODY
    assert binary.response.raw_content == BINARY_BODY


def test_repeated_headers_keep_order(cap):
    fl = cap.flows[REPEATED]
    assert [
        (k.lower(), v) for k, v in fl.request.headers.fields if k.lower() != b"host"
    ][1:] == [(b"x-dup", b"first"), (b"cookie", b"a=1"), (b"x-dup", b"second")]
    assert fl.request.headers.get_all("x-dup") == ["first", "second"]
    assert fl.response.headers.get_all("set-cookie") == [
        "session=abc123; Path=/; HttpOnly",
        "theme=dark; Path=/; Max-Age=3600",
    ]
    assert json.loads(fl.response.content) == {"x-dup": ["first", "second"]}


def test_tls_flow(cap):
    fl = cap.flows[TLS]
    assert fl.request.scheme == "https"
    assert fl.client_conn.tls_established
    assert fl.server_conn.tls_established
    assert fl.server_conn.tls_version and fl.server_conn.tls_version.startswith("TLS")
    assert json.loads(fl.response.content)["tls"] is True
    plain = [f for i, f in enumerate(cap.flows) if i != TLS]
    assert not any(f.client_conn.tls_established for f in plain)


def test_har_matches_flows(cap):
    assert cap.har["log"]["version"] == "1.2"
    assert cap.har["log"]["creator"]["name"] == "mitmproxy"
    entries = cap.entries
    assert len(entries) == len(EXPECTED) == len(cap.flows)
    for entry, fl, (method, scheme, path, status) in zip(
        entries, cap.flows, EXPECTED, strict=True
    ):
        assert entry["request"]["method"] == method
        assert entry["request"]["url"] == fl.request.pretty_url
        assert entry["request"]["url"].startswith(f"{scheme}://127.0.0.1:")
        assert entry["request"]["url"].endswith(path)
        assert entry["response"]["status"] == (0 if status is None else status)


def test_har_details(cap):
    entries = cap.entries
    assert "connect" in entries[UNREACHABLE]["response"]["_error"].lower()
    gz = entries[GZIP]["response"]
    assert {"name": "Content-Encoding", "value": "gzip"} in gz["headers"]
    assert json.loads(gz["content"]["text"])["compressed"] is True
    binary = entries[BINARY]["response"]["content"]
    assert binary["encoding"] == "base64"
    assert base64.b64decode(binary["text"]) == BINARY_BODY
    assert len(entries[LARGE]["response"]["content"]["text"]) == 2**20
    repeated = entries[REPEATED]
    assert [
        h["value"] for h in repeated["request"]["headers"] if h["name"] == "X-Dup"
    ] == ["first", "second"]
    assert [
        h["value"] for h in repeated["response"]["headers"] if h["name"] == "Set-Cookie"
    ] == ["session=abc123; Path=/; HttpOnly", "theme=dark; Path=/; Max-Age=3600"]
    assert [c["name"] for c in repeated["response"]["cookies"]] == ["session", "theme"]
    assert entries[TLS]["timings"]["ssl"] >= 0
