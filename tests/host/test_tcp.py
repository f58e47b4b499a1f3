"""TCP (network filter) connections with Envoy's semantics, on real WAT filters."""

from __future__ import annotations

import pytest

from wasmkit.abi.constants import PeerType, StreamType
from wasmkit.errors import FilterTrapError
from wasmkit.host import TcpResult, load
from wasmkit.testing import filter_wat

LIFECYCLE = """
(func (export "proxy_on_context_create") (param i32 i32))
(func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 0))
(func (export "proxy_on_downstream_connection_close") (param i32 i32))
(func (export "proxy_on_upstream_connection_close") (param i32 i32))
(func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
(func (export "proxy_on_log") (param i32))
(func (export "proxy_on_delete") (param i32))
"""

CONTINUE_BOTH = """
(func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) (i32.const 0))
(func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32) (i32.const 0))
"""


def callbacks(result: TcpResult) -> list[str]:
    return [
        t.name
        for t in result.trace
        if t.kind == "callback" and t.name.startswith("proxy_on_")
    ]


def args(result: TcpResult, name: str) -> list[list[int]]:
    return [list(t.args.values()) for t in result.trace if t.name == name]


def hostcall_results(result: TcpResult, name: str) -> list[str]:
    return [t.result for t in result.trace if t.kind == "hostcall" and t.name == name]


def messages(result: TcpResult) -> list[str]:
    return [r.message for r in result.logs if r.source == "proxy_log"]


def test_callback_order_and_pass_through():
    result = load(filter_wat(LIFECYCLE + CONTINUE_BOTH)).run_tcp(
        [b"hel", b"lo"], [b"world"]
    )
    assert result.ok and result.stalled is None
    assert callbacks(result) == [
        "proxy_on_context_create",
        "proxy_on_new_connection",
        "proxy_on_downstream_data",
        "proxy_on_downstream_data",
        "proxy_on_upstream_data",
        "proxy_on_upstream_connection_close",
        "proxy_on_downstream_connection_close",
        "proxy_on_done",
        "proxy_on_log",
        "proxy_on_delete",
    ]
    cid = result.context_id
    # The stream context's parent is the root (id 1).
    assert args(result, "proxy_on_context_create")[-1] == [cid, 1]
    assert args(result, "proxy_on_downstream_data") == [[cid, 3, 0], [cid, 2, 0]]
    assert args(result, "proxy_on_upstream_data") == [[cid, 5, 1]]
    assert args(result, "proxy_on_upstream_connection_close") == [[cid, 0]]
    assert args(result, "proxy_on_downstream_connection_close") == [[cid, 2]]
    assert result.downstream_before == result.downstream_after == b"hello"
    assert result.upstream_before == result.upstream_after == b"world"
    assert result.closed_by == "client"
    assert result.downstream_close is PeerType.REMOTE
    assert result.upstream_close is PeerType.UNKNOWN


def test_a_filter_without_data_callbacks_passes_data_through():
    result = load(filter_wat("")).run_tcp(b"ping", lambda got: [got.upper()])
    assert result.downstream_after == b"ping"
    assert result.upstream_after == b"PING"
    assert result.closed_by == "client"


