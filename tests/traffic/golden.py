"""Golden captures in tests/data/captures, one per format version read.

Regenerate with ``python -m tests.traffic.golden`` (then review the diff): it
writes the captures with mitmproxy's FlowWriter and records what wasmkit reads
from them in ``golden-expected.json``. The test checks that reading the
committed files still gives the committed expectations.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from mitmproxy import flow
from mitmproxy.io import FlowWriter, tnetstring
from mitmproxy.test import tflow

from tests.traffic import helpers
from wasmkit.traffic.model import Exchange, Headers, Skipped

DATA = Path(__file__).resolve().parents[1] / "data" / "captures"
FLOW_FILES = {"21": "golden-v21.flow", "20": "golden-v20.flow"}
HAR_FILE = "golden-1.2.har"
EXPECTED = "golden-expected.json"


def _fixed(f: flow.Flow, n: int) -> flow.Flow:
    f.id = f"golden-{n}"
    f.client_conn.id = f"client-{n}"
    f.server_conn.id = f"server-{n}"
    return f


def golden_flows() -> list[flow.Flow]:
    tcp = tflow.ttcpflow()
    ws = tflow.twebsocketflow()
    flows = [
        helpers.http_flow(0),
        helpers.repeated_headers_flow(),
        helpers.gzip_flow(),
        helpers.trailers_flow(),
        tflow.tflow(err=True),
        tcp,
        ws,
        tflow.tdnsflow(resp=True),
    ]
    return [_fixed(f, n) for n, f in enumerate(flows)]


def flow_bytes(version: int | None = None) -> bytes:
    out = io.BytesIO()
    if version is None:
        writer = FlowWriter(out)  # type: ignore[no-untyped-call]
        for f in golden_flows():
            writer.add(f)
        return out.getvalue()
    for f in golden_flows():
        state = f.get_state()
        # Version 20 differs from 21 only in QUIC's tls_version name.
        state["version"] = version
        tnetstring.dump(state, out)
    return out.getvalue()


def _hdr(h: Headers | None) -> list[list[str]] | None:
    if h is None:
        return None
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in h.fields]


def record(item: Exchange | Skipped) -> dict[str, Any]:
    """An exchange (or skip marker) as JSON-ready data, bytes as latin-1/base64."""
    if isinstance(item, Skipped):
        return {"skipped": item.kind, "index": item.index, "id": item.id}
    rq, rs = item.request, item.response
    return {
        "index": item.index,
        "id": item.id,
        "request": {
            "method": rq.method,
            "scheme": rq.scheme,
            "host": rq.host,
            "port": rq.port,
            "path": rq.path,
            "authority": rq.authority,
            "http_version": rq.http_version,
            "headers": _hdr(rq.headers),
            "body": base64.b64encode(rq.body).decode(),
            "trailers": _hdr(rq.trailers),
            "timestamps": [rq.timestamp_start, rq.timestamp_end],
        },
        "response": None
        if rs is None
        else {
            "status": rs.status,
            "reason": rs.reason,
            "http_version": rs.http_version,
            "headers": _hdr(rs.headers),
            "body": base64.b64encode(rs.body).decode(),
            "trailers": _hdr(rs.trailers),
            "timestamps": [rs.timestamp_start, rs.timestamp_end],
        },
        "error": item.error,
        "client": [item.client_address, item.client_port],
        "server": [item.server_address, item.server_port],
        "tls": [item.tls, item.tls_version, item.sni, item.alpn, item.mtls],
        "timestamps": [item.timestamp_start, item.timestamp_end],
        "websocket_messages": item.websocket_messages,
        "request_message": [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in item.to_request_message().headers
        ],
    }


def har_entries() -> list[dict[str, Any]]:
    entries = [helpers.har_entry(n) for n in range(3)]
    entries.append(
        helpers.har_entry(
            3,
            response={
                "status": 0,
                "statusText": "",
                "httpVersion": "",
                "headers": [],
                "cookies": [],
                "content": {"size": 0, "mimeType": "x-unknown"},
                "redirectURL": "",
                "headersSize": -1,
                "bodySize": -1,
                "_error": "net::ERR_CONNECTION_REFUSED",
            },
        )
    )
    return entries


def read_all(name: str) -> list[dict[str, Any]]:
    """What wasmkit reads from a golden file (HAR flow ids are random: dropped)."""
    from wasmkit.traffic.mitm import read_flows

    rows = [record(x) for x in read_flows(DATA / name)]
    if name.endswith(".har"):
        for row in rows:
            row.pop("id")
    return rows


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / FLOW_FILES["21"]).write_bytes(flow_bytes())
    (DATA / FLOW_FILES["20"]).write_bytes(flow_bytes(20))
    helpers.write_har(DATA / HAR_FILE, har_entries(), indent=1)
    expected = {name: read_all(name) for name in [*FLOW_FILES.values(), HAR_FILE]}
    (DATA / EXPECTED).write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
