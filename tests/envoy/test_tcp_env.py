"""The TCP driver against Envoy 1.40's network Wasm filter.

A real Envoy runs the probe of :mod:`tests.testing.tcp_probe` as a network
filter in front of ``tcp_proxy`` to a loopback upstream; a client connects,
sends ``ping`` and closes. The driver, given the same events through its
Envoy-level entry points (``on_new_connection``, ``on_data``, ``on_write``,
``on_event``), makes the same callbacks in the same order, and the probe
reads the same connection properties (``request.time`` present,
``request.duration`` absent, the byte counts, ``response.flags`` 0 ...).
"""

from __future__ import annotations

import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.envoy.conftest import wat
from tests.testing.tcp_probe import probe
from wasmkit.abi.constants import StreamType
from wasmkit.envoy import config
from wasmkit.envoy.process import EnvoyProcess
from wasmkit.testing import Driver

_TYPES = "type.googleapis.com/envoy.extensions.filters.network."


@contextmanager
def _upstream(mode: str) -> Iterator[int]:
    # A loopback upstream: "echo" answers each read with b"echo:" + it and
    # closes when the client does; "close" closes on the first read, saying
    # nothing.
    server = socket.socket()
    server.bind((config.LOOPBACK, 0))
    server.listen()
    server.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            while data := conn.recv(4096):
                if mode == "close":
                    return
                conn.sendall(b"echo:" + data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        thread.join(10)


def _envoy_logs(module: bytes, mode: str, *, reply: bytes = b"") -> list[str]:
    with tempfile.TemporaryDirectory() as tmp, _upstream(mode) as port:
        work = Path(tmp)
        path = work / "probe.wasm"
        path.write_bytes(module)
        plugin = config.wasm_filter(config.WasmFilterConfig(path))["typed_config"]
        boot = config.bootstrap(
            config.WasmFilterConfig(path), upstream_port=port, callout_ports={}
        )
        chain = boot["static_resources"]["listeners"][0]["filter_chains"][0]
        chain["filters"] = [
            {
                "name": "envoy.filters.network.wasm",
                "typed_config": {
                    "@type": _TYPES + "wasm.v3.Wasm",
                    "config": plugin["config"],
                },
            },
            {
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": _TYPES + "tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "wasmkit",
                    "cluster": config.UPSTREAM_CLUSTER,
                },
            },
        ]
        process = EnvoyProcess(
            config.write_bootstrap(work / "envoy.json", boot),
            work,
            component_levels="wasm:info",
        )
        try:
            process.start()
            listener = process.listener_ports()[config.FILTER_LISTENER]
            with socket.create_connection((config.LOOPBACK, listener), 10) as client:
                client.settimeout(10)
                client.sendall(b"ping")
                # The answer, or the connection's end, before the client's end.
                assert client.recv(100) == reply
                client.shutdown(socket.SHUT_WR)
                while client.recv(100):
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "delete" not in _logs(process):
                time.sleep(0.05)
            time.sleep(0.3)  # anything after delete
            return _logs(process)
        finally:
            process.stop()


def _logs(process: EnvoyProcess) -> list[str]:
    return [
        ln.message.partition(": ")[2]
        for ln in process.lines
        if ln.logger == "wasm" and ln.message.startswith("wasm log")
    ]


def _driver_logs(d: Driver) -> list[str]:
    return [r.message for r in d.logs]


def _same(lines: list[str]) -> list[str]:
    # The connection's start differs (an 8-byte timestamp on both sides).
    return [
        re.sub(r"^request\.time=[0-9a-f]{16}$", "request.time=<ns>", s) for s in lines
    ]


def test_a_connection_the_client_closes():
    module = wat(probe())
    envoy = _envoy_logs(module, "echo", reply=b"echo:ping")
    with Driver(module) as d:
        tcp = d.tcp(create=False)
        tcp.on_new_connection()
        tcp.on_data(b"ping")
        tcp.on_write(b"echo:ping")
        tcp.on_data(b"", end_stream=True)
        # The upstream's end: Envoy reports its close (UNKNOWN) itself.
        tcp.on_write(b"", end_stream=True)
        # Both halves done: tcp_proxy closes the client's connection.
        tcp.on_event("local_close")
        ours = _driver_logs(d)
    assert _same(envoy) == _same(ours)
    assert [s for s in envoy if " " in s and "=" not in s and "missing" not in s] == [
        "down 0",
        "up 0",
        "down 1",
        "up 1",
        "uclose 0",
        "dclose 1",
    ]
    # Sizes at the end: 4 bytes from the client, 9 to it.
    assert "request.total_size=0400000000000000" in envoy
    assert "response.total_size=0900000000000000" in envoy
    assert "request.duration missing" in envoy


def test_the_filter_closes_the_connection_on_upstream_data():
    module = wat(probe(close=StreamType.DOWNSTREAM))
    envoy = _envoy_logs(module, "echo")
    with Driver(module) as d:
        tcp = d.tcp(create=False)
        tcp.on_new_connection()
        tcp.on_data(b"ping")
        r = tcp.on_write(b"echo:ping")
        assert tcp.connection_closed and tcp.ended
        assert tcp.close_details == "wasm_downstream_close"
        assert r.closed == [StreamType.DOWNSTREAM]
        ours = _driver_logs(d)
    assert _same(envoy) == _same(ours)
    tags = [s.split()[0] for s in envoy if "=" not in s and "missing" not in s]
    assert tags == ["new", "down", "up", "up", "dclose", "done", "log", "delete"]


def test_the_upstream_close_comes_after_the_end_when_the_filter_closed():
    # The filter closes (the upstream stream type: the same downstream
    # connection) on the upstream's empty end: the connection ends at once,
    # then Envoy reports the upstream close it synthesises from that end.
    module = wat(probe(close=StreamType.UPSTREAM))
    envoy = _envoy_logs(module, "close")
    with Driver(module) as d:
        tcp = d.tcp(create=False)
        tcp.on_new_connection()
        tcp.on_data(b"ping")
        tcp.on_write(b"", end_stream=True)
        assert tcp.close_details == "wasm_upstream_close"
        ours = _driver_logs(d)
    assert _same(envoy) == _same(ours)
    tags = [s for s in envoy if "=" not in s and "missing" not in s]
    assert tags[-5:] == ["dclose 1", "done", "log", "delete", "uclose 0"]


def test_the_host_stream_hears_the_late_upstream_close_as_envoy_does():
    # The same events through the host's TcpStream (what run_tcp and replays
    # use): the callbacks and the properties the probe reads are Envoy's.
    from wasmkit.host import load

    module = wat(probe(close=StreamType.UPSTREAM))
    envoy = _envoy_logs(module, "close")
    plugin = load(module)
    try:
        stream = plugin.tcp_stream()
        stream.connect()
        stream.downstream_data(b"ping")
        stream.upstream_data(b"", end_of_stream=True)
        result = stream.finish()
    finally:
        plugin.vm.close()
    ours = [r.message for r in result.logs]
    tags = [s for s in ours if "=" not in s and "missing" not in s]
    assert tags[-5:] == ["dclose 1", "done", "log", "delete", "uclose 0"]
    assert result.upstream_close is not None and result.ok
    assert _same(envoy) == _same(ours)
