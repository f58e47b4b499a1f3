"""Filters built with the real Go SDK (proxy-wasm-go-sdk) run in the host.

One small filter per host feature lives in ``tests/data/filters/<feature>/go``
(HTTP callouts, ticks, shared data with CAS, shared queues, metrics,
properties, body rewriting). Each is built by ``scripts/build-go.sh`` (offline,
from the kit's module cache) once per session, and its observable results
checked: what went upstream and back, logs, callouts, shared state, metrics.
The fixtures hand out compiled modules (a Go module is about 2.7 MB and takes
wasmtime a second or so to compile), so every test starts fresh VMs cheaply.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from wasmkit.host import CompiledModule, compile_module, load, request, response
from wasmkit.host.callouts import Callout, CalloutReply
from wasmkit.host.shared import SharedState

ROOT = Path(__file__).resolve().parent.parent
FILTERS = ROOT / "tests" / "data" / "filters"

pytestmark = pytest.mark.toolchain("go")


@pytest.fixture(scope="session")
def go_build(tmp_path_factory) -> Callable[[str], CompiledModule]:
    """Builds ``tests/data/filters/<feature>/go`` once; returns it compiled."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed (Go >= 1.24 builds proxy-wasm filters)")
    out = tmp_path_factory.mktemp("go-filters")
    built: dict[str, CompiledModule] = {}

    def build(feature: str) -> CompiledModule:
        if feature not in built:
            target = out / f"{feature}.wasm"
            proc = subprocess.run(
                [
                    "bash",
                    str(ROOT / "scripts" / "build-go.sh"),
                    str(FILTERS / feature / "go"),
                    str(target),
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if proc.returncode != 0:
                pytest.fail(f"building the {feature} Go filter failed:\n{proc.stderr}")
            built[feature] = compile_module(target)
        return built[feature]

    return build


@pytest.fixture(scope="session")
def callout_wasm(go_build):
    return go_build("callout")


@pytest.fixture(scope="session")
def ticks_wasm(go_build):
    return go_build("ticks")


@pytest.fixture(scope="session")
def shared_data_wasm(go_build):
    return go_build("shared_data")


@pytest.fixture(scope="session")
def shared_queue_wasm(go_build):
    return go_build("shared_queue")


@pytest.fixture(scope="session")
def metrics_wasm(go_build):
    return go_build("metrics")


@pytest.fixture(scope="session")
def properties_wasm(go_build):
    return go_build("properties")


@pytest.fixture(scope="session")
def body_rewrite_wasm(go_build):
    return go_build("body_rewrite")


def messages(records) -> list[str]:
    return [r.message for r in records]


def hostcalls(trace, *names: str) -> list[tuple[str, object]]:
    return [
        (t.name, t.result) for t in trace if t.kind == "hostcall" and t.name in names
    ]


# -- 1. HTTP callouts --------------------------------------------------------------


def test_go_callout_resumes_the_request_on_200(callout_wasm):
    plugin = load(
        callout_wasm,
        responder={"auth": {"status": 200, "body": "ok", "latency_ms": 10}},
    )
    start = plugin.vm.clock.now_ns()
    result = plugin.run_http(
        request("GET", "http://h/x", [("x-user", "alice")]),
        response(200, [("k", "v")], "body"),
    )
    assert result.error is None, result.error
    assert result.stalled is None and result.local_reply is None
    # The request went upstream only after the answer, with the answer's body.
    assert result.request_forwarded
    # After the connection manager's x-forwarded-proto and x-request-id.
    assert result.request_after.headers[-4:] == [
        (b"x-user", b"alice"),
        (b"x-forwarded-proto", b"http"),
        (b"x-request-id", result.request_before.get(b"x-request-id")),
        (b"x-auth", b"ok"),
    ]
    assert result.response_after.status == 200
    assert result.response_after.body == b"body"
    (call,) = plugin.vm.callouts
    assert result.callouts == [call]
    assert call.cluster == "auth"
    assert call.headers == [
        (b":method", b"GET"),
        (b":path", b"/check"),
        (b":authority", b"auth"),
        (b"x-user", b"alice"),
    ]
    assert call.body == b"" and call.timeout_ms == 5000
    assert call.outcome == "response"
    assert call.response.status == 200 and call.response.body == b"ok"
    assert call.context_id == result.context_id
    assert call.delivered_ns - call.sent_ns == 10_000_000
    assert plugin.vm.clock.now_ns() - start == 10_000_000
    assert messages(result.logs) == [
        f"callout: sent token {call.token}",
        # :status and Envoy's x-envoy-upstream-service-time (measured).
        'callout: auth answered status="200" headers=2 body="ok"',
    ]
    callbacks = [t.name for t in result.trace if t.kind == "callback"]
    assert callbacks.index("proxy_on_request_headers") < callbacks.index(
        "proxy_on_http_call_response"
    )
    assert hostcalls(result.trace, "proxy_http_call", "proxy_continue_stream") == [
        ("proxy_http_call", "OK"),
        ("proxy_continue_stream", "OK"),
    ]


@pytest.mark.parametrize(
    ("answer", "said", "body"),
    [
        (
            {"status": 401, "body": "nope"},
            'status="401" headers=2 body="nope"',
            b"denied by auth (status 401)",
        ),
        ({"fail": True}, 'status="" headers=0 body=""', b"auth did not answer"),
    ],
    ids=["401", "failure"],
)
def test_go_callout_denies_with_403(callout_wasm, answer, said, body):
    plugin = load(callout_wasm, responder={"auth /check": answer})
    result = plugin.run_http(request("GET", "http://h/x"), response(200, [], "secret"))
    assert result.error is None, result.error
    assert not result.request_forwarded
    assert result.response_before is None  # upstream was never asked
    assert result.local_reply.callback == "proxy_on_http_call_response"
    assert result.response_after.status == 403
    assert result.response_after.body == body
    assert (b"x-denied-by", b"callout") in result.response_after.headers
    assert f"callout: auth answered {said}" in messages(result.logs)
    assert plugin.vm.callouts[0].outcome == (
        "failure" if "fail" in answer else "response"
    )


def test_go_callout_with_a_responder_function_and_timeout(callout_wasm):
    def responder(call: Callout):
        user = dict(call.headers).get(b"x-user")
        if user == b"alice":
            return response(200, [], "hello alice")
        if user == b"bob":
            return CalloutReply(response(403, [], "not bob"), latency_ms=5)
        return None  # no answer: the 5 s timeout ends the call with a 504

    plugin = load(callout_wasm, responder=responder, clusters=["auth"])
    alice = plugin.run_http(
        request("GET", "http://h/", [("x-user", "alice")]), response(200)
    )
    assert (b"x-auth", b"hello alice") in alice.request_after.headers
    assert alice.response_after.status == 200
    bob = plugin.run_http(request("GET", "http://h/", [("x-user", "bob")]), response())
    assert bob.response_after.status == 403
    assert bob.response_after.body == b"denied by auth (status 403)"
    start = plugin.vm.clock.now_ns()
    nobody = plugin.run_http(request("GET", "http://h/"), response())
    assert plugin.vm.clock.now_ns() - start == 5_000_000_000
    assert nobody.callouts[0].outcome == "timeout"
    assert nobody.response_after.body == b"denied by auth (status 504)"
    assert [c.outcome for c in plugin.vm.callouts] == [
        "response",
        "response",
        "timeout",
    ]


def test_go_callout_to_an_unknown_cluster_is_refused(callout_wasm):
    plugin = load(callout_wasm, responder={"other": {"status": 200}})
    result = plugin.run_http(request("GET", "http://h/"), response())
    assert hostcalls(result.trace, "proxy_http_call") == [
        ("proxy_http_call", "BAD_ARGUMENT")
    ]
    assert plugin.vm.callouts == []
    assert "callout: dispatch failed: error status returned by host: bad argument" in (
        messages(result.logs)
    )
    assert result.response_after.status == 503
    assert result.response_after.body == b"auth unavailable"
    assert result.local_reply.callback == "proxy_on_request_headers"


# -- 2. ticks ------------------------------------------------------------------------


def test_go_ticks_follow_the_virtual_clock(ticks_wasm):
    plugin = load(ticks_wasm, config=b"100", vm_id="ticker")
    vm = plugin.vm

    def ticks() -> list[str]:
        return [m for m in messages(vm.logs) if m.startswith("ticks: tick")]

    assert messages(vm.logs) == ["ticks: period 100 ms"]
    start = vm.clock.now_ns()
    vm.advance(99)
    assert ticks() == []
    vm.advance(1)
    assert ticks() == ["ticks: tick 1"]
    assert vm.shared.get("ticker", b"ticks")[0] == b"1"
    # An HTTP stream sees the count the root context keeps.
    result = plugin.run_http(request(), response(200))
    assert result.error is None, result.error
    assert (b"x-ticks", b"1") in result.response_after.headers
    vm.advance(250)
    assert ticks()[-1] == "ticks: tick 3"
    # The filter stops its ticker after the fifth tick.
    vm.advance(10_000)
    assert ticks() == [f"ticks: tick {n}" for n in range(1, 6)]
    assert messages(vm.logs)[-1] == "ticks: stopped"
    assert vm.shared.get("ticker", b"ticks")[0] == b"5"
    on_tick = [t for t in vm.trace if t.name == "proxy_on_tick"]
    assert len(on_tick) == 5
    assert {t.context_id for t in on_tick} == {plugin.root.id}
    assert [
        r.time_ns - start for r in vm.logs if r.message.startswith("ticks: tick")
    ] == [n * 100_000_000 for n in range(1, 6)]
    assert vm.clock.now_ns() - start == 10_350_000_000
    late = plugin.run_http(request(), response(200))
    assert (b"x-ticks", b"5") in late.response_after.headers


# -- 3. shared data with CAS ------------------------------------------------------------


def test_go_shared_data_counts_across_two_vms(shared_data_wasm):
    state = SharedState()
    first = load(shared_data_wasm, shared=state, vm_id="x")
    second = load(shared_data_wasm, shared=state, vm_id="x")
    elsewhere = load(shared_data_wasm, shared=state, vm_id="y")
    assert first.vm is not second.vm
    seen = []
    for plugin in (first, second, first, second):
        result = plugin.run_http(request(), response())
        assert result.error is None, result.error
        seen.append(dict(result.request_after.headers)[b"x-hits"])
    assert seen == [b"1", b"2", b"3", b"4"]
    value, cas = state.get("x", b"hits")
    assert value == b"4" and cas > 0
    # The first request found nothing; the others read, then wrote with the CAS.
    assert hostcalls(
        result.trace, "proxy_get_shared_data", "proxy_set_shared_data"
    ) == [("proxy_get_shared_data", "OK"), ("proxy_set_shared_data", "OK")]
    # Another VM id has its own data.
    other = elsewhere.run_http(request(), response())
    assert dict(other.request_after.headers)[b"x-hits"] == b"1"
    assert state.get("y", b"hits")[0] == b"1"
    assert state.get("x", b"hits")[0] == b"4"


class RacingState(SharedState):
    """Shared data where another writer gets in once, right after a read."""

    def __init__(self, vm_id: str, key: bytes, value: bytes) -> None:
        super().__init__()
        self.race: tuple[str, bytes, bytes] | None = (vm_id, key, value)

    def get(self, vm_id: str, key: bytes) -> tuple[bytes, int] | None:
        found = super().get(vm_id, key)
        if self.race is not None and self.race[:2] == (vm_id, key):
            _, _, value = self.race
            self.race = None
            super().set(vm_id, key, value, 0)  # the filter's CAS is now stale
        return found


def test_go_shared_data_retries_after_a_cas_mismatch(shared_data_wasm):
    state = RacingState("x", b"hits", b"41")
    state.set("x", b"hits", b"40", 0)
    plugin = load(shared_data_wasm, shared=state, vm_id="x")
    result = plugin.run_http(request(), response())
    assert result.error is None, result.error
    assert hostcalls(
        result.trace, "proxy_get_shared_data", "proxy_set_shared_data"
    ) == [
        ("proxy_get_shared_data", "OK"),
        ("proxy_set_shared_data", "CAS_MISMATCH"),
        ("proxy_get_shared_data", "OK"),
        ("proxy_set_shared_data", "OK"),
    ]
    headers = dict(result.request_after.headers)
    assert (headers[b"x-hits"], headers[b"x-attempts"]) == (b"42", b"2")
    assert messages(result.logs) == [
        "shared_data: cas 1 is stale, retrying",
        "shared_data: hits=42 after 2 attempt(s)",
    ]
    assert state.get("x", b"hits") == (b"42", 3)


def test_go_shared_data_cas_on_a_missing_key_is_accepted_as_in_envoy(shared_data_wasm):
    # cpp-host's SharedData::set checks a CAS only against an existing entry:
    # a first write with any CAS stores the value.
    state = SharedState()
    plugin = load(shared_data_wasm, shared=state, vm_id="x")
    result = plugin.run_http(
        request("GET", "http://h/", [("x-probe-cas", "7")]), response()
    )
    assert result.error is None, result.error
    assert "shared_data: probe with cas 7: ok" in messages(result.logs)
    assert state.get("x", b"probe")[0] == b"probed with cas 7"


# -- 4. shared queues --------------------------------------------------------------------


def test_go_shared_queue_items_reach_the_receiving_vm(shared_queue_wasm):
    state = SharedState()
    receiver = load(
        shared_queue_wasm, config="receiver", shared=state, vm_id="receiver"
    )
    sender = load(
        shared_queue_wasm, config="sender receiver", shared=state, vm_id="sender"
    )
    assert messages(receiver.vm.logs) == ["queue: registered jobs as 1"]
    assert messages(sender.vm.logs) == ["queue: sending to receiver/jobs"]
    for method, url in (("POST", "http://h/a"), ("GET", "http://h/b?x=1")):
        result = sender.run_http(request(method, url), response())
        assert result.error is None, result.error
        assert hostcalls(
            result.trace, "proxy_resolve_shared_queue", "proxy_enqueue_shared_queue"
        ) == [
            ("proxy_resolve_shared_queue", "OK"),
            ("proxy_enqueue_shared_queue", "OK"),
        ]
    assert messages(result.logs) == ["queue: sent GET /b?x=1 to 1"]
    # Nothing runs in the receiver until its VM gets time.
    assert state.queue_sizes() == {"receiver/jobs": 2}
    assert messages(receiver.vm.logs) == ["queue: registered jobs as 1"]
    receiver.vm.advance(0)
    assert messages(receiver.vm.logs) == [
        "queue: registered jobs as 1",
        "queue: got POST /a",
        "queue: got GET /b?x=1",
    ]
    assert state.queue_sizes() == {"receiver/jobs": 0}
    # As in Envoy, every enqueue posts one on_queue_ready to the owner's root
    # context (the first drained both items, the second found the queue empty).
    ready = [t for t in receiver.vm.trace if t.name == "proxy_on_queue_ready"]
    assert [t.context_id for t in ready] == [receiver.root.id] * 2
    assert hostcalls(receiver.vm.trace, "proxy_dequeue_shared_queue") == [
        ("proxy_dequeue_shared_queue", "OK"),
        ("proxy_dequeue_shared_queue", "OK"),
        ("proxy_dequeue_shared_queue", "EMPTY"),
        ("proxy_dequeue_shared_queue", "EMPTY"),
    ]
    assert not any(t.name == "proxy_on_queue_ready" for t in sender.vm.trace)


def test_go_shared_queue_sender_without_receiver_logs_not_found(shared_queue_wasm):
    sender = load(
        shared_queue_wasm, config="sender nobody", shared=SharedState(), vm_id="s"
    )
    result = sender.run_http(request(), response(200))
    assert result.error is None and result.response_after.status == 200
    assert messages(result.logs) == [
        "queue: cannot resolve nobody/jobs: error status returned by host: not found"
    ]


# -- 5. metrics ------------------------------------------------------------------------


def test_go_metrics_counter_gauge_histogram(metrics_wasm):
    plugin = load(metrics_wasm)
    (defined,) = messages(plugin.vm.logs)
    ids = [int(x) for x in defined.removeprefix("metrics: defined ids ").split()]
    assert [i & 3 for i in ids] == [0, 1, 2]  # the type in the low two bits
    said = []
    for path in ("/a", "/abcd", "/"):
        result = plugin.run_http(request("GET", f"http://h{path}"), response())
        assert result.error is None, result.error
        said += messages(result.logs)
    # While a stream runs it is the one active stream; its end lowers the gauge.
    assert said == [
        "metrics: requests=1 active=1",
        "metrics: requests=2 active=1",
        "metrics: requests=3 active=1",
    ]
    table = plugin.vm.metrics.table()
    assert result.metrics == table
    assert table == [
        {
            "name": "wasmcustom.go_requests",
            "type": "counter",
            "value": 3,
            "count": None,
            "samples": None,
        },
        {
            "name": "wasmcustom.go_active",
            "type": "gauge",
            "value": 0,
            "count": None,
            "samples": None,
        },
        {
            "name": "wasmcustom.go_path_length",
            "type": "histogram",
            "value": None,
            "count": 3,
            "samples": [2, 5, 1],
        },
    ]


# -- 6. properties ------------------------------------------------------------------------


def test_go_properties_read_set_and_read_back(properties_wasm):
    plugin = load(
        properties_wasm,
        root_id="props",
        name="props-plugin",
        vm_id="pvm",
        properties={"xds.route_name": "api"},
    )
    assert messages(plugin.vm.logs) == [
        "prop plugin_root_id=props",
        "prop plugin_name=props-plugin",
        "prop plugin_vm_id=pvm",
    ]
    result = plugin.run_http(
        request("PUT", "http://example.com/p/q?z=1", [("x-k", "v1")]),
        response(201, [], "made"),
    )
    assert result.error is None, result.error
    assert messages(result.logs) == [
        "prop request.path=/p/q?z=1",
        "prop request.url_path=/p/q",
        "prop request.method=PUT",
        "prop request.host=example.com",
        "prop request.headers.x-k=v1",
        "prop xds.route_name=api",
        "prop plugin_root_id=props",
        "prop plugin_name=props-plugin",
        "prop wasmkit_note=noted /p/q?z=1",
        "prop response.code=201",
        "prop wasmkit_note=noted /p/q?z=1",
    ]
    assert hostcalls(result.trace, "proxy_set_property") == [
        ("proxy_set_property", "OK")
    ]
    # A value set on one stream is that stream's: the next one sets its own.
    again = plugin.run_http(request("GET", "http://example.com/r"), response(404))
    assert "prop wasmkit_note=noted /r" in messages(again.logs)
    assert "prop response.code=404" in messages(again.logs)
    assert (
        "prop request.headers.x-k missing: error status returned by host: not found"
        in (messages(again.logs))
    )


def test_go_properties_defaults(properties_wasm):
    plugin = load(properties_wasm, root_id="props")
    result = plugin.run_http(request(), response())
    logs = messages(plugin.vm.logs) + messages(result.logs)
    # wasmkit's documented default (PluginConfig.name): the root id.
    assert "prop plugin_name=props" in logs
    assert "prop xds.route_name=default" in logs


# -- 7. body rewrite ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk_size", "calls"),
    [
        # The body, then its end in the empty frame of Envoy's HTTP/1 codec:
        # the filter holds the body until then and sees it whole at the end.
        (None, ["body: 11 bytes, end=false", "body: 11 bytes, end=true"]),
        (
            4,
            [
                "body: 4 bytes, end=false",
                "body: 8 bytes, end=false",
                "body: 11 bytes, end=false",
                "body: 11 bytes, end=true",
            ],
        ),
    ],
    ids=["one-chunk", "chunks-of-4"],
)
def test_go_body_rewrite_buffers_then_replaces(body_rewrite_wasm, chunk_size, calls):
    plugin = load(body_rewrite_wasm)
    result = plugin.run_http(
        request("GET", "http://h/page"),
        response(200, [("content-length", "11"), ("k", "v")], "hello world"),
        chunk_size=chunk_size,
    )
    assert result.error is None, result.error
    assert result.stalled is None
    assert messages(result.logs) == calls
    assert result.response_before.body == b"hello world"
    assert result.response_after.body == b"<rewritten>HELLO WORLD</rewritten>"
    assert result.response_after.headers == [
        (b":status", b"200"),
        (b"k", b"v"),
        (b"x-envoy-upstream-service-time", b"0"),
    ]
    assert [t.result for t in result.trace if t.name == "proxy_on_response_body"] == [
        1
    ] * (len(calls) - 1) + [0]
    assert hostcalls(result.trace, "proxy_set_buffer_bytes") == [
        ("proxy_set_buffer_bytes", "OK")
    ]
