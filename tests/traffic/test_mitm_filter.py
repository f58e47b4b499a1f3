"""compile_filter: mitmproxy filter expressions over wasmkit exchanges."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasmkit.host.message import response
from wasmkit.traffic import load_capture, mitm

FLOW = Path(__file__).resolve().parents[2] / "samples" / "captures" / "api.flow"


@pytest.fixture(scope="module")
def exchanges():
    return list(load_capture(FLOW, cache=False))


@pytest.mark.parametrize(
    "expr", ["~m POST", "~c 404", "!~m GET", "~u /api/ & ~m GET", "~t json", "~b items"]
)
def test_same_flows_as_load_capture_filter_expr(exchanges, expr):
    match = mitm.compile_filter(expr)
    expected = [e.index for e in load_capture(FLOW, filter_expr=expr, cache=False)]
    assert [e.index for e in exchanges if match(e)] == expected
    assert expected  # each expression matches something here


def test_after_filter_tuples_and_converted_flows(exchanges):
    missing = next(e for e in exchanges if e.request.path == "/missing")
    match = mitm.compile_filter("~c 403")
    assert not match(missing)
    denied = (missing, missing.to_request_message(), response(403), None)
    assert match(denied)
    flow = mitm.to_flow(*denied)
    assert match(flow) and match(flow)  # converted once, matched many times


def test_header_names_are_matched_as_the_filter_sees_them(exchanges):
    # Envoy hands filters lower-case names; ~h searches the header block.
    match = mitm.compile_filter("~h content-type")
    typed = [
        e.index
        for e in exchanges
        if e.response and "Content-Type" in e.response.headers
    ]
    assert typed and [e.index for e in exchanges if match(e)] == typed


def test_invalid_expression_raises_value_error():
    with pytest.raises(ValueError, match="Invalid filter expression"):
        mitm.compile_filter("~m (")
