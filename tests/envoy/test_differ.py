"""The comparison with Envoy, field by field: what is normalized and what is not.

Built from stream results as both sides produce them (no Envoy needed here;
``test_against.py`` runs the real one).
"""

from __future__ import annotations

import pytest

import wasmkit
from wasmkit.abi.constants import LogLevel
from wasmkit.envoy import normalize
from wasmkit.envoy.differ import EnvoyComparison, compare_envoy
from wasmkit.host.context import LogRecord
from wasmkit.host.message import HttpMessage, LocalReply, request, response
from wasmkit.host.stream import StreamResult
from wasmkit.replay.results import FlowResult, ReplayResult

ID_A = b"6acf2ab9-fa78-4601-b5f2-54656870d571"
ID_B = b"ea7cc855-b0ba-44e9-a471-2560ccc02627"
DATE_A = b"Mon, 07 Dec 2026 15:39:03 GMT"
DATE_B = b"Wed, 25 Nov 2026 21:12:15 GMT"


def _flow(
    upstream: HttpMessage | None,
    client: HttpMessage | None,
    *,
    captured: HttpMessage | None = None,
    logs: list[tuple[LogLevel, str]] = (),
    reply: LocalReply | None = None,
) -> FlowResult:
    before = captured or request("GET", "http://api.test/items")
    result = StreamResult(
        request_before=before,
        request_after=upstream if upstream is not None else before,
        request_forwarded=upstream is not None,
        response_before=None,
        response_after=client,
        local_reply=reply,
        logs=[LogRecord(level, text, 2) for level, text in logs],
        trace=[],
    )
    return FlowResult(0, None, result, 1.0)


def _compare(w: FlowResult, e: FlowResult) -> EnvoyComparison:
    ours = ReplayResult("f.wasm", [w])
    theirs = ReplayResult("f.wasm", [e], runtime="envoy")
    return wasmkit.compare(ours, theirs)


def _up(*fields: tuple[bytes, bytes], body: bytes = b"") -> HttpMessage:
    return request("GET", "http://api.test/items", list(fields), body)


def test_identical_flows_agree_and_nothing_is_normalized():
    flow = _flow(_up((b"x-a", b"1")), response(200, [(b"x-b", b"2")], "ok"))
    comparison = _compare(flow, flow)
    assert comparison.identical and comparison.unexplained == []
    assert comparison.normalized == dict.fromkeys(normalize.NAMES, 0)
    assert comparison.counts == {
        "exchanges": 1, "agree": 1, "differ": 0, "unexplained": 0,
    }  # fmt: skip
    assert comparison.text().startswith("wasmkit and Envoy agree")
    assert "normalized: nothing" in comparison.text()


def test_random_values_and_framing_are_normalized_and_counted():
    w = _flow(
        _up((b"x-request-id", ID_A), (b"content-length", b"2"), body=b"hi"),
        response(
            200,
            [(b"date", DATE_A), (b"x-envoy-upstream-service-time", b"0"),
             (b"content-length", b"5"), (b"x-b", b"2")],
            "hello",
        ),
    )  # fmt: skip
    e = _flow(
        _up((b"content-length", b"2"), (b"x-request-id", ID_B), body=b"hi"),
        response(
            200,
            [(b"date", DATE_B), (b"x-envoy-upstream-service-time", b"3"),
             (b"x-b", b"2"), (b"transfer-encoding", b"chunked"),
             (b"connection", b"close")],
            "hello",
        ),
    )  # fmt: skip
    comparison = _compare(w, e)
    assert comparison.unexplained == [], comparison.text()
    counts = comparison.normalized
    assert counts["x-request-id"] == 1
    assert counts["date"] == counts["x-envoy-upstream-service-time"] == 1
    assert counts["framing"] == 2  # content-length moved; chunked vs length
    assert counts["hop-by-hop"] == 1
    assert counts["downstream-scheme"] == 0
    assert comparison.flows[0].row()["normalized"]


def test_what_no_rule_explains_stays_unexplained():
    # A content-length that is not the body's size, a date on one side only,
    # a request id equal to the captured one, a header only one side has.
    captured = _up((b"x-request-id", ID_A))
    w = _flow(
        _up((b"x-request-id", ID_A), (b"content-length", b"9"), body=b"hi"),
        response(200, [(b"x-b", b"2")], "ok"),
        captured=captured,
    )
    e = _flow(
        _up((b"x-request-id", ID_B), (b"content-length", b"2"), body=b"hi"),
        response(200, [(b"date", DATE_B), (b"x-b", b"2"), (b"server", b"envoy")], "ok"),
        captured=captured,
    )
    comparison = _compare(w, e)
    fields = [d.field for d in comparison.unexplained]
    assert fields == [
        "upstream_request.headers[x-request-id]",
        "upstream_request.headers[content-length]",
        "client_response.headers[date]",
        "client_response.headers[server]",
    ]
    server = comparison.unexplained[-1]
    assert (server.wasmkit, server.envoy) == ("(absent)", "'envoy'")
    assert server.line() == (
        "flow 0: client_response.headers[server]: wasmkit (absent) | envoy 'envoy'"
    )
    assert not comparison.identical
    assert comparison.counts["unexplained"] == 4


