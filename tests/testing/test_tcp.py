"""The TCP driver's Envoy-level entry points, stream info and connection.

The probe is :mod:`tests.testing.tcp_probe`; ``tests/envoy/test_tcp_env.py``
checks the same sequences against a real Envoy.
"""

from __future__ import annotations

import pytest

from tests.testing.tcp_probe import probe, u64
from wasmkit.abi.constants import PeerType, StreamType
from wasmkit.host.message import Connection
from wasmkit.host.properties import StreamInfo
from wasmkit.testing import Driver, filter_wat

PROBE = probe()


def _tags(d: Driver) -> list[str]:
    return [m for m in d.logs.info if "=" not in m and "missing" not in m]


def test_a_context_never_created_hears_nothing():
    # Envoy's CloseStream (network): before onNewConnection, a close event,
    # upstream and client data call nothing and continue.
    with Driver(PROBE) as d:
        tcp = d.tcp(create=False)
        assert tcp.created is None
        assert tcp.on_event("remote_close") == []
        r = tcp.on_write(b"Done", end_stream=True)
        assert (r.called, r.action) == (False, "Continue")
        assert r.notes == [
            "Envoy calls nothing: the context was never created "
            "(no onCreate / onNewConnection)"
        ]
        assert tcp.on_data(b"Fake").action == "Continue"
        assert not tcp.log().called
        assert tcp.finish() == []
        assert tcp.callbacks == []
        # onNewConnection creates the context; then the close is heard.
        assert tcp.on_new_connection().action == "Continue"
        assert tcp.created is not None and tcp.created.called
        assert tcp.on_event("connected") == []
        calls = tcp.on_event("RemoteClose")
        assert [c.callback for c in calls] == [
            "proxy_on_downstream_connection_close",
            "proxy_on_done",
            "proxy_on_log",
            "proxy_on_delete",
        ]
        assert _tags(d) == ["new", "dclose 2", "done", "log", "delete"]
        # Once: a second close event is a no-op.
        assert tcp.on_event("remote_close") == []
        with pytest.raises(ValueError, match="no connection event"):
            tcp.on_event("half_close")


def test_happy_path_as_envoys_network_test():
    # Envoy's HappyPath: data both ways, the upstream's end (its close is
    # synthesised, UNKNOWN), then the client's close ends the connection.
    with Driver(PROBE) as d:
        tcp = d.tcp()
        tcp.on_new_connection()
        assert tcp.on_data(b"Fake").action == "Continue"
        assert tcp.on_write(b"Done", end_stream=True).action == "Continue"
        assert not tcp.ended
        tcp.on_event("remote_close")
        assert tcp.ended and tcp.connection_closed
        assert tcp.callbacks == [
            "on_context_create",
            "on_new_connection",
            "on_downstream_data",
            "on_upstream_data",
            "on_upstream_connection_close",
            "on_downstream_connection_close",
            "on_done",
            "on_log",
            "on_delete",
        ]
        assert _tags(d) == [
            "new", "down 0", "up 1", "uclose 0", "dclose 2", "done", "log", "delete",
        ]  # fmt: skip


def test_no_data_reaches_the_filter_once_the_connection_closed():
    with Driver(PROBE) as d:
        tcp = d.tcp()
        tcp.on_new_connection()
        tcp.on_event("local_close")
        for r in (tcp.on_write(b"late", end_stream=True), tcp.on_data(b"late")):
            assert (r.called, r.action) == (False, "Continue")
            assert r.notes == ["Envoy calls nothing: the connection is closed"]
        assert _tags(d) == ["new", "dclose 1", "done", "log", "delete"]


