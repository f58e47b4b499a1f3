"""The compare view: two real replays of the sample capture, traits checked."""

from __future__ import annotations

import re

import anywidget
import pytest

import wasmkit
from tests.notebook.test_explorer import FLOW, MIXED, RELOADING
from wasmkit.notebook import formatters
from wasmkit.notebook.compare_pages import PANES
from wasmkit.notebook.compare_view import CompareView
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ADD = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-replayed", "v": "yes"},
)


@pytest.fixture(scope="module")
def comparison():
    # A adds x-replayed: yes everywhere; B (MIXED) traps, denies, rewrites,
    # with a new VM after each trap (fail_reload) so later flows run it too.
    return wasmkit.compare(replay(ADD, FLOW), replay(MIXED, FLOW, **RELOADING))


@pytest.fixture()
def view(comparison):
    return CompareView(comparison)


def _indices(view):
    return view.order


def _detail(view):
    # Every HTML pane of the selected flow, and its title.
    detail = view.detail
    return "\n".join([detail["title"], *detail["panes"].values()])


def test_dom_contract(view):
    assert isinstance(view, anywidget.AnyWidget)
    assert "wasmkit-compare" in view._dom_classes
    assert view.show_options == ["All", "Differing"]
    assert view.flow_tabs == list(PANES)
    # The front end: the explorer's shared table and keyboard, then its own.
    assert view._esm.index("function flowTable(") < view._esm.index(
        'el.classList.add("wasmkit-compare"'
    )
    for cls in ("wasmkit-status", "wasmkit-show", "wasmkit-flowtable"):
        assert cls in view._esm
    assert ".wasmkit-compare .wk-row-differs" in view._css
    assert ".wk-root .wk-row-failed" in view._css  # the explorer's styles too


def test_columns_name_the_sides(view, comparison):
    a, b = comparison.names
    assert [c["key"] for c in view.columns] == [
        "index", "method", "host", "path", "status", "a", "b", "fields",
    ]  # fmt: skip
    titles = {c["key"]: c["title"] for c in view.columns}
    assert (titles["a"], titles["b"]) == (a, b)
    assert titles["status"] == f"status {a} → {b}"


def test_status_line(view, comparison):
    status = view.status
    assert f"{len(comparison.flows)} flows" in status
    assert f"{len(comparison.differing)} differing" in status
    assert "failed on a side" in status


def test_list_shows_the_differing_flows_and_toggles_to_all(view, comparison):
    assert view.show == "Differing"
    assert _indices(view) == [f.index for f in comparison.differing]
    assert view.count == len(comparison.differing)
    rows = view.window
    assert [r["index"] for r in rows] == _indices(view)[: len(rows)]
    # Each row says which fields differ, in words; failed rows are marked.
    for row in rows:
        flow = view.flows[row["index"]]
        assert row["fields"] == ", ".join(flow.fields)
        assert row["status"] == (
            f"{flow.status_a if flow.status_a is not None else '-'} → "
            f"{flow.status_b if flow.status_b is not None else '-'}"
        )
        assert row["tag"] == (
            "failed" if "failed" in (row["a"], row["b"]) else "differs"
        )
        assert re.match(r"#\d+  ", row["label"])
    assert any(r["tag"] == "failed" for r in rows)
    assert view.selected == _indices(view)[0]
    view.show = "All"
    assert _indices(view) == [f.index for f in comparison.flows]
    same = [r for r in view.window if not view.flows[r["index"]].differs]
    assert all(r["fields"] == "same" and r["tag"] == "same" for r in same)


def test_keyboard_moves_and_sorting(view, comparison):
    order = _indices(view)
    assert len(order) >= 3
    view.move(1)
    assert view.selected == order[1] and view.position == 1
    view._on_message(view, {"type": "move", "delta": 1}, [])  # j from the front end
    assert view.selected == order[2]
    view.move(to=-1)
    assert view.selected == order[-1]
    view.move(-100)
    assert view.selected == order[0]
    view.sort_by, view.sort_desc = "index", True
    assert _indices(view) == sorted(order, reverse=True)
    assert view.selected == order[0]  # the selection stays on its flow
    view.sort_by, view.sort_desc = "fields", False
    counts = [len(view.flows[i].fields) for i in _indices(view)]
    assert counts == sorted(counts)


