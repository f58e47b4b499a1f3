"""The replay explorer in a real browser: JupyterLab + headless Chromium.

The tutorial ``notebooks/08-replay-a-capture.ipynb`` is opened in JupyterLab
and run with Run → Run All Cells. Near its end it replays
samples/captures/api.flow through its AssemblyScript ``tagger`` filter, which
changes ``server``, removes ``date`` and adds ``x-replayed`` on every response,
and shows the result (``tagged``), which opens the replay explorer (an
anywidget: wasmkit/notebook/explorer.py, static/explorer.js). The tests drive
that explorer (the notebook shows others too) through its DOM contract:

- ``.wasmkit-explorer`` root, ``.wasmkit-status`` status line;
- ``.wasmkit-tabs`` main tab bar (Flows, Summary, Resources, Logs, Metrics,
  Callouts), ``.wk-tab[aria-selected]`` buttons;
- ``.wasmkit-filter input`` filter box, ``.wasmkit-show button`` switch,
  ``.wasmkit-unchanged input`` checkbox;
- ``.wasmkit-flowtable``: ``.wk-headcell[data-key][aria-sort]`` headers and
  virtualized ``.wk-row[data-index][data-position]`` rows, ``.wk-selected``
  on the selected one;
- ``.wasmkit-flow-tabs`` the selected flow's panes (Request headers, Response
  headers, Body, Logs, Trace, Error, curl), drawn in ``.wasmkit-flow-pane``;
- ``table.wasmkit-diff[data-flow=<index>]`` with ``wk-added`` / ``wk-removed``
  / ``wk-changed`` / ``wk-unchanged`` cells, tinted green / red / yellow;
- ``.wasmkit-resources`` with ``figure.wasmkit-plot[data-series]`` SVG plots.

The tests share one page and run in file order; each one puts the explorer
back the way it found it. Screenshots of the explorer in the light and the
dark theme go to build/test-artifacts/explorer-light.png and
explorer-dark.png.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import (
    CAPTURE,
    MIN_CONTRAST,
    NOTEBOOK_IN_LAB,
    Lab,
    colours,
    contrast,
    exact,
    run_all_cells,
    set_theme,
    shutdown_kernels,
)
from wasmkit.traffic import load_capture

pytestmark = pytest.mark.browser

LOAD_TIMEOUT = 30_000  # ms: JupyterLab's first page load on a busy 2-core machine
RUN_TIMEOUT = 300_000  # ms: kernel start + every cell, builds of the filters included
UPDATE_TIMEOUT = (
    30_000  # ms: a widget round trip to the kernel and back, on a loaded machine
)

EXPLORER_CELL = "tagged = tagger.replay(CAPTURE)"
"""The first line of the cell whose explorer the tests drive."""
EXPLORERS = 3
"""Replay results the notebook shows (``result``, ``tagged`` and ``replayed``,
the one checked against Envoy)."""
LABEL = "tutorial-08"
"""The tagger's configuration: the value it gives ``server``."""

MAIN_TABS = ["Flows", "Summary", "Resources", "Logs", "Metrics", "Callouts"]
FLOW_TABS = [
    "Request headers", "Response headers", "Body", "Logs", "Trace", "Error", "curl",
]  # fmt: skip
SHOW_BUTTONS = ["All", "Modified", "Errors", "Local reply"]
WIDGETS_HINT = (
    "are the jupyterlab_widgets and anywidget extensions in the venv "
    "(.venv/share/jupyter/labextensions/@jupyter-widgets, anywidget)?"
)


@functools.cache
def _methods() -> list[str]:
    return [exchange.request.method for exchange in load_capture(CAPTURE)]


# ----------------------------------------------------------------- helpers --
# Each takes the explorer's root: the page holds more than one explorer.


def _wait(ex: Locator, condition: str, arg: Any = None) -> None:
    """Wait until ``condition`` (JS, on ``root`` the explorer and ``arg``) holds."""
    ex.page.wait_for_function(
        f"([root, arg]) => {condition}",
        arg=[ex.element_handle(), arg],
        timeout=UPDATE_TIMEOUT,
    )


