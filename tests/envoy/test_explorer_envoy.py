"""The explorer after ``against_envoy()``: an Envoy column, toggle and flow tab."""

from __future__ import annotations

import pytest

from wasmkit.envoy.differ import EnvoyComparison
from wasmkit.notebook import envoy_pages
from wasmkit.notebook.explorer import FLOW_TABS, ReplayExplorer
from wasmkit.replay import run

from .conftest import ADD_HEADERS, sample
from .test_against import CAPTURES


@pytest.fixture(scope="module")
def compared():
    result = run.replay(
        sample("add_headers", "rust"),
        CAPTURES["edges.flow"],
        root_id="add_headers",
        config=ADD_HEADERS,
        progress=False,
    )
    comparison = result.against_envoy()
    return result, comparison


def test_against_envoy_keeps_the_comparison_on_the_result(compared):
    result, comparison = compared
    assert isinstance(comparison, EnvoyComparison)
    assert result.envoy_comparison is comparison
    assert comparison.wasmkit is result and comparison.envoy.runtime == "envoy"
    assert [f.index for f in comparison] == [f.index for f in result.flows]
    assert len(comparison.frame()) == len(result.flows)
    assert list(comparison.differences_frame()["field"]) == [
        d.field for d in comparison.unexplained
    ]


def test_the_explorer_shows_an_envoy_column_and_tab(compared):
    result, comparison = compared
    explorer = ReplayExplorer(result)
    assert explorer.envoy is comparison
    assert list(explorer.flow_tabs) == [*FLOW_TABS, envoy_pages.TAB]
    assert envoy_pages.SHOW in explorer.show_options
    assert "envoy" in [c["key"] for c in explorer.columns]
    summary = explorer.pages["Summary"]
    assert ">envoy<" in summary
    assert "Envoy: " in explorer.status
    words = {row["index"]: row["envoy"] for row in explorer.window}
    for exchange in comparison:
        word = "agree" if exchange.agrees else "differs"
        assert explorer._labels[exchange.index].endswith(f"envoy: {word}")
        assert words[exchange.index] == word
    # The switch keeps the flows that differ; the pane lists their fields.
    explorer.show = envoy_pages.SHOW
    assert explorer.order == [f.index for f in comparison.differing]
    for exchange in comparison.differing:
        explorer.selected = exchange.index
        page = explorer.detail["panes"][envoy_pages.TAB]
        assert "wasmkit-envoy" in page
        for d in exchange.differences:
            assert d.field in page


def test_without_a_comparison_the_explorer_is_unchanged():
    result = run.replay(
        sample("add_headers", "rust"),
        CAPTURES["edges.flow"],
        root_id="add_headers",
        config=ADD_HEADERS,
        limit=2,
        progress=False,
    )
    explorer = ReplayExplorer(result)
    assert explorer.envoy is None
    assert list(explorer.flow_tabs) == list(FLOW_TABS)
    assert envoy_pages.SHOW not in explorer.show_options