def test_filter_box(view, comparison):
    view.show = "All"
    posts = [f.index for f in comparison.flows if f.method == "POST"]
    assert 0 < len(posts) < len(comparison.flows)
    view.filter_text = "~m POST"
    assert _indices(view) == posts
    assert view.filter_message == f"{len(posts)} flows match"
    # ~c 403 matches a flow as it left either side's filter: B's local replies.
    view.filter_text = "~c 403"
    denied = [f.index for f in comparison.flows if f.status_b == 403]
    assert denied and set(denied) <= set(_indices(view))
    view.filter_text = "~bogus"
    assert view.filter_invalid and set(denied) <= set(_indices(view))
    view.filter_text = ""
    assert not view.filter_invalid
    assert _indices(view) == [f.index for f in comparison.flows]


def test_selected_flow_side_by_side(view, comparison):
    denied = next(f for f in comparison.differing if f.action_b == "local reply")
    view.selected = denied.index
    assert view.detail["index"] == denied.index
    assert view.detail["names"] == list(comparison.names)
    assert view.detail["fields"] == denied.fields
    detail = _detail(view)
    assert f'data-flow="{denied.index}"' in detail
    assert re.search(r">status</td>\s*<td[^>]*>\d+</td>\s*<td[^>]*>403</td>", detail)
    assert "local reply" in detail and "forwarded" in detail
    assert "wk-changed" in detail and 'class="wasmkit-diff"' in detail
    # The request headers: x-replayed only under A.
    assert "x-replayed" in detail and "wk-removed" in detail
    # The panes that show a differing field are marked.
    assert "Overview" in view.detail["marked"]
    failed = next(f for f in comparison.differing if f.action_b == "failed")
    view.selected = failed.index
    assert "trap in proxy_on_request_headers" in _detail(view)
    assert f'data-flow="{failed.index}"' in _detail(view)
    a, b = view.detail["errors"]
    assert a is None and b["kind"] == "trap" and b["frames"]
    assert "Error" in view.detail["marked"]


def test_logs_side_by_side(view, comparison):
    # B logs "seen" on every request, A logs nothing: B's records are its own.
    flow = comparison.differing[0]
    view.selected = flow.index
    logs = view.detail["panes"]["Logs"]
    assert logs.count('class="wk-side"') == 2
    assert "logged nothing for this flow" in logs
    assert "seen" in logs and "wk-added" in logs
    assert "Logs" in view.detail["marked"]


def test_body_differences(view, comparison):
    rewritten = next(
        f
        for f in comparison.differing
        if f.response_body is not None
        and f.response_body.changed
        and f.action_b != "failed"
    )
    view.selected = rewritten.index
    bodies = {b["side"]: b for b in view.detail["bodies"]}
    response = bodies["response"]
    assert response["changed"] and response["kind"] in ("json", "text", "binary")
    assert response["after"]["text"] == '{"x": 1}'
    assert response["before"]["bytes"] != response["after"]["bytes"]
    assert response["diff"]
    assert "Bodies" in view.detail["marked"]


def test_show_and_static_html_and_bundle(comparison):
    widget = comparison.show()
    assert isinstance(widget, CompareView) and widget.comparison is comparison
    static = comparison._repr_html_()
    assert f"{len(comparison.differing)} differing" in static and "<table>" in static
    bundle = formatters.bundle(comparison)
    assert formatters.WIDGET_MIME in bundle
    assert bundle["text/html"] == static
    assert bundle["text/plain"].startswith("<Comparison ")


def test_nothing_differs(comparison):
    same = wasmkit.compare(comparison.a, comparison.a)
    view = CompareView(same)
    assert _indices(view) == [] and view.selected == -1
    assert view.detail["title"] == "No flow differs."
    assert "0 differing" in same._repr_html_()
    view.show = "All"
    assert view.selected == same.flows[0].index
    assert view.detail["fields"] == [] and view.detail["marked"] == []
