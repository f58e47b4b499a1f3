from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wasmkit.diff.compare import body_change, header_changes


def test_header_changes_case_insensitive_and_repeats():
    before = [(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"X-A", b"1")]
    after = [(b"set-cookie", b"a=1"), (b"x-a", b"2"), (b"x-new", b"y")]
    rows = {(c.name, c.before, c.after, c.change) for c in header_changes(before, after)}
    assert rows == {
        ("set-cookie", "a=1", "a=1", "unchanged"),
        ("set-cookie", "b=2", None, "removed"),
        ("x-a", "1", "2", "changed"),
        ("x-new", None, "y", "added"),
    }


def test_body_change_kinds():
    assert body_change(b"same", b"same").kind == "same"
    j = body_change(b'{"a": 1, "b": [1, 2]}', b'{"a": 2, "b": [1, 2], "c": null}')
    assert j.kind == "json" and j.diff.splitlines() == ["~ $.a: 1 -> 2", "+ $.c: null"]
    t = body_change(b"line1\nline2\n", b"line1\nLINE2\n")
    assert t.kind == "text" and "-line2" in t.diff and "+LINE2" in t.diff
    b = body_change(b"\xff\x00", b"\xfe")
    assert b.kind == "binary" and b.size_before == 2 and b.size_after == 1
    assert "sha256" in b.diff


@given(st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8)), max_size=8))
def test_identical_headers_are_all_unchanged(items):
    assert all(c.change == "unchanged" for c in header_changes(items, items))
