"""An exchange's local reply details, read from Envoy's lines.

The runner cuts Envoy's stderr into one window per exchange at a marker
request (a direct response on the marker listener). The marker's own
"Preparing local reply with details direct_response" line follows its
marker line and can be read only once the next exchange's window started:
the details are the filter's all the same.
"""

from __future__ import annotations

import dataclasses

from tests.envoy.conftest import API_FLOW, sample
from wasmkit.envoy import EnvoyRunner
from wasmkit.envoy.outcome import reply_details
from wasmkit.traffic import load_capture

AUTHORIZE = '{"header": "accept", "tokens": ["application/json"]}'
DETAILS = "Preparing local reply with details "


def test_the_markers_direct_response_is_not_the_filters_reply():
    flows = list(load_capture(API_FLOW))[:9]
    with EnvoyRunner(
        sample("authorize", "rust"), root_id="authorize", config=AUTHORIZE
    ) as runner:
        result = runner.replay(flows)
        assert runner.process is not None
        lines = list(runner.process.lines)
    denied = [f for f in result.flows if f.result.local_reply is not None]
    assert denied, "the filter denied no flow"
    marker = next(
        ln
        for ln in lines
        if ln.logger == "http" and "details direct_response" in ln.message
    )
    replies = [
        ln
        for ln in lines
        if ln.logger == "http" and DETAILS in ln.message and ln is not marker
        and "direct_response" not in ln.message
    ]  # fmt: skip
    assert replies, "no local reply line of the filter's"
    # The window as the race makes it: the previous marker's reply first.
    window = [dataclasses.replace(marker, seq=0), *replies[:1]]
    assert reply_details(window) == reply_details(replies[:1])
    assert reply_details([marker]) == ""
    # And what the runner reported for the denied flows.
    assert all(f.result.local_reply.details != "direct_response" for f in denied)