# Prepends to client data, appends to upstream data (start >= length, as SDKs
# pass u32 max), and tries a middle offset, which Envoy refuses.
EDIT = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
      (drop (call $proxy_set_buffer_bytes (i32.const 2) (i32.const 0) (i32.const 0)
        (global.get $s_pre) (global.get $s_pre_len)))
      (drop (call $proxy_set_buffer_bytes (i32.const 2) (i32.const 1) (i32.const 1)
        (global.get $s_pre) (global.get $s_pre_len)))
      (i32.const 0))
    (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
      (drop (call $proxy_set_buffer_bytes (i32.const 3) (i32.const -1) (i32.const 0)
        (global.get $s_post) (global.get $s_post_len)))
      (i32.const 0))
    """,
    strings={"pre": "pre:", "post": ":post"},
)


def test_set_buffer_bytes_prepends_and_appends_what_is_forwarded():
    result = load(EDIT).run_tcp(b"data", b"reply")
    assert result.downstream_before == b"data"
    assert result.downstream_after == b"pre:data"
    assert result.upstream_before == b"reply"
    assert result.upstream_after == b"reply:post"
    assert hostcall_results(result, "proxy_set_buffer_bytes") == [
        "OK",
        "BAD_ARGUMENT",  # Envoy supports only start 0 and start >= length
        "OK",
    ]


# Replaces the whole client chunk: drain `size` bytes from 0, then prepend.
REPLACE = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32) (param $size i32) (param i32)
          (result i32)
      (drop (call $proxy_set_buffer_bytes (i32.const 2) (i32.const 0) (local.get $size)
        (global.get $s_new) (global.get $s_new_len)))
      (i32.const 0))
    """,
    strings={"new": "REDACTED"},
)


def test_set_buffer_bytes_replaces_the_data():
    result = load(REPLACE).run_tcp([b"secret-1", b"secret-2"])
    assert result.downstream_before == b"secret-1secret-2"
    assert result.downstream_after == b"REDACTEDREDACTED"


# Pauses client data until end_of_stream, then logs the whole buffer.
BUFFER_UNTIL_END = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32) (param $size i32)
          (param $eos i32) (result i32)
      (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
      (drop (call $proxy_get_buffer_bytes (i32.const 2) (i32.const 0) (local.get $size)
            (i32.const 512) (i32.const 516)))
      (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512))
            (i32.load (i32.const 516))))
      (i32.const 0))
    """
)


def test_pause_keeps_data_buffered_and_sizes_grow():
    result = load(BUFFER_UNTIL_END).run_tcp(
        [b"ab", b"cd", b"ef"], b"ok", downstream_end=True
    )
    sizes = [a[1:] for a in args(result, "proxy_on_downstream_data")]
    assert sizes == [[2, 0], [4, 0], [6, 1]]
    assert messages(result) == ["abcdef"]
    assert result.downstream_after == b"abcdef"
    assert result.upstream_after == b"ok"
    assert result.stalled is None


ALWAYS_PAUSE = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) (i32.const 1))
    """
    + LIFECYCLE
)


def test_data_that_stays_paused_is_reported_and_never_reaches_upstream():
    result = load(ALWAYS_PAUSE).run_tcp([b"abc"], b"never asked", wait_ms=10)
    assert result.stalled == "downstream data"
    assert result.downstream_after == b""
    assert result.downstream_held == b"abc"
    assert result.upstream_before == b""
    assert "proxy_on_upstream_data" not in callbacks(result)
    assert callbacks(result)[-3:] == [
        "proxy_on_done",
        "proxy_on_log",
        "proxy_on_delete",
    ]


def test_paused_upstream_data_grows_until_a_callback_continues():
    wat = filter_wat(
        """
        (func (export "proxy_on_upstream_data") (param i32 i32) (param $eos i32)
              (result i32)
          (i32.eqz (local.get $eos)))
        """
    )
    result = load(wat).run_tcp(b"q", [b"12", b"34", b"5"])
    assert [a[1:] for a in args(result, "proxy_on_upstream_data")] == [
        [2, 0],
        [4, 0],
        [5, 1],
    ]
    assert result.upstream_after == b"12345"
    assert result.stalled is None


