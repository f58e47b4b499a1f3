"""The compare view: two real replays of the sample capture, traits checked."""

from __future__ import annotations

import re

import ipywidgets as widgets
import pytest

import wasmkit
from tests.notebook.test_explorer import FLOW, MIXED, RELOADING
from wasmkit.notebook import formatters
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
    return [value for _, value in view.flowlist.options]


def test_dom_contract(view):
    assert isinstance(view, widgets.VBox)
    assert "wasmkit-compare" in view._dom_classes
    assert "wasmkit-status" in view.status._dom_classes
    assert isinstance(view.flowlist, widgets.Select)
    assert "wasmkit-flowlist" in view.flowlist._dom_classes
    assert isinstance(view.show_mode, widgets.ToggleButtons)
    assert "wasmkit-show" in view.show_mode._dom_classes
    assert list(view.show_mode.options) == ["All", "Differing"]


def test_status_line(view, comparison):
    status = view.status.value
    assert f"{len(comparison.flows)} flows" in status
    assert f"{len(comparison.differing)} differing" in status


def test_list_shows_the_differing_flows_and_toggles_to_all(view, comparison):
    assert view.show_mode.value == "Differing"
    assert _indices(view) == [f.index for f in comparison.differing]
    labels = [label for label, _ in view.flowlist.options]
    assert all(re.match(r"#\d+  ", label) for label in labels)
    assert view.flowlist.value == _indices(view)[0]
    view.show_mode.value = "All"
    assert _indices(view) == [f.index for f in comparison.flows]


def test_selected_flow_side_by_side(view, comparison):
    denied = next(f for f in comparison.differing if f.action_b == "local reply")
    view.flowlist.value = denied.index
    detail = view.detail.value
    assert f'data-flow="{denied.index}"' in detail
    assert re.search(r">status</td>\s*<td[^>]*>\d+</td>\s*<td[^>]*>403</td>", detail)
    assert "local reply" in detail and "forwarded" in detail
    assert "wk-changed" in detail and 'class="wasmkit-diff"' in detail
    # The request headers: x-replayed only under A.
    assert "x-replayed" in detail and "wk-removed" in detail
    failed = next(f for f in comparison.differing if f.action_b == "failed")
    view.flowlist.value = failed.index
    assert "trap in proxy_on_request_headers" in view.detail.value
    assert f'data-flow="{failed.index}"' in view.detail.value


def test_body_differences(view, comparison):
    rewritten = next(
        f
        for f in comparison.differing
        if f.response_body is not None
        and f.response_body.changed
        and f.action_b != "failed"
    )
    view.flowlist.value = rewritten.index
    # The kind of body and its size on each side.
    assert re.search(
        r"response body</b> \((json|text|binary), \d+ → \d+ bytes\)",
        view.detail.value,
    )


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
    assert _indices(view) == [] and view.flowlist.value is None
    assert "No flow differs" in view.detail.value
    assert "0 differing" in same._repr_html_()