def test_stream_info_and_connection_as_the_properties_read_them():
    with Driver(PROBE) as d:
        tcp = d.tcp(stream_info=StreamInfo(start_ns=1_700_000_000_123_456_789))
        tcp.on_new_connection()
        at_start = d.logs.info[1:9]
        assert at_start == [
            f"request.time={u64(1_700_000_000_123_456_789)}",
            "request.duration missing",
            f"request.total_size={u64(0)}",
            f"response.total_size={u64(0)}",
            f"response.flags={u64(0)}",
            "response.code missing",
            "response.code_details missing",
            "connection.termination_details missing",
        ]
        tcp.on_data(b"ping")
        tcp.on_write(b"echo:ping")
        tcp.set_stream_info(code_details="idle_timeout", response_flags="UT")
        r = tcp.log()
        assert r.logs.info == [
            "log",
            f"request.time={u64(1_700_000_000_123_456_789)}",
            "request.duration missing",
            f"request.total_size={u64(4)}",
            f"response.total_size={u64(9)}",
            f"response.flags={u64(tcp.stream_info.response_flags or 0)}",
            "response.code missing",
            "response.code_details=" + b"idle_timeout".hex(),
            "connection.termination_details missing",
        ]
        assert tcp.stream_info.response_flags


def test_the_connection_is_settable_before_a_call():
    addr = filter_wat(
        """
(func (export "proxy_on_new_connection") (param i32) (result i32)
  (drop (call $proxy_get_property (global.get $s_p) (global.get $s_p_len)
    (i32.const 512) (i32.const 516)))
  (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512))
    (i32.load (i32.const 516))))
  (i32.const 0))
""",
        strings={"p": "source\0address"},
    )
    with Driver(addr) as d:
        tcp = d.tcp(Connection(source_address="10.1.2.3", source_port=1234))
        assert tcp.on_new_connection().logs.info == ["10.1.2.3:1234"]
        tcp.set_connection(source_address="192.0.2.9", source_port=5)
        assert tcp.connection.source_port == 5
        assert tcp.on_new_connection().logs.info == ["192.0.2.9:5"]
        tcp.connection = Connection(source_address="::1", source_port=7)
        assert tcp.on_new_connection().logs.info == ["::1:7"]
        with pytest.raises(TypeError, match="no connection field 'port'"):
            tcp.set_connection(port=1)
        with pytest.raises(TypeError, match="takes a wasmkit Connection"):
            tcp.connection = "10.0.0.1"  # type: ignore[assignment]


def test_the_filter_closing_the_connection_ends_it():
    # Envoy's CloseDownstream / CloseUpstream on the real connection: both
    # stream types close the client's connection (details say which); its
    # local close event follows after the callback.
    for stream, details in (
        (StreamType.DOWNSTREAM, "wasm_downstream_close"),
        (StreamType.UPSTREAM, "wasm_upstream_close"),
    ):
        with Driver(probe(close=stream)) as d:
            tcp = d.tcp()  # onCreate, no onNewConnection
            r = tcp.on_write(b"Fake")
            assert (r.action, r.closed) == ("Continue", [stream])
            assert tcp.close_details == details
            assert _tags(d) == ["up 0", "up 9", "dclose 1", "done", "log", "delete"]
            assert r.notes == [
                f"Envoy closes the connection ({details}): the local close "
                "event follows"
            ]


PANIC = filter_wat(
    """
(func (export "proxy_on_new_connection") (param i32) (result i32) unreachable)
(func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) unreachable)
(func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
(func (export "proxy_on_log") (param i32))
"""
)


@pytest.mark.parametrize("entry", ["on_new_connection", "on_data"])
def test_a_panic_closes_the_connection_and_nothing_more_is_called(entry):
    # Envoy's PanicOnNewConnection / PanicOnDownstreamData.
    with Driver(PANIC) as d:
        tcp = d.tcp()
        r = getattr(tcp, entry)()
        assert r.action == "StopIteration" and r.error is not None
        assert tcp.connection_closed
        assert tcp.on_event("local_close") == []
        assert tcp.finish() == []
        assert tcp.callbacks[-1] == r.callback.removeprefix("proxy_")


def test_raw_callbacks_stay_single_calls():
    with Driver(probe(close=StreamType.DOWNSTREAM)) as d:
        tcp = d.tcp()
        r = tcp.on_upstream_data(b"x", end_of_stream=True)
        assert r.closed == [StreamType.DOWNSTREAM]
        assert not tcp.connection_closed and not tcp.ended
        assert tcp.on_downstream_connection_close(PeerType.LOCAL).logs.info[0] == (
            "dclose 1"
        )
        assert tcp.callbacks == [
            "on_context_create",
            "on_upstream_data",
            "on_downstream_connection_close",
        ]