# Continues the client side and pauses in the same callback: the continue is
# applied after the callback, which still sees the whole buffer after asking.
CONTINUE_DEFERRED = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
      (drop (call $proxy_continue_stream (i32.const 2)))
      (drop (call $proxy_get_buffer_status (i32.const 2) (i32.const 512) (i32.const 516)))
      (drop (call $proxy_log (i32.const 2) (global.get $s_digits)
            (i32.load (i32.const 512))))
      (i32.const 1))
    """,
    strings={"digits": "0123456789"},
)


def test_continue_downstream_is_deferred_until_the_callback_returns():
    result = load(CONTINUE_DEFERRED).run_tcp([b"abcd"], b"ok")
    # Still 4 bytes buffered inside the callback (the log prints that many digits).
    assert messages(result) == ["0123"]
    assert hostcall_results(result, "proxy_continue_stream") == ["OK"]
    assert result.downstream_after == b"abcd"
    assert result.upstream_after == b"ok"
    assert result.stalled is None


def test_continue_upstream_is_unimplemented_as_in_envoy():
    wat = filter_wat(
        """
        (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
          (drop (call $proxy_continue_stream (i32.const 3)))
          (drop (call $proxy_continue_stream (i32.const 4)))
          (drop (call $proxy_continue_stream (i32.const 0)))
          (i32.const 1))
        """
    )
    result = load(wat).run_tcp(b"q", b"answer")
    assert hostcall_results(result, "proxy_continue_stream") == [
        "UNIMPLEMENTED",
        "BAD_ARGUMENT",
        "OK",  # an HTTP stream type on a TCP context: accepted, nothing happens
    ]
    assert result.upstream_after == b""
    assert result.stalled == "upstream data"
    assert result.upstream_held == b"answer"


CLOSE_ON_DATA = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
      (drop (call $proxy_close_stream (i32.const 2)))
      (i32.const 0))
    """
    + LIFECYCLE
)


def test_close_stream_closes_the_connection_after_the_callback():
    result = load(CLOSE_ON_DATA).run_tcp([b"bad", b"more"], b"never")
    assert result.closed_by == "filter"
    assert result.filter_closed is StreamType.DOWNSTREAM
    assert result.downstream_close is PeerType.LOCAL
    # The data of the callback that closed is not passed on; nothing follows.
    assert result.downstream_after == b""
    assert result.downstream_before == b"bad"
    assert result.upstream_before == b""
    assert hostcall_results(result, "proxy_close_stream") == ["OK"]
    assert callbacks(result)[-5:] == [
        "proxy_on_downstream_data",
        "proxy_on_downstream_connection_close",
        "proxy_on_done",
        "proxy_on_log",
        "proxy_on_delete",
    ]
    assert args(result, "proxy_on_downstream_connection_close")[0][1] == 1  # LOCAL
    assert any("dropped" in n for n in result.notes)


def test_close_upstream_also_closes_the_downstream_connection():
    wat = filter_wat(
        """
        (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
          (drop (call $proxy_close_stream (i32.const 3)))
          (i32.const 0))
        """
        + LIFECYCLE
    )
    result = load(wat).run_tcp(b"q", [b"a", b"b"])
    assert result.closed_by == "filter"
    assert result.filter_closed is StreamType.UPSTREAM
    assert result.upstream_before == b"a"
    assert result.upstream_after == b""
    # The connection ended before the upstream finished: no upstream close.
    assert result.upstream_close is None
    assert "proxy_on_upstream_connection_close" not in callbacks(result)


def test_upstream_end_of_stream_synthesises_an_upstream_close():
    plugin = load(filter_wat(LIFECYCLE + CONTINUE_BOTH))
    stream = plugin.tcp_stream()
    stream.upstream_data(b"part")
    assert not calls_in(plugin, "proxy_on_upstream_connection_close")
    stream.upstream_data(b"last", end_of_stream=True)
    closes = calls_in(plugin, "proxy_on_upstream_connection_close")
    assert [list(t.args.values())[1] for t in closes] == [0]  # UNKNOWN
    # The downstream is still open: the context lives on.
    assert not calls_in(plugin, "proxy_on_done")
    assert not stream.ended
    stream.downstream_close(PeerType.LOCAL)
    result = stream.finish()
    assert callbacks(result)[-4:] == [
        "proxy_on_downstream_connection_close",
        "proxy_on_done",
        "proxy_on_log",
        "proxy_on_delete",
    ]
    assert result.closed_by == "proxy"
    assert result.upstream_after == b"partlast"
    with pytest.raises(RuntimeError):
        stream.finish()


