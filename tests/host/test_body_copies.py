"""Bodies go through the host without copies: shared before and after, views as frames."""

from __future__ import annotations

import tracemalloc

import pytest

from wasmkit.host import load, request, response
from wasmkit.host.buffers import BodySlice, HeldBody, grow, joined
from wasmkit.testing import filter_wat

MIB = 1 << 20
CHUNK = 16 * 1024

NOOP_LOG = """
(func (export "proxy_on_log") (param i32))
(func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
(func (export "proxy_on_delete") (param i32))
"""

HEADERS_ONLY = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (i32.const 0))
    """
    + NOOP_LOG
)

BODY_CONTINUE = filter_wat(
    """
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (i32.const 0))
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      (i32.const 0))
    """
    + NOOP_LOG
)

# Holds each body until its end, then reads all of it into guest memory and
# logs its last byte (a check of what was read).
READ_AT_END = filter_wat(
    """
    (func $read (param $type i32) (param $size i32) (result i32)
      (drop (call $proxy_get_buffer_bytes (local.get $type) (i32.const 0)
        (local.get $size) (i32.const 512) (i32.const 516)))
      (drop (call $proxy_log (i32.const 2)
        (i32.sub (i32.add (i32.load (i32.const 512)) (i32.load (i32.const 516)))
          (i32.const 1))
        (i32.const 1)))
      (i32.const 0))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (if (result i32) (local.get 2)
        (then (call $read (i32.const 0) (local.get 1)))
        (else (i32.const 1))))
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      (if (result i32) (local.get 2)
        (then (call $read (i32.const 1) (local.get 1)))
        (else (i32.const 1))))
    """
    + NOOP_LOG,
    memory_pages=48,
)

# Appends "!" to the response body at its end.
APPEND = filter_wat(
    """
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      (if (local.get 2)
        (then (drop (call $proxy_set_buffer_bytes (i32.const 1) (local.get 1)
          (i32.const 0) (global.get $s_bang) (global.get $s_bang_len)))))
      (i32.const 0))
    """
    + NOOP_LOG,
    strings={"bang": "!"},
)


def messages(size: int = MIB):
    body_in = b"abcdefgh" * (size // 8)
    body_out = bytes(size - 1) + b"o"
    req = request("POST", "http://h/upload", body=body_in)
    resp = response(200, [("content-type", "application/octet-stream")], body_out)
    return req, resp


def assert_shared(result, req, resp) -> None:
    # The very objects the caller passed, on every side of the result.
    assert result.ok and result.stalled is None
    assert result.request_before.body is req.body
    assert result.request_after.body is req.body
    assert result.upstream_request.body is req.body
    assert result.response_before.body is resp.body
    assert result.response_after.body is resp.body
    assert result.client_response.body is resp.body


@pytest.mark.parametrize("wat", [HEADERS_ONLY, BODY_CONTINUE, READ_AT_END])
@pytest.mark.parametrize("chunk_size", [None, CHUNK], ids=["one-frame", "16KiB"])
def test_unchanged_1mib_bodies_are_the_same_objects_before_and_after(wat, chunk_size):
    req, resp = messages()
    result = load(wat).run_http(req, resp, chunk_size=chunk_size)
    assert_shared(result, req, resp)
    if wat is READ_AT_END:
        # The filter did read the bodies whole (their last bytes).
        assert [r.message for r in result.logs] == ["h", "o"]


def test_body_callbacks_see_each_frame_of_a_chunked_body():
    req, resp = messages(4 * CHUNK)
    result = load(BODY_CONTINUE).run_http(req, resp, chunk_size=CHUNK)
    sizes = [
        (t.args["body_size"], t.args["end_of_stream"])
        for t in result.trace
        if t.name == "proxy_on_response_body"
    ]
    # Four frames of 16 KiB, then the HTTP/1 codec's empty end frame.
    assert sizes == [(CHUNK, 0)] * 4 + [(0, 1)]
    assert_shared(result, req, resp)


def test_a_changed_body_is_a_new_object_and_the_before_is_untouched():
    req, resp = messages()
    result = load(APPEND).run_http(req, resp, chunk_size=CHUNK)
    assert result.response_before.body is resp.body
    assert result.response_after.body == resp.body + b"!"
    assert result.client_response.body is result.response_after.body
    assert result.request_after.body is req.body


def _peak(run) -> int:
    run()  # warm: compiled module, caches
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("wat", [BODY_CONTINUE, READ_AT_END])
@pytest.mark.parametrize("chunk_size", [None, CHUNK], ids=["one-frame", "16KiB"])
def test_a_1mib_body_flow_allocates_less_than_one_copy(wat, chunk_size):
    plugin = load(wat, trace=False)
    req, resp = messages()
    # Two 1 MiB bodies go through: a single copy of either would be 1 MiB.
    peak = _peak(lambda: plugin.run_http(req, resp, chunk_size=chunk_size))
    assert peak < MIB // 4, f"peak {peak} bytes"


def test_a_changed_1mib_body_costs_a_few_copies_at_most():
    plugin = load(APPEND, trace=False)
    req, resp = messages()
    peak = _peak(lambda: plugin.run_http(req, resp, chunk_size=CHUNK))
    assert peak < 3 * MIB, f"peak {peak} bytes"


# -- the buffers themselves ------------------------------------------------------


def test_grow_gives_views_of_consecutive_slices_and_the_body_once_whole():
    body = bytes(range(10))
    grown = grow(b"", BodySlice(body, 0, 4))
    assert (
        isinstance(grown, memoryview) and grown.obj is body and bytes(grown) == body[:4]
    )
    grown = grow(grown, BodySlice(body, 4, 8))
    assert bytes(grown) == body[:8]
    assert grow(grown, BodySlice(body, 8, 10)) is body
    # Out of order or of another body: concatenated, still right.
    assert grow(b"ab", BodySlice(body, 4, 6)) == b"ab" + body[4:6]
    assert grow(memoryview(body)[:2], BodySlice(body, 4, 6)) == body[:2] + body[4:6]
    assert grow(b"ab", b"") == b"ab"
    single = b"xyz"
    assert grow(b"", single) is single


def test_held_body_reads_without_copies_and_joins_once_for_a_write():
    body = bytes(range(20))
    held = HeldBody()
    held.append(BodySlice(body, 0, 10))
    held.append(b"")
    held.append(BodySlice(body, 10, 20))
    assert len(held) == 20 and held
    assert held.view() is body  # consecutive slices covering the body
    parts = held.parts()
    buf = held.mutable()
    assert isinstance(buf, bytearray) and buf == body
    buf[:0] = b"<"
    held.append(b">")
    assert bytes(held.view()) == b"<" + body + b">"
    taken = held.take()
    assert not held and len(held) == 0 and held.view() == b""
    assert joined(taken, parts, body) == b"<" + body + b">"


def test_joined_shares_the_before_body_when_the_bytes_are_the_same():
    body = bytes(range(30))
    frames = [BodySlice(body, 0, 15), BodySlice(body, 15, 30)]
    assert joined(frames, frames, body) is body
    # Same bytes in other objects (a filter wrote them back): still shared.
    rewritten = [bytearray(body[:15]), body[15:]]
    assert joined(rewritten, frames, body) is body
    changed = [bytearray(body[:15]), b"x" * 15]
    assert joined(changed, frames, body) == body[:15] + b"x" * 15
    assert joined([b"short"], frames, body) == b"short"
