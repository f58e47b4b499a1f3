"""A capture written by mitmproxy 12.3's mitmdump, read by the installed mitmproxy.

``samples/captures/api-mitmproxy12.flow`` and ``.har`` were recorded by mitmdump
12.3 (``make_mitmproxy12_capture.py``); this suite runs under mitmproxy 11
(Python 3.11) and 12 (Python >= 3.12), so each version reads what the other
wrote: ``api.flow`` is mitmproxy 11's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import version

from wasmkit.replay.run import replay
from wasmkit.testing import built
from wasmkit.traffic import load_capture

CAPTURES = Path(__file__).resolve().parents[2] / "samples" / "captures"
FLOW12 = CAPTURES / "api-mitmproxy12.flow"
HAR12 = CAPTURES / "api-mitmproxy12.har"
FLOW11 = CAPTURES / "api.flow"
JSON_REWRITE = CAPTURES.parent / "filters" / "json_rewrite" / "go"

# (method, path, status) in order; None: the upstream was unreachable.
EXPECTED = [
    ("GET", "/api/items/1", 200),
    ("POST", "/api/items", 201),
    ("PUT", "/api/items/1", 200),
    ("DELETE", "/api/items/1", 204),
    ("POST", "/form", 200),
    ("POST", "/upload", 200),
    ("GET", "/gzip", 200),
    ("GET", "/chunked", 200),
    ("GET", "/v1/items/1", 302),
    ("GET", "/api/items/1", 200),
    ("GET", "/missing", 404),
    ("GET", "/error", 500),
    ("GET", "/", None),
    ("POST", "/binary", 200),
    ("GET", "/cookies", 200),
    ("GET", "/secure", 200),
]
(GET, POST, PUT, DELETE, FORM, UPLOAD, GZIP, CHUNKED, REDIRECT, FOLLOWED,
 MISSING, ERROR, UNREACHABLE, BINARY, COOKIES, SECURE) = range(len(EXPECTED))  # fmt: skip
ITEM = {"id": 1, "name": "widget", "price": 9.5, "tags": ["blue", "small"]}
BINARY_BODY = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(128))


def _shape(exchanges):
    return [
        (e.request.method, e.request.path, e.response and e.response.status)
        for e in exchanges
    ]


@pytest.fixture(scope="module")
def flows():
    return list(load_capture(FLOW12, cache=False))


@pytest.fixture(scope="module")
def entries():
    return list(load_capture(HAR12, cache=False))


def test_the_flow_file_names_its_writer_and_reads_in_order():
    capture = load_capture(FLOW12, cache=False)
    exchanges = list(capture)
    assert _shape(exchanges) == EXPECTED
    assert capture.stats.format == "flow"
    assert capture.stats.format_version == "21"  # mitmproxy 11.0 to 12.3
    assert capture.stats.exchanges == 16 and capture.stats.request_only == 1
    recorded = (CAPTURES / "mitmproxy12.md").read_text().splitlines()[0]
    assert recorded.startswith("# The sample API recorded by mitmproxy 12.3.")


def test_bodies_and_headers_as_on_the_wire(flows):
    assert json.loads(flows[GET].response.body) == ITEM
    created = flows[POST]
    assert json.loads(created.request.body) == {"name": "gadget", "price": 12.25}
    assert created.response.headers["location"] == "/api/items/2"
    assert flows[DELETE].response.body == b""
    assert flows[FORM].request.body == b"user=alice&remember=on&note=hello+world%21"
    assert b'filename="report.csv"' in flows[UPLOAD].request.body
    compressed = flows[GZIP].response
    assert compressed.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(compressed.body))["compressed"] is True
    chunked = flows[CHUNKED].response
    assert chunked.headers["transfer-encoding"] == "chunked"
    assert chunked.body.startswith(b"chunk 0: abcdefgh\nchunk 1: ")
    assert flows[REDIRECT].response.headers["location"] == "/api/items/1"
    assert flows[BINARY].request.body == flows[BINARY].response.body == BINARY_BODY
    cookies = flows[COOKIES]
    assert [v for k, v in cookies.request.headers.fields if k == b"X-Dup"] == [
        b"first",
        b"second",
    ]
    assert cookies.response.headers.get_all("set-cookie") == [
        "session=abc123; Path=/; HttpOnly",
        "theme=dark; Path=/; Max-Age=3600",
    ]


def test_connections_errors_and_tls(flows):
    down = flows[UNREACHABLE]
    assert down.response is None and down.request_only
    assert "Connect call failed" in (down.error or "")
    secure = flows[SECURE]
    assert secure.tls and secure.request.scheme == "https"
    assert secure.tls_version is not None and secure.tls_version.startswith("TLSv1.")
    assert json.loads(secure.response.body)["tls"] is True
    plain = [e for e in flows if e.index != SECURE]
    assert not any(e.tls for e in plain)
    assert all(e.client_address == "127.0.0.1" and e.client_port for e in flows)


def test_decoded_bodies(flows):
    decoded = list(load_capture(FLOW12, decoded=True, cache=False))
    body = json.loads(decoded[GZIP].response.body)
    assert body["items"] == [ITEM] * 20
    assert "content-encoding" not in decoded[GZIP].response.headers
    assert decoded[GET].response.body == flows[GET].response.body


def test_the_har_holds_the_same_exchanges(flows, entries):
    assert _shape(entries) == EXPECTED
    for flow, entry in zip(flows, entries, strict=True):
        assert entry.request.body == flow.request.body, flow.index
        if flow.response is None:
            assert entry.response is None and entry.error
            continue
        # The HAR keeps the headers as recorded, Content-Encoding included
        # (mitmproxy 12's reader would decode it away).
        if flow.index == GZIP:
            # Compressed again by the installed mitmproxy: other bytes under
            # 12 (compression level 1) than the upstream's, and Content-Length
            # follows them.
            body = entry.response.body
            assert gzip.decompress(body) == gzip.decompress(flow.response.body)
            assert entry.response.headers["content-length"] == str(len(body))
            drop = {b"Content-Length"}
            assert [f for f in entry.response.headers.fields if f[0] not in drop] == [
                f for f in flow.response.headers.fields if f[0] not in drop
            ]
        else:
            assert entry.response.headers.fields == flow.response.headers.fields
            assert entry.response.body == flow.response.body, flow.index


def test_the_warm_load_reads_the_same(flows, capture_cache):
    cold = load_capture(FLOW12)
    assert list(cold) == flows and not cold.stats.from_cache
    warm = load_capture(FLOW12)
    assert list(warm) == flows and warm.stats.from_cache


def test_the_same_traffic_as_mitmproxy_11_recorded():
    old = [e for e in load_capture(FLOW11, cache=False) if e.request.path != "/large"]
    new = list(load_capture(FLOW12, cache=False))
    assert _shape(old) == _shape(new)
    for a, b in zip(old, new, strict=True):
        assert a.request.body == b.request.body
        assert [k for k, _ in a.request.headers.fields] == [
            k for k, _ in b.request.headers.fields
        ]
        if a.response is not None:
            assert [k for k, _ in a.response.headers.fields] == [
                k for k, _ in b.response.headers.fields
            ]
            if b.request.path != "/gzip":  # gzip keeps its own mtime bytes
                assert a.response.body == b.response.body


@pytest.fixture(scope="module")
def json_rewrite():
    # Built once per module, through the kit's build cache (module-scoped
    # fixtures are set up before the private per-test cache of conftest).
    return built(JSON_REWRITE)


@pytest.mark.toolchain("go")
@pytest.mark.parametrize("path", [FLOW12, HAR12], ids=["flow", "har"])
def test_replayed_through_the_json_rewrite_sample(json_rewrite, path):
    result = replay(
        json_rewrite,
        path,
        config=json.dumps({"set": {"by": "wasmkit"}}),
        progress=False,
    )
    assert result.capture_error is None and not result.failed
    flows = list(result)
    assert len(flows) == len(EXPECTED)

    def body(index):
        return flows[index].result.response_after.body

    def logs(index):
        return [log.message for log in flows[index].result.logs]

    assert json.loads(body(GET)) == {**ITEM, "by": "wasmkit"}
    assert json.loads(body(POST)) == {
        "id": 2, "name": "gadget", "price": 12.25, "by": "wasmkit"
    }  # fmt: skip
    assert json.loads(body(COOKIES)) == {"x-dup": ["first", "second"], "by": "wasmkit"}
    assert json.loads(body(SECURE))["by"] == "wasmkit"
    assert logs(GET) == ["json_rewrite: rewrote 60 bytes"]
    # Compressed on the wire: the filter sees gzip, not JSON.
    assert logs(GZIP) == ["json_rewrite: not json"]
    # Not application/json: passed on as recorded.
    assert body(MISSING) == b'{"detail":"no item 404","error":"not_found"}'
    assert body(ERROR) == b"internal error: the sample upstream failed\n"
    assert flows[UNREACHABLE].no_response
    rows = result.summary_rows
    assert [r["status_before"] for r in rows][:4] == [200, 201, 200, 204]


@pytest.mark.toolchain("go")
def test_replayed_decoded_the_gzip_body_is_rewritten_too(json_rewrite):
    result = replay(
        json_rewrite,
        FLOW12,
        config=json.dumps({"set": {"by": "wasmkit"}}),
        decoded=True,
        progress=False,
    )
    rewritten = json.loads(list(result)[GZIP].result.response_after.body)
    assert rewritten["by"] == "wasmkit" and rewritten["items"] == [ITEM] * 20


def test_the_script_remakes_the_capture_under_mitmproxy_12_only(tmp_path):
    script = CAPTURES / "make_mitmproxy12_capture.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if not version.VERSION.startswith("12.3."):
        # mitmproxy 11 (Python 3.11): refused in one line naming the version.
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f"{Path(sys.executable).with_name('mitmdump')} is mitmproxy "
            f"{version.VERSION}, not 12.3.x: run this from a venv with mitmproxy "
            "12.3 (Python >= 3.12)"
        ]
        return
    assert proc.returncode == 0, proc.stderr[-4000:]
    made = list(load_capture(tmp_path / "api-mitmproxy12.flow", cache=False))
    assert _shape(made) == EXPECTED
    har = list(load_capture(tmp_path / "api-mitmproxy12.har", cache=False))
    assert _shape(har) == EXPECTED
    table = (tmp_path / "mitmproxy12.md").read_text()
    assert table.startswith(f"# The sample API recorded by mitmproxy {version.VERSION}")