def test_the_downstream_close_ends_the_context_even_with_the_upstream_open():
    plugin = load(filter_wat(LIFECYCLE + CONTINUE_BOTH))
    stream = plugin.tcp_stream()
    stream.downstream_data(b"hi")
    stream.downstream_close()
    assert stream.ended
    # Envoy does not call the filter again for this connection.
    stream.upstream_data(b"late", end_of_stream=True)
    stream.upstream_close()
    result = stream.finish()
    assert callbacks(result)[-4:] == [
        "proxy_on_downstream_connection_close",
        "proxy_on_done",
        "proxy_on_log",
        "proxy_on_delete",
    ]
    assert result.upstream_close is None
    assert result.upstream_before == b""
    assert result.context_id not in plugin.vm.contexts
    assert not plugin.vm.streams


def test_data_after_the_end_of_stream_is_a_caller_error():
    stream = load(filter_wat(CONTINUE_BOTH)).tcp_stream()
    stream.downstream_data(b"x", end_of_stream=True)
    with pytest.raises(ValueError, match="end_of_stream"):
        stream.downstream_data(b"y")


TRAP = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
      (unreachable))
    """
    + LIFECYCLE
)


def test_a_trap_closes_the_connection_and_is_recorded_not_raised():
    result = load(TRAP).run_tcp([b"boom", b"more"], b"reply")
    assert isinstance(result.error, FilterTrapError)
    assert not result.ok
    assert result.closed_by == "error"
    assert result.downstream_close is PeerType.LOCAL
    assert result.downstream_after == b""
    assert result.upstream_before == b""
    # The failed filter is not called again: no close, done, log or delete.
    assert callbacks(result)[-1] == "proxy_on_downstream_data"
    assert result.trace[-1].result == "trap"


def test_fail_open_lets_data_through_after_a_trap():
    result = load(TRAP, fail_open=True).run_tcp([b"boom", b"more"], b"reply")
    assert isinstance(result.error, FilterTrapError)
    assert result.downstream_after == b"boommore"
    assert result.upstream_after == b"reply"
    assert result.closed_by == "client"
    assert callbacks(result).count("proxy_on_downstream_data") == 1
    assert "proxy_on_done" not in callbacks(result)


def test_a_new_connection_after_a_trap_finds_the_vm_failed():
    # Envoy's default fail_closed: the VM stays failed, a later connection is
    # closed without the filter being called.
    plugin = load(TRAP)
    assert plugin.run_tcp(b"boom").error is not None
    later = plugin.run_tcp(b"boom", b"reply")
    assert callbacks(later) == []
    assert later.closed_by == "error" and "fail_closed" in str(later.error)
    # fail_open: later connections pass without the filter.
    plugin = load(TRAP, failure_policy="fail_open")
    assert plugin.run_tcp(b"boom").error is not None
    later = plugin.run_tcp(b"boom", b"reply")
    assert later.error is None and callbacks(later) == []


def test_a_new_connection_after_a_trap_reloads_the_vm_with_fail_reload():
    plugin = load(TRAP, failure_policy="fail_reload")
    first = plugin.run_tcp(b"boom")
    assert first.error is not None
    plugin.vm.advance(1500)  # past the reload backoff
    second = plugin.run_tcp(b"boom")
    # A fresh instance ran the filter again (and it trapped again).
    assert second.error is not None and second.error is not first.error
    # The root context restarted (parent 0), then the connection's was made.
    assert args(second, "proxy_on_context_create") == [[1, 0], [2, 1]]
    assert "proxy_on_downstream_data" in callbacks(second)


# get_buffer_bytes(2) outside a data callback: NOT_FOUND, unless the client
# data is paused (Envoy keeps the buffer then).
BUFFER_SCOPE = filter_wat(
    """
    (func $probe (param $type i32)
      (drop (call $proxy_get_buffer_bytes (local.get $type) (i32.const 0) (i32.const 100)
            (i32.const 512) (i32.const 516))))
    (func (export "proxy_on_new_connection") (param i32) (result i32)
      (call $probe (i32.const 2))
      (i32.const 0))
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
      (call $probe (i32.const 2))
      (call $probe (i32.const 3))
      (i32.const 0))
    (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
      (call $probe (i32.const 2))
      (i32.const 0))
    (func (export "proxy_on_downstream_connection_close") (param i32 i32)
      (call $probe (i32.const 2)))
    (func (export "proxy_on_log") (param i32)
      (call $probe (i32.const 0)))
    """
)


def test_downstream_buffer_outside_a_data_callback_is_not_found():
    result = load(BUFFER_SCOPE).run_tcp(b"abc", b"reply")
    assert hostcall_results(result, "proxy_get_buffer_bytes") == [
        "NOT_FOUND",  # on_new_connection: no data yet
        "OK",  # downstream data callback: buffer 2
        "NOT_FOUND",  # ... buffer 3 is not there
        "NOT_FOUND",  # upstream data callback: the client data went on
        "NOT_FOUND",  # downstream close
        "NOT_FOUND",  # on_log: no HTTP body on a TCP context
    ]


PAUSE_AND_PROBE = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
      (i32.const 1))
    (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
      (drop (call $proxy_get_buffer_bytes (i32.const 2) (i32.const 0)
            (i32.const 100) (i32.const 512) (i32.const 516)))
      (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512))
            (i32.load (i32.const 516))))
      (i32.const 0))
    """
)