def _tab_labels(ex: Locator, bar: str) -> list[str]:
    return [t.strip() for t in ex.locator(f".{bar} .wk-tab").all_inner_texts()]


def _click_tab(ex: Locator, bar: str, title: str) -> None:
    ex.locator(f".{bar} .wk-tab[data-tab='{title}']").click()
    _wait(
        ex,
        "root.querySelector(`.${arg[0]} .wk-tab[aria-selected=true]`)"
        "?.dataset.tab === arg[1]",
        [bar, title],
    )


def _main_tab(ex: Locator, title: str) -> None:
    _click_tab(ex, "wk-main-tabbar", title)


def _flow_tab(ex: Locator, title: str) -> None:
    _click_tab(ex, "wk-flow-tabbar", title)


def _rows(ex: Locator) -> list[int]:
    """Capture indexes of the drawn rows, top to bottom."""
    return ex.locator(".wasmkit-flowtable .wk-row[data-index]").evaluate_all(
        """rows => rows.sort((a, b) => a.dataset.position - b.dataset.position)
                      .map(r => Number(r.dataset.index))"""
    )


def _selected(ex: Locator) -> int | None:
    row = ex.locator(".wasmkit-flowtable .wk-row.wk-selected")
    return int(row.get_attribute("data-index")) if row.count() else None


def _wait_for_rows(ex: Locator, indexes: list[int]) -> None:
    _wait(
        ex,
        """JSON.stringify([...root.querySelectorAll('.wasmkit-flowtable .wk-row[data-index]')]
             .sort((a, b) => a.dataset.position - b.dataset.position)
             .map(r => Number(r.dataset.index))) === JSON.stringify(arg)""",
        indexes,
    )


def _wait_for_selected(ex: Locator, index: int) -> None:
    _wait(
        ex,
        "root.querySelector('.wasmkit-flowtable .wk-row.wk-selected')"
        "?.dataset.index === String(arg)",
        index,
    )


def _visible_diff(ex: Locator) -> Locator:
    table = ex.locator(".wasmkit-flow-pane table.wasmkit-diff")
    table.first.wait_for(state="visible", timeout=UPDATE_TIMEOUT)
    return table.first


def _wait_for_diff(ex: Locator, condition: str, arg: Any = None) -> None:
    """Wait until ``condition`` (JS, on ``t`` the shown diff table) holds."""
    _wait(
        ex,
        "(() => { const t = root.querySelector('.wasmkit-flow-pane table.wasmkit-diff');"
        f" return t !== null && ({condition}); }})()",
        arg,
    )


def _select_flow(ex: Locator, index: int) -> None:
    """Click flow ``index``'s row and wait for its panes."""
    ex.locator(f".wasmkit-flowtable .wk-row[data-index='{index}']").click()
    _wait_for_selected(ex, index)
    _wait(
        ex,
        "root.querySelector('.wasmkit-flow-pane [data-flow]')?.dataset.flow"
        " === String(arg)",
        index,
    )


def _hue(cell: Locator) -> str:
    """``green``, ``red``, ``yellow`` or ``grey``: the hue of the rendered tint."""
    r, g, b = colours(cell)["bg"]
    top = max(r, g, b)
    if top - min(r, g, b) < 8:
        return "grey"
    if g == top and g - b >= 8 and g - r >= 8:
        return "green"
    if r == top and g - b >= 8:
        return "yellow"  # orange-yellow: red high, green above blue
    if r == top:
        return "red"
    return "other"


def _row(table: Locator, name: str) -> Locator:
    """The diff table's row of header ``name``."""
    return table.locator("tbody tr").filter(
        has=table.page.locator("td", has_text=exact(name))
    )


# ---------------------------------------------------------------- fixtures --