def test_head_and_204_framing_is_compared_as_is():
    head = request("HEAD", "http://api.test/items")
    w = _flow(head, response(204, [(b"content-length", b"0")]), captured=head)
    e = _flow(head, response(204, []), captured=head)
    (d,) = _compare(w, e).unexplained
    assert d.field == "client_response.headers[content-length]"
    assert (d.wasmkit, d.envoy) == ("'0'", "(absent)")


def test_order_status_body_logs_and_replies():
    w = _flow(
        _up((b"a", b"1"), (b"b", b"2")),
        response(403, [], "forbidden\n"),
        logs=[(LogLevel.INFO, "one"), (LogLevel.WARN, "denied")],
        reply=LocalReply(403, [], b"forbidden\n", "denied"),
    )
    e = _flow(
        _up((b"b", b"2"), (b"a", b"1")),
        response(503, [], ""),
        logs=[(LogLevel.INFO, "one"), (LogLevel.ERROR, "denied")],
    )
    comparison = _compare(w, e)
    by_field = {d.field: d for d in comparison.unexplained}
    assert by_field["upstream_request.headers order"].wasmkit == "a, b"
    assert by_field["client_response.status"].envoy == "'503'"
    assert by_field["client_response.body"].wasmkit.startswith("10 bytes")
    assert by_field["logs[1]"].envoy == "error: denied"
    assert by_field["local_reply"].wasmkit == "403 (denied)"


def test_https_captures_reach_envoys_plaintext_listener_as_http():
    captured = request("GET", "https://api.test/")
    ours = captured.copy()
    theirs = request("GET", "http://api.test/")
    w = _flow(ours, response(200), captured=captured)
    e = _flow(theirs, response(200), captured=captured)
    comparison = _compare(w, e)
    assert comparison.identical
    assert comparison.normalized["downstream-scheme"] == 1


def test_missing_flows_and_sides():
    w = _flow(_up(), response(200))
    comparison = compare_envoy(
        ReplayResult("f", [w]), ReplayResult("f", [], runtime="envoy")
    )
    (d,) = comparison.unexplained
    assert (d.field, d.wasmkit, d.envoy) == ("flow", "replayed", "not replayed")
    with pytest.raises(ValueError, match="wasmkit replay, then an Envoy replay"):
        compare_envoy(ReplayResult("f", [w]), ReplayResult("f", [w]))


def test_compare_dispatches_in_either_order_and_renders():
    w = _flow(_up(), response(200, [(b"x", b"1")]))
    e = _flow(_up(), response(200, [(b"x", b"2")]))
    ours = ReplayResult("f.wasm", [w])
    theirs = ReplayResult("f.wasm", [e], runtime="envoy")
    a, b = wasmkit.compare(ours, theirs), wasmkit.compare(theirs, ours)
    assert isinstance(a, EnvoyComparison) and isinstance(b, EnvoyComparison)
    assert a.unexplained == b.unexplained
    assert "client_response.headers[x]" in a._repr_html_()
    frame = a.frame()
    assert list(frame["agrees"]) == [False]
    assert list(a.differences_frame()["field"]) == ["client_response.headers[x]"]
    assert "1 unexplained" in repr(a)


def test_every_normalization_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for norm in normalize.NORMALIZATIONS:
        assert f"`{norm.name}`" in readme, norm.name
        assert set(norm.messages) <= {
            normalize.UPSTREAM,
            normalize.CLIENT,
            normalize.LOGS,
        }
        assert norm.rule and norm.why
    assert set(normalize.RULES) | {"body-reads"} == set(normalize.NAMES)


def _body_flow(lines, body_size):
    flow = _flow(_up(), response(200, [], "x" * body_size))
    flow.result.response_before = flow.result.response_after
    flow.result.logs = [
        LogRecord(LogLevel.INFO, text, 2, callback=cb) for cb, text in lines
    ]
    return flow


def test_a_large_bodys_callbacks_may_follow_envoys_reads():
    head = ("proxy_on_response_headers", "headers")
    tail = ("proxy_on_log", "done")
    ours = [head, ("proxy_on_response_body", "body 20000 eos=0"),
            ("proxy_on_response_body", "body 0 eos=1"), tail]  # fmt: skip
    envoy = [head, ("", "body 16384 eos=0"), ("", "body 3616 eos=0"),
             ("", "body 0 eos=1"), tail]  # fmt: skip
    comparison = _compare(_body_flow(ours, 20000), _body_flow(envoy, 20000))
    assert comparison.identical
    assert comparison.normalized["body-reads"] == 1
    # A small body arrives in one read: its callbacks are compared line by line.
    small = _compare(_body_flow(ours, 2000), _body_flow(envoy, 2000))
    assert [d.field for d in small.unexplained] == ["logs[1]"]
    # The lines after the body callbacks must agree.
    other = [*envoy[:-1], ("", "other")]
    late = _compare(_body_flow(ours, 20000), _body_flow(other, 20000))
    assert late.unexplained and late.normalized["body-reads"] == 0