def test_paused_downstream_buffer_stays_readable():
    stream = load(PAUSE_AND_PROBE).tcp_stream()
    stream.downstream_data(b"held")
    stream.upstream_data(b"server first")
    result = stream.finish()
    assert messages(result) == ["held"]
    assert result.stalled == "downstream data"
    assert result.downstream_held == b"held"
    assert result.upstream_after == b"server first"


# A paused connection resumed from the root context: the tick switches to the
# connection (id 2) and continues its client data.
RESUME_FROM_TICK = filter_wat(
    """
    (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 100)))
      (i32.const 1))
    (func (export "proxy_on_tick") (param i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 0)))
      (drop (call $proxy_set_effective_context (i32.const 2)))
      (drop (call $proxy_continue_stream (i32.const 2))))
    """
)


def test_paused_data_is_resumed_from_a_tick_and_then_goes_upstream():
    result = load(RESUME_FROM_TICK).run_tcp(b"wait for it", lambda got: got[::-1])
    assert result.stalled is None
    assert result.downstream_after == b"wait for it"
    assert result.upstream_after == b"ti rof tiaw"
    assert "proxy_on_tick" in callbacks(result)


def test_set_property_works_on_a_tcp_context():
    wat = filter_wat(
        """
        (func (export "proxy_on_new_connection") (param i32) (result i32)
          (drop (call $proxy_set_property (global.get $s_k) (global.get $s_k_len)
                (global.get $s_v) (global.get $s_v_len)))
          (drop (call $proxy_get_property (global.get $s_k) (global.get $s_k_len)
                (i32.const 512) (i32.const 516)))
          (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 512))
                (i32.load (i32.const 516))))
          (i32.const 0))
        """,
        strings={"k": "my_key", "v": "my value"},
    )
    result = load(wat).run_tcp(b"x")
    assert hostcall_results(result, "proxy_set_property") == ["OK"]
    assert messages(result) == ["my value"]


def calls_in(plugin, name):
    return [t for t in plugin.vm.trace if t.name == name]