@pytest.fixture(scope="module")
def page(lab: Lab, browser: Browser, artifact: Callable[[str], Path]) -> Iterator[Page]:
    """Tutorial 08 open in JupyterLab, every cell run."""
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    context.set_default_timeout(UPDATE_TIMEOUT)
    try:
        page = context.new_page()
        try:
            run_all_cells(
                page,
                lab,
                NOTEBOOK_IN_LAB,
                load_timeout=LOAD_TIMEOUT,
                run_timeout=RUN_TIMEOUT,
            )
        except BaseException:
            page.screenshot(path=str(artifact("failure-run-all-cells.png")))
            raise
        yield page
    finally:
        context.close()
        shutdown_kernels(lab)


@pytest.fixture(scope="module")
def explorer(page: Page) -> Locator:
    """The root element of the ``tagged`` cell's explorer, once rendered.

    Module-scoped so that a missing explorer fails every test that needs it
    once, not after one timeout each.
    """
    cell = page.locator(".jp-NotebookPanel .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea", has_text=EXPLORER_CELL)
    )
    assert cell.count() == 1, f"no single code cell reads {EXPLORER_CELL!r}"
    root = cell.locator(".wasmkit-explorer")
    try:
        root.first.wait_for()
        rendered = True
    except PlaywrightTimeoutError:
        rendered = False
    if not rendered:
        pytest.fail(
            f"the cell {EXPLORER_CELL!r} shows no .wasmkit-explorer: the replay "
            f"result did not render as widgets ({WIDGETS_HINT}); its output "
            "reads:\n" + cell.locator(".jp-OutputArea").inner_text()[:2000]
        )
    assert root.count() == 1
    root.scroll_into_view_if_needed()
    return root


# ------------------------------------------------------------------- tests --


@pytest.mark.usefixtures("explorer")
def test_every_replay_result_renders_as_an_explorer(page):
    # Every replay result the notebook shows rendered as the widget, not just
    # the one the tests drive: none fell back to the static HTML summary or to
    # a widget error.
    failed = page.locator(".jp-NotebookPanel .jp-OutputArea-output").filter(
        has_text=re.compile(r"Error displaying widget|Loading widget")
    )
    assert failed.count() == 0, f"{WIDGETS_HINT}\n" + "\n".join(
        failed.all_inner_texts()
    )
    explorers = page.locator(".jp-NotebookPanel .wasmkit-explorer")
    assert explorers.count() == EXPLORERS, (
        f"{explorers.count()} explorers rendered, not {EXPLORERS}: {WIDGETS_HINT}"
    )


def test_explorer_renders(explorer):
    status = explorer.locator(".wasmkit-status").inner_text()
    assert re.search(r"\b17 flows\b", status), (
        f"status line without the flow count: {status}"
    )
    assert _tab_labels(explorer, "wk-main-tabbar") == MAIN_TABS


def test_flow_table_and_coloured_diff(explorer):
    ex = explorer
    _main_tab(ex, "Flows")
    _wait_for_rows(ex, list(range(17)))  # 17 rows: all drawn
    heads = ex.locator(".wk-headcell").all_inner_texts()
    assert [h.strip(" ▲▼") for h in heads][:5] == [
        "#",
        "method",
        "host",
        "path",
        "status",
    ]
    ex.locator(".wasmkit-filter input").wait_for()
    buttons = ex.locator(".wasmkit-show button")
    assert [b.strip() for b in buttons.all_inner_texts()] == SHOW_BUTTONS
    ex.locator(".wasmkit-unchanged input[type=checkbox]").wait_for()
    # The first flow is selected and shown; every row says what happened in
    # words beside its colour.
    assert _selected(ex) == 0
    first = ex.locator(".wk-row[data-index='0']")
    assert "GET" in first.inner_text() and "200 → 200" in first.inner_text()
    assert _tab_labels(ex, "wk-flow-tabbar") == FLOW_TABS
    # The tagger leaves requests alone.
    _flow_tab(ex, "Request headers")
    table = _visible_diff(ex)
    assert table.get_attribute("data-flow") == "0"
    assert table.locator("td.wk-added, td.wk-removed, td.wk-changed").count() == 0
    # Flow 0's response diff has all three colours: x-replayed added (green),
    # date removed (red), server changed to the label (yellow).
    _flow_tab(ex, "Response headers")
    table = _visible_diff(ex)
    assert table.get_attribute("data-flow") == "0"
    for name, kind, hue in (
        ("x-replayed", "added", "green"),
        ("date", "removed", "red"),
        ("server", "changed", "yellow"),
    ):
        cells = _row(table, name).locator(f"td.wk-{kind}")
        assert cells.count() >= 1, name
        assert _hue(cells.first) == hue, (name, colours(cells.first))
    assert LABEL in _row(table, "server").inner_text()


