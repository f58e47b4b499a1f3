"""Capture loading: cold (mitmproxy parses the file) and warm (wasmkit's cache).

Writes a capture of browser-like flows with mitmproxy's own FlowWriter (12
request and 10 response headers, some repeated; JSON, HTML and empty bodies;
a tenth gzip-encoded) into a temporary directory, then prints flows/s for:
- cold: ``load_capture(cache=False)``, streamed,
- cold + cache write: the first load, which also writes the cache entry,
- warm: later loads, streamed from the cache entry (median of 5),
- warm into a list: the same, keeping every exchange (GC-heavy),
and the same cold/warm pair for a HAR file of the same flows.

Target: warm >= 50,000 flows/s. Usage:
    python benchmarks/bench_capture.py [--flows 20000] [--json]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.io import FlowWriter
from mitmproxy.test import tflow, tutils

from wasmkit.traffic import load_capture

BODY_JSON = json.dumps({"items": [{"id": i, "name": f"item {i}"} for i in range(20)]})
BODY_HTML = "<html><body>" + "<p>hello world</p>" * 40 + "</body></html>"


def make_flow(n: int) -> http.HTTPFlow:
    req_headers = http.Headers(
        [
            (b"Host", b"shop.example.com"),
            (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
            (b"Accept", b"text/html,application/xhtml+xml"),
            (b"Accept", b"application/json;q=0.9"),
            (b"Accept-Language", b"en-GB,en;q=0.5"),
            (b"Accept-Encoding", b"gzip, deflate, br"),
            (b"Cookie", b"session=abc%d; theme=dark" % n),
            (b"X-Request-Id", b"req-%08d" % n),
            (b"Referer", b"https://shop.example.com/"),
            (b"Sec-Fetch-Mode", b"navigate"),
            (b"Connection", b"keep-alive"),
            (b"Content-Length", b"0"),
        ]
    )
    body = BODY_JSON if n % 3 else BODY_HTML
    raw = body.encode()
    resp_headers = [
        (b"Date", b"Wed, 01 May 2024 10:00:00 GMT"),
        (b"Server", b"nginx"),
        (b"Content-Type", b"application/json" if n % 3 else b"text/html"),
        (b"Cache-Control", b"no-cache"),
        (b"Set-Cookie", b"a=1; Path=/"),
        (b"Set-Cookie", b"b=2; Path=/"),
        (b"X-Frame-Options", b"DENY"),
        (b"Strict-Transport-Security", b"max-age=63072000"),
        (b"Vary", b"Accept-Encoding"),
    ]
    if n % 10 == 0:
        raw = gzip.compress(raw, mtime=0)
        resp_headers.append((b"Content-Encoding", b"gzip"))
    resp_headers.append((b"Content-Length", str(len(raw)).encode()))
    f = tflow.tflow(
        req=tutils.treq(
            host="shop.example.com",
            port=443,
            scheme=b"https",
            path=b"/api/items?page=%d" % n,
            headers=req_headers,
            content=b"",
            timestamp_start=1714557600 + n * 0.01,
            timestamp_end=1714557600 + n * 0.01 + 0.001,
        ),
        resp=tutils.tresp(headers=http.Headers(resp_headers), content=raw),
    )
    assert f.response is not None
    f.response.raw_content = raw
    return f


def har_entry(f: http.HTTPFlow) -> dict[str, Any]:
    assert f.response is not None
    return {
        "startedDateTime": "2024-05-01T10:00:00.000Z",
        "time": 12.0,
        "request": {
            "method": f.request.method,
            "url": f.request.url,
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": k, "value": v} for k, v in f.request.headers.items()],
        },
        "response": {
            "status": f.response.status_code,
            "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": k, "value": v}
                for k, v in f.response.headers.items()
                if k.lower() != "content-encoding"
            ],
            "content": {
                "size": len(f.response.content or b""),
                "encoding": "base64",
                "text": base64.b64encode(f.response.content or b"").decode(),
            },
        },
    }


def rate(run: Callable[[], int]) -> float:
    began = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - began)


def measure(path: Path, cache_dir: Path) -> dict[str, float]:
    def stream(**kw: Any) -> Callable[[], int]:
        return lambda: sum(1 for _ in load_capture(path, **kw))

    out = {"cold": rate(stream(cache=False))}
    out["cold_with_cache_write"] = rate(stream(cache_dir=cache_dir))
    out["warm"] = statistics.median(rate(stream(cache_dir=cache_dir)) for _ in range(5))
    out["warm_into_list"] = statistics.median(
        rate(lambda: len(list(load_capture(path, cache_dir=cache_dir))))
        for _ in range(3)
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        flow_path = root / "bench.flow"
        har_path = root / "bench.har"
        entries = []
        with open(flow_path, "wb") as fo:
            writer = FlowWriter(fo)  # type: ignore[no-untyped-call]
            for n in range(args.flows):
                f = make_flow(n)
                writer.add(f)
                entries.append(har_entry(f))
        har_path.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}))
        del entries
        results = {
            "flows": args.flows,
            "flow_file_mb": round(flow_path.stat().st_size / 1e6, 1),
            "flow": measure(flow_path, root / "cache"),
            "har_file_mb": round(har_path.stat().st_size / 1e6, 1),
            "har": measure(har_path, root / "cache"),
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{results['flows']} flows "
        f"(.flow {results['flow_file_mb']} MB, HAR {results['har_file_mb']} MB)"
    )
    for fmt in ("flow", "har"):
        for name, value in results[fmt].items():  # type: ignore[attr-defined]
            print(f"  {fmt:4} {name:22} {value:10,.0f} flows/s")


if __name__ == "__main__":
    main()
