"""The replay engine on real WAT filters with in-memory exchanges."""

from __future__ import annotations

from dataclasses import dataclass

from tests.host.test_events import TICKER
from tests.host.test_safety import TRAP_ON_BOOM
from tests.host.test_stream import DENY
from wasmkit.host import load, request, response
from wasmkit.host.message import Connection, HttpMessage
from wasmkit.replay.engine import ReplayOptions, replay_all
from wasmkit.testing import filter_wat


@dataclass
class Exchange:
    """A captured exchange held in memory."""

    index: int
    req: HttpMessage
    resp: HttpMessage | None
    timestamp: float | None = None

    def to_request_message(self) -> HttpMessage:
        return self.req.copy()

    def to_response_message(self) -> HttpMessage | None:
        return None if self.resp is None else self.resp.copy()

    def connection(self) -> Connection:
        return Connection(source_port=40000 + self.index)


ADD = filter_wat(
    """(func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 2)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (drop (call $proxy_remove_header_map_value (i32.const 2)
           (global.get $s_srv) (global.get $s_srv_len)))
         (i32.const 0))""",
    strings={"k": "x-filtered", "v": "1", "srv": "server"},
)


def flows(n=3):
    return [
        Exchange(
            i,
            request("GET", f"http://h/{'boom' if i == 1 else 'ok' + str(i)}"),
            response(
                200, [("server", "s"), ("content-type", "text/plain")], f"body {i}"
            ),
            timestamp=1000.0 + i * 0.25,
        )
        for i in range(n)
    ]


def test_replay_records_every_flow_and_what_changed():
    result = replay_all(load(ADD), flows(), name="add")
    assert len(result) == 3
    rows = result.summary_rows
    assert [r["action"] for r in rows] == ["forwarded"] * 3
    assert rows[0]["response_added"] == 1 and rows[0]["response_removed"] == 1
    assert rows[0]["status_before"] == rows[0]["status_after"] == 200
    changes = {(h["flow"], h["name"], h["change"]) for h in result.header_rows()}
    assert (0, "x-filtered", "added") in changes and (0, "server", "removed") in changes
    assert all(h["change"] != "unchanged" for h in result.header_rows())
    assert any(h["change"] == "unchanged" for h in result.header_rows(unchanged=True))
    records = result.records()
    assert [r["index"] for r in records] == [0, 1, 2]


def test_a_trapping_flow_is_marked_and_the_others_kept():
    # Envoy's default fail_closed: the VM stays failed, the flow after the
    # trap gets the 503 without the filter.
    result = replay_all(load(TRAP_ON_BOOM), flows())
    assert [f.failed for f in result] == [False, True, True]
    assert result.summary_rows[1]["action"] == "failed"
    assert result.summary_rows[1]["error"] == "trap: proxy_on_request_headers"
    after = result.flows[2].result
    assert after.response_after.status == 503 and not after.request_forwarded
    assert after.error.callback == ""
    assert not [t for t in after.trace if t.kind == "callback"]
    # fail_reload: the flow 250 ms later reloads the VM (backoff 100 ms).
    reload = load(TRAP_ON_BOOM, failure_policy="fail_reload", reload_backoff_ms=100)
    result = replay_all(reload, flows())
    assert [f.failed for f in result] == [False, True, False]
    assert result.flows[2].result.response_after.status == 200


def test_local_replies_and_missing_responses():
    denied = replay_all(load(DENY), flows(1))
    assert denied.summary_rows[0]["action"] == "local reply"
    assert denied.summary_rows[0]["status_after"] == 403
    no_resp = replay_all(load(ADD), [Exchange(0, request(), None)])
    assert no_resp.summary_rows[0]["action"] == "no response"
    assert no_resp.flows[0].result.response_after.status == 503


def test_virtual_time_follows_the_capture():
    plugin = load(TICKER)
    # Flows 250 ms apart: the 100 ms ticker fires twice before the second flow.
    replay_all(plugin, flows(2))
    assert [r.message for r in plugin.vm.logs].count("tick") == 2
    plain = load(TICKER)
    replay_all(plain, flows(2), options=ReplayOptions(follow_time=False))
    assert "tick" not in [r.message for r in plain.vm.logs]


def test_frames_and_json(tmp_path):
    result = replay_all(load(ADD), flows())
    summary = result.summary()
    assert list(summary["index"]) == [0, 1, 2]
    assert summary.loc[0, "response_added"] == 1
    headers = result.header_diff()
    assert set(headers["change"]) == {"added", "removed"}
    assert result.body_diff().empty
    path = tmp_path / "out.json"
    result.to_json(path)
    import json

    assert [r["index"] for r in json.loads(path.read_text())] == [0, 1, 2]


def test_a_replay_takes_request_duration_from_the_capture():
    from pathlib import Path

    from tests.testing.test_knobs import TIMING, _read
    from wasmkit.replay.run import replay

    flow = Path(__file__).resolve().parents[2] / "samples" / "captures" / "api.flow"
    result = replay(TIMING, flow, progress=False)
    checked = 0
    for f in result.flows:
        if f.exchange is None or f.exchange.timestamp_end is None:
            continue
        at_log = _read_log(f.result, _read)
        captured = round((f.exchange.timestamp_end - f.exchange.timestamp) * 1e9)
        assert at_log["request.duration"] == max(0, captured), f.index
        checked += 1
    assert checked >= 10


def _read_log(result, read):
    # The reads of proxy_on_log: the last five get_property calls.
    calls = [
        t
        for t in result.trace
        if t.kind == "hostcall" and t.name == "proxy_get_property"
    ]

    class Last:
        def host_calls(self, name):
            return calls[-5:]

    return read(Last())