def test_selecting_another_flow_updates_the_panes(explorer):
    ex = explorer
    _flow_tab(ex, "Response headers")
    assert "no-store" not in _visible_diff(ex).inner_text()
    _select_flow(ex, 16)
    table = _visible_diff(ex)
    assert table.get_attribute("data-flow") == "16"
    assert _row(table, "x-replayed").locator("td.wk-added").count() >= 1
    # An error flow: the table gains the tagger's cache-control.
    _select_flow(ex, 10)
    table = _visible_diff(ex)
    assert _row(table, "cache-control").locator("td.wk-added").count() >= 1
    assert "no-store" in table.inner_text()
    _select_flow(ex, 0)


_NOTEBOOK_STATE_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel');
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
  const scrollers = [...panel.querySelectorAll('*')].filter(e => e.scrollTop > 0);
  return {
    active: cells.findIndex(c => c.classList.contains('jp-mod-active')),
    selected: cells.filter(c => c.classList.contains('jp-mod-selected')).length,
    count: cells.length,
    scroll: scrollers.map(e => e.scrollTop),
  };
}"""


def test_keyboard_moves_the_selection_not_the_notebook(explorer, page):
    ex = explorer
    _select_flow(ex, 0)
    ex.locator(".wasmkit-flowtable").focus()
    before = page.evaluate(_NOTEBOOK_STATE_JS)
    for key, index in (
        ("ArrowDown", 1), ("j", 2), ("j", 3), ("k", 2), ("ArrowUp", 1),
        ("End", 16), ("Home", 0),
    ):  # fmt: skip
        page.keyboard.press(key)
        _wait_for_selected(ex, index)
        _wait(
            ex,
            "root.querySelector('.wasmkit-flow-pane [data-flow]')?.dataset.flow"
            " === String(arg)",
            index,
        )
    # Notebook shortcuts did not fire: no cell added, deleted, moved or
    # selected, nothing scrolled.
    page.keyboard.press("a")  # "insert a cell above" in command mode
    page.wait_for_timeout(300)
    after = page.evaluate(_NOTEBOOK_STATE_JS)
    assert after == before
    # "/" focuses the filter box; Escape in it comes back to the table.
    page.keyboard.press("/")
    assert page.evaluate(
        "() => document.activeElement.closest('.wasmkit-filter') !== null"
    )
    page.keyboard.press("Escape")
    assert page.evaluate(
        "() => document.activeElement.classList.contains('wasmkit-flowtable')"
    )
    assert page.evaluate(_NOTEBOOK_STATE_JS) == before


def _column(ex: Locator, key: str) -> list[str]:
    return ex.locator(".wasmkit-flowtable .wk-row[data-index]").evaluate_all(
        f"""rows => rows.sort((a, b) => a.dataset.position - b.dataset.position)
              .map(r => r.querySelector('.wk-col-{key}').textContent)"""
    )


def test_sorting_by_a_column(explorer):
    ex = explorer
    head = ex.locator(".wk-headcell[data-key='us']")
    head.click()
    _wait(
        ex,
        "root.querySelector(\".wk-headcell[data-key='us']\").ariaSort === 'ascending'",
    )
    _wait(
        ex,
        """(() => { const v = [...root.querySelectorAll('.wk-row[data-index]')]
             .sort((a, b) => a.dataset.position - b.dataset.position)
             .map(r => Number(r.querySelector('.wk-col-us').textContent));
           return v.length === 17 && v.every((x, i) => i === 0 || v[i - 1] <= x); })()""",
    )
    head.click()
    _wait(
        ex,
        "root.querySelector(\".wk-headcell[data-key='us']\").ariaSort === 'descending'",
    )
    _wait(
        ex,
        """(() => { const v = [...root.querySelectorAll('.wk-row[data-index]')]
             .sort((a, b) => a.dataset.position - b.dataset.position)
             .map(r => Number(r.querySelector('.wk-col-us').textContent));
           return v.length === 17 && v.every((x, i) => i === 0 || v[i - 1] >= x); })()""",
    )
    values = [float(v) for v in _column(ex, "us")]
    assert values == sorted(values, reverse=True)
    ex.locator(".wk-headcell[data-key='index']").click()
    _wait_for_rows(ex, list(range(17)))


def test_filter_expression_shrinks_the_table(explorer):
    ex = explorer
    posts = [i for i, m in enumerate(_methods()) if m == "POST"]
    assert 0 < len(posts) < 17
    box = ex.locator(".wasmkit-filter input")
    box.fill("~m POST")
    box.press("Enter")
    _wait_for_rows(ex, posts)
    assert (
        f"{len(posts)} flows match"
        in ex.locator(".wasmkit-filter-message").inner_text()
    )
    _wait_for_selected(ex, posts[0])
    box.fill("")
    box.press("Enter")
    _wait_for_rows(ex, list(range(17)))
    _select_flow(ex, 0)


def test_show_unchanged_adds_the_unchanged_fields(explorer):
    ex = explorer
    _flow_tab(ex, "Response headers")
    table = _visible_diff(ex)
    assert table.locator("td.wk-unchanged").count() == 0
    rows = table.locator("tbody tr").count()
    checkbox = ex.locator(".wasmkit-unchanged input[type=checkbox]")
    checkbox.check()
    _wait_for_diff(ex, "t.querySelector('td.wk-unchanged') !== null")
    table = _visible_diff(ex)
    assert table.locator("tbody tr").count() > rows
    # content-type went through untouched; unchanged fields are not tinted.
    cell = _row(table, "content-type").locator("td.wk-unchanged").first
    assert _hue(cell) == "grey", colours(cell)
    checkbox.uncheck()
    _wait_for_diff(ex, "t.querySelector('td.wk-unchanged') === null")


def test_body_views(explorer):
    ex = explorer
    _select_flow(ex, 0)  # GET /api/items/1: a JSON response
    _flow_tab(ex, "Body")
    pane = ex.locator(".wasmkit-flow-pane")
    views = pane.locator(".wasmkit-body-view button")
    assert [v.strip() for v in views.all_inner_texts()] == [
        "diff", "text", "pretty JSON", "hex",
    ]  # fmt: skip
    response = pane.locator(".wk-body-side[data-side='response']")
    assert "left this body as it was" in response.inner_text()  # the tagger's
    pane.locator(".wasmkit-body-view button[data-view='text']").click()
    text = response.locator("pre.wasmkit-body-text").first.inner_text()
    assert text.lstrip().startswith("{")
    pane.locator(".wasmkit-body-view button[data-view='json']").click()
    pretty = response.locator("pre.wasmkit-body-json").first.inner_text()
    assert pretty.startswith("{\n  ") and json.loads(pretty) == json.loads(text)
    pane.locator(".wasmkit-body-view button[data-view='hex']").click()
    hexed = response.locator("pre.wasmkit-body-hex").first.inner_text()
    assert re.match(r"00000000  7b ", hexed), hexed[:80]
    pane.locator(".wasmkit-body-view button[data-view='diff']").click()


def test_copy_as_curl(explorer, page):
    ex = explorer
    _select_flow(ex, 0)
    _flow_tab(ex, "curl")
    pane = ex.locator(".wasmkit-flow-pane")
    before = pane.locator("pre.wasmkit-curl[data-side='before']").inner_text()
    after = pane.locator("pre.wasmkit-curl[data-side='after']").inner_text()
    assert before.startswith("curl http://") and "/api/items/1" in before
    assert "x-replayed" not in before  # the tagger adds it on responses only
    assert after.startswith("curl http://")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    pane.locator("button.wasmkit-copy[data-side='before']").click()
    status = pane.locator(".wasmkit-copied").first
    status.wait_for()
    _wait(ex, "root.querySelector('.wasmkit-copied').textContent === 'copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == before
    _flow_tab(ex, "Response headers")


def test_resources_plots(explorer):
    ex = explorer
    _main_tab(ex, "Resources")
    res = ex.locator(".wasmkit-resources")
    res.wait_for()
    for series in ("us_filter", "host_calls", "memory_bytes"):
        plot = res.locator(f"figure.wasmkit-plot[data-series='{series}']")
        assert plot.count() == 1, series
        assert plot.locator("svg polyline").count() >= 1, series
        box = plot.locator("svg").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 30
    assert res.locator("table.wasmkit-callbacks tbody tr").count() >= 2
    # A click on a point opens that flow.
    plot = res.locator("figure.wasmkit-plot[data-series='us_filter'] svg")
    box = plot.bounding_box()
    plot.click(position={"x": box["width"] - 2, "y": box["height"] / 2})
    _wait(
        ex,
        "root.querySelector('.wk-main-tabbar [aria-selected=true]').dataset.tab === 'Flows'",
    )
    _wait_for_selected(ex, 16)
    _select_flow(ex, 0)


THEMES = ["JupyterLab Light", "JupyterLab Dark"]


@pytest.mark.parametrize("theme", THEMES)
def test_every_diff_cell_is_readable(explorer, page, artifact, theme):
    ex = explorer
    set_theme(page, theme)
    try:
        _main_tab(ex, "Flows")
        _select_flow(ex, 10)  # an error flow: cache-control added too
        _flow_tab(ex, "Response headers")
        ex.locator(".wasmkit-unchanged input[type=checkbox]").check()
        _wait_for_diff(ex, "t.querySelector('td.wk-unchanged') !== null")
        table = _visible_diff(ex)
        cells = table.locator(
            "td.wk-added, td.wk-removed, td.wk-changed, td.wk-unchanged, th"
        )
        checked = {
            "diff cells": cells,
            "flow rows": ex.locator(".wk-row .wk-cell"),
            "table headers": ex.locator(".wk-headcell"),
            "legend": ex.locator(".wasmkit-status span[class^='wk-']"),
            "tabs": ex.locator(".wk-tab"),
            "switch": ex.locator(".wasmkit-show button"),
        }
        low = []
        for what, loc in checked.items():
            n = loc.count()
            assert n > 0, what
            for i in range(n):
                ratio = contrast(loc.nth(i))
                if not ratio >= MIN_CONTRAST:
                    low.append(
                        (
                            what,
                            loc.nth(i).inner_text()[:30],
                            round(ratio, 2),
                            colours(loc.nth(i)),
                        )
                    )
        name = "light" if theme == THEMES[0] else "dark"
        ex.scroll_into_view_if_needed()
        ex.screenshot(path=str(artifact(f"explorer-{name}.png")))
        _main_tab(ex, "Resources")
        ex.locator(".wasmkit-resources").wait_for()
        ex.screenshot(path=str(artifact(f"explorer-resources-{name}.png")))
        _main_tab(ex, "Flows")
        assert not low, f"text below {MIN_CONTRAST}:1 in {theme}: {low}"
        # The diff tints keep their hue in the dark too.
        for name_, kind, hue in (
            ("x-replayed", "added", "green"),
            ("date", "removed", "red"),
        ):
            cell = _row(table, name_).locator(f"td.wk-{kind}").first
            assert _hue(cell) == hue, (theme, name_, colours(cell))
    finally:
        ex.locator(".wasmkit-unchanged input[type=checkbox]").uncheck()
        if theme != THEMES[0]:
            set_theme(page, THEMES[0])
