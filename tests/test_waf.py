"""The WAF sample (Coraza + OWASP CRS in Go) replaying ``samples/captures/waf.flow``.

The module is built by the real Go compiler through ``wasmkit.build`` with the
build tags in ``samples/filters/waf/go/build-tags`` (the first build takes
about a minute; later ones are cache hits). Loading compiles some 30 MB of
wasm (cached on disk after the first time) and configuring the CRS takes
seconds, so the module and one CRS replay are shared by the tests here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mitmproxy import http, io

import wasmkit
from wasmkit.abi.constants import LogLevel
from wasmkit.errors import FilterStartError
from wasmkit.host import load, request, response
from wasmkit.replay.results import FlowResult
from wasmkit.replay.run import replay

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "filters" / "waf" / "go"
CAPTURES = ROOT / "samples" / "captures"
FLOW = CAPTURES / "waf.flow"
TAGS = (SAMPLE / "build-tags").read_text().strip()

BENIGN = [0, 1, 2, 3, 4]
# Flow index -> a rule the block must name (the CRS' own detection rule; the
# interrupting rule is its anomaly-score evaluation, 949110).
ATTACKS = {
    5: 941100,  # XSS in a query argument (libinjection)
    6: 942100,  # SQL injection in a form field (libinjection)
    7: 942100,  # SQL injection in a JSON field
    8: 930110,  # path traversal
    9: 913100,  # scanner user agent
    10: 942100,  # SQL injection at the end of a 200 KB form
}


@pytest.fixture(scope="module")
def waf() -> Path:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (Go >= 1.25 for Coraza)")
    return wasmkit.build(SAMPLE, tags=TAGS).path


WAF_LIMITS = wasmkit.Limits(timeout_ms=60_000)
"""The CRS spends seconds on the 200 KB form, close to the default 10 s per
callback on a busy machine: the WAF gets a minute, as tutorial 10 gives it."""


@pytest.fixture(scope="module")
def replayed(waf):
    return replay(waf, FLOW, progress=False, limits=WAF_LIMITS)


def _matched(flow: FlowResult) -> list[int]:
    reply = flow.result.local_reply
    assert reply is not None, flow.index
    raw = dict(reply.headers)[b"x-waf-matched"]
    return [int(x) for x in raw.split(b",")]


@pytest.mark.toolchain("go")
def test_every_benign_flow_passes(replayed):
    assert len(replayed) == 11
    assert replayed.failed == []
    for i in BENIGN:
        flow = replayed.flows[i]
        row = flow.summary()
        assert flow.result.local_reply is None, (i, flow.result.local_reply)
        assert row["action"] == "forwarded", row
        assert row["status_after"] == row["status_before"], row
        assert not any(r.message.startswith("waf: blocked") for r in flow.result.logs)


@pytest.mark.toolchain("go")
def test_every_attack_is_blocked_with_403_naming_the_rule(replayed):
    for i, rule in ATTACKS.items():
        flow = replayed.flows[i]
        reply = flow.result.local_reply
        assert reply is not None and reply.status == 403, (i, reply)
        assert flow.summary()["status_after"] == 403
        assert reply.details == "waf_rule_949110"
        assert dict(reply.headers)[b"x-waf-rule"] == b"949110"
        assert rule in _matched(flow), (i, _matched(flow))
        body = json.loads(reply.body)
        assert body["blocked"] is True and body["rule"] == 949110
        assert rule in [m["id"] for m in body["matched"]]
        messages = [r.message for r in flow.result.logs]
        assert any(m.startswith(f"waf: rule {rule} matched") for m in messages)
        assert any(
            m.startswith("waf: blocked with 403 by rule 949110") for m in messages
        )
        # What the client got is the WAF's reply, not the upstream's answer.
        assert flow.result.response_after.status == 403


@pytest.mark.toolchain("go")
def test_match_logs_are_warnings_naming_rule_and_variable(replayed):
    xss = [r for r in replayed.flows[5].result.logs if "rule 941100" in r.message]
    assert len(xss) == 1
    assert xss[0].level == LogLevel.WARN
    assert "ARGS_GET:q" in xss[0].message
    assert "XSS Attack Detected via libinjection" in xss[0].message


@pytest.mark.toolchain("go")
def test_large_form_blocked_when_the_body_arrives_in_chunks(waf):
    result = replay(
        waf,
        FLOW,
        filter_expr="~u /order",
        chunk_size=16384,
        progress=False,
        limits=WAF_LIMITS,
    )
    assert len(result) == 1
    (flow,) = result.flows
    reply = flow.result.local_reply
    assert reply is not None and reply.status == 403
    assert 942100 in _matched(flow)


@pytest.mark.toolchain("go")
def test_own_rules_without_the_crs(waf):
    rule = (
        'SecRule ARGS:q "@contains evil" '
        "\"id:1001,phase:1,deny,status:418,log,msg:'evil query'\""
    )
    config = json.dumps({"directives": ["SecRuleEngine On", rule]})
    plugin = load(waf, config=config, progress=False)
    try:
        ok = plugin.run_http(request("GET", "http://shop.test/?q=good"), response())
        bad = plugin.run_http(request("GET", "http://shop.test/?q=evil"), response())
    finally:
        plugin.vm.close()
    assert ok.local_reply is None
    assert bad.local_reply is not None
    assert bad.local_reply.status == 418
    assert bad.local_reply.details == "waf_rule_1001"
    assert json.loads(bad.local_reply.body)["matched"] == [
        {"id": 1001, "msg": "evil query"}
    ]
    assert bad.local_reply.callback == "proxy_on_request_headers"


@pytest.mark.toolchain("go")
def test_body_past_the_limit_gets_413(waf):
    directives = [
        "SecRuleEngine On",
        "SecRequestBodyAccess On",
        "SecRequestBodyLimitAction Reject",
    ]
    config = json.dumps({"directives": directives, "request_body_limit": 100})
    plugin = load(waf, config=config, progress=False)
    try:
        form = [("content-type", "application/x-www-form-urlencoded")]
        small = plugin.run_http(request("POST", "http://shop.test/", form, "a=1"))
        big = plugin.run_http(
            request("POST", "http://shop.test/", form, "a=" + "x" * 200)
        )
    finally:
        plugin.vm.close()
    assert small.local_reply is None
    assert big.local_reply is not None and big.local_reply.status == 413
    assert big.local_reply.details == "waf_request_body_limit"


@pytest.mark.toolchain("go")
@pytest.mark.parametrize(
    ("config", "said"),
    [
        ('{"rules": []}', 'unknown field "rules"'),
        ('{"paranoia_level": 9}', '"paranoia_level" must be 1 to 4'),
        ('{"directives": ["SecRuleEngine On"], "paranoia_level": 2}', "CRS settings"),
        ('{"directives": ["SecNoSuchDirective 1"]}', "Coraza refused"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_configuration_fails_the_start(waf, config, said):
    with pytest.raises(FilterStartError, match="proxy_on_configure") as info:
        load(waf, config=config, progress=False)
    assert said in str(info.value)


def _flows(path: Path) -> list[tuple[str, str, int]]:
    with path.open("rb") as f:
        flows = [
            fl for fl in io.FlowReader(f).stream() if isinstance(fl, http.HTTPFlow)
        ]
    return [
        (
            fl.request.method,
            fl.request.path,
            fl.response.status_code if fl.response else 0,
        )
        for fl in flows
    ]


def test_capture_script_makes_the_committed_capture(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(CAPTURES / "make_waf_capture.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _flows(tmp_path / "waf.flow") == _flows(FLOW)
    rows = [
        [line for line in p.read_text().splitlines() if line.startswith("| ")]
        for p in (tmp_path / "waf.md", CAPTURES / "waf.md")
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 12
    assert FLOW.stat().st_size < 300 * 1024
