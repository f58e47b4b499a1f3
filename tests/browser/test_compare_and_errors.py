"""The compare view, failed flows and a large capture in a real browser.

A notebook written by this module (``notebooks/compare-and-errors.ipynb`` in
the lab's root, beside a synthetic ``many.flow`` of :data:`MANY` flows) is
run once with Run → Run All Cells. Its cells show:

- ``comparison``: ``wasmkit.compare`` of two WAT filters over
  samples/captures/api.flow, named ``tagger`` and ``mixed``: the compare view
  (wasmkit/notebook/compare_view.py, static/compare.js);
- ``trapped``: a replay through a filter that traps three calls deep on the
  5-byte paths: the explorer's failed rows and Error pane;
- ``many``: a replay of :data:`MANY` flows: the virtualized flow table.

The compare view's DOM contract: ``.wasmkit-compare`` root,
``.wasmkit-status``, ``.wasmkit-filter input``, ``.wasmkit-show button``,
``.wasmkit-flowtable`` with ``.wk-headcell[data-key]`` and virtualized
``.wk-row[data-index][data-position]`` rows (``.wk-selected``,
``wk-row-failed`` / ``wk-row-differs`` / ``wk-row-same``, cells
``.wk-col-<key>``), ``.wasmkit-flow-tabs`` (``.wk-tab[data-tab]``,
``wk-tab-marked`` where the sides differ) and ``.wasmkit-flow-pane``.
Screenshots of the compare view in the light and the dark theme go to
build/test-artifacts/compare-light.png and compare-dark.png.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

import wasmkit
from tests.browser.conftest import (
    CAPTURE,
    MIN_CONTRAST,
    Lab,
    colours,
    exact,
    low_contrast,
    run_all_cells,
    set_theme,
    shutdown_kernels,
)
from tests.notebook.test_compare_view import ADD
from tests.notebook.test_explorer import MIXED
from wasmkit.replay.compare import Comparison
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat
from wasmkit.traffic import mitm
from wasmkit.traffic.model import Exchange, Headers, Request, Response

pytestmark = pytest.mark.browser

UPDATE_TIMEOUT = (
    30_000  # ms: a widget round trip to the kernel and back, loaded machine
)
NOTEBOOK_IN_LAB = "notebooks/compare-and-errors.ipynb"
MANY = 5_000
"""Flows of the synthetic capture."""
DRAWN_MAX = 26
"""Rows the flow table draws at most: 14 in view and 6 above and below
(flowtable.js: VISIBLE + 2 * OVERSCAN)."""
NAMES = ("tagger", "mixed")
RELOADING: dict[str, Any] = {"failure_policy": "fail_reload", "reload_backoff_ms": 2}

# Traps three calls deep (proxy_on_request_headers → check → deep) on the
# requests whose :path is 5 bytes long.
DEEP = filter_wat(
    """
    (func $deep (param $n i32)
      (if (i32.eq (local.get $n) (i32.const 5)) (then unreachable)))
    (func $check (param $n i32) (call $deep (local.get $n)))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_get_header_map_value (i32.const 0)
        (global.get $s_path) (global.get $s_path_len) (i32.const 512) (i32.const 516)))
      (call $check (i32.load (i32.const 516)))
      (i32.const 0))
    """,
    strings={"path": ":path"},
)

CELLS = [
    "%load_ext wasmkit\n"
    "import wasmkit\n"
    "from wasmkit.replay.run import replay\n\n"
    'CAPTURE = "../samples/captures/api.flow"\n'
    f"RELOADING = {RELOADING!r}\n"
    f"ADD = {ADD!r}\n"
    f"MIXED = {MIXED!r}\n"
    f"DEEP = {DEEP!r}",
    "comparison = wasmkit.compare(\n"
    f"    ADD, MIXED, CAPTURE, names={NAMES!r}, **RELOADING\n"
    ")\n"
    "comparison",
    "trapped = replay(DEEP, CAPTURE, **RELOADING)\ntrapped",
    'many = replay(ADD, "many.flow", trace=False)\nmany',
]


def _notebook() -> dict[str, Any]:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(CELLS)
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3",
                "language": "python",
                "name": "python3",
            }
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _exchange(i: int) -> Exchange:
    # Flow i of the synthetic capture: a small JSON API call.
    method = "POST" if i % 4 == 0 else "GET"
    stamp = 1_700_000_000.0 + i
    return Exchange(
        index=i,
        request=Request(
            method, "https", "api.example", 443, f"/items/{i}?q=1",
            headers=Headers([(b"host", b"api.example"), (b"user-agent", b"many/1")]),
            body=b'{"n": %d}' % i if method == "POST" else b"",
            timestamp_start=stamp,
        ),
        response=Response(
            200 if i % 7 else 404, "OK",
            headers=Headers([(b"content-type", b"application/json")]),
            body=json.dumps({"id": i, "ok": True}).encode(),
        ),
        timestamp_start=stamp,
        timestamp_end=stamp + 0.01,
    )  # fmt: skip


@functools.cache
def _comparison() -> Comparison:
    # The same comparison the notebook makes (replays are deterministic).
    result = wasmkit.compare(ADD, MIXED, CAPTURE, names=NAMES, **RELOADING)
    assert isinstance(result, Comparison)
    return result


@functools.cache
def _trapped_failed() -> list[int]:
    return [f.index for f in replay(DEEP, CAPTURE, **RELOADING).flows if f.failed]


# ---------------------------------------------------------------- fixtures --


@pytest.fixture(scope="module")
def page(lab: Lab, browser: Browser, artifact: Callable[[str], Path]) -> Iterator[Page]:
    """The module's notebook open in JupyterLab, every cell run."""
    notebooks = lab.root_dir / "notebooks"
    notebooks.mkdir(exist_ok=True)
    (lab.root_dir / NOTEBOOK_IN_LAB).write_text(json.dumps(_notebook(), indent=1))
    count = mitm.write_flows(
        notebooks / "many.flow",
        (
            (e, e.to_request_message(), e.to_response_message(), None)
            for e in map(_exchange, range(MANY))
        ),
    )
    assert count == MANY
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    context.set_default_timeout(UPDATE_TIMEOUT)
    try:
        page = context.new_page()
        try:
            run_all_cells(page, lab, NOTEBOOK_IN_LAB)
        except BaseException:
            page.screenshot(path=str(artifact("failure-compare-run-all-cells.png")))
            raise
        yield page
    finally:
        context.close()
        shutdown_kernels(lab)


def _widget(page: Page, first_line: str, root: str) -> Locator:
    cell = page.locator(".jp-NotebookPanel .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea", has_text=first_line)
    )
    assert cell.count() == 1, f"no single code cell reads {first_line!r}"
    widget = cell.locator(root)
    try:
        widget.first.wait_for()
    except PlaywrightTimeoutError:
        pytest.fail(
            f"the cell {first_line!r} shows no {root}; its output reads:\n"
            + cell.locator(".jp-OutputArea").inner_text()[:2000]
        )
    assert widget.count() == 1
    widget.scroll_into_view_if_needed()
    return widget


@pytest.fixture(scope="module")
def compare_view(page: Page) -> Locator:
    """The ``comparison`` cell's compare view."""
    return _widget(page, "comparison = wasmkit.compare(", ".wasmkit-compare")


@pytest.fixture(scope="module")
def trapped(page: Page) -> Locator:
    """The ``trapped`` cell's explorer."""
    return _widget(page, "trapped = replay(", ".wasmkit-explorer")


@pytest.fixture(scope="module")
def many(page: Page) -> Locator:
    """The ``many`` cell's explorer."""
    return _widget(page, "many = replay(", ".wasmkit-explorer")


# ----------------------------------------------------------------- helpers --


def _wait(root: Locator, condition: str, arg: Any = None) -> None:
    """Wait until ``condition`` (JS, on ``root`` the widget and ``arg``) holds."""
    root.page.wait_for_function(
        f"([root, arg]) => {condition}",
        arg=[root.element_handle(), arg],
        timeout=UPDATE_TIMEOUT,
    )


_ROWS_JS = """[...root.querySelectorAll('.wasmkit-flowtable .wk-row[data-index]')]
  .sort((a, b) => a.dataset.position - b.dataset.position)"""


def _rows(root: Locator) -> list[dict[str, Any]]:
    """The drawn rows top to bottom: index, classes and cell texts by key."""
    rows: list[dict[str, Any]] = root.evaluate(
        f"""root => {_ROWS_JS}.map(r => ({{
              index: Number(r.dataset.index),
              classes: [...r.classList],
              cells: Object.fromEntries([...r.querySelectorAll('.wk-cell')].map(c =>
                [[...c.classList].find(k => k.startsWith('wk-col-')).slice(7),
                 c.textContent])),
            }}))"""
    )
    return rows


def _drawn(root: Locator) -> int:
    """Row elements in the table's DOM (placeholders included)."""
    return root.locator(".wasmkit-flowtable .wk-row").count()


def _wait_for_selected(root: Locator, index: int) -> None:
    _wait(
        root,
        "root.querySelector('.wasmkit-flowtable .wk-row.wk-selected')"
        "?.dataset.index === String(arg)"
        " && root.querySelector('.wasmkit-flow-pane [data-flow]')?.dataset.flow"
        " === String(arg)",
        index,
    )


def _select(root: Locator, index: int) -> None:
    root.locator(f".wasmkit-flowtable .wk-row[data-index='{index}']").click()
    _wait_for_selected(root, index)


def _flow_tab(root: Locator, title: str) -> None:
    root.locator(f".wasmkit-flow-tabs .wk-tab[data-tab='{title}']").click()
    _wait(
        root,
        "root.querySelector('.wasmkit-flow-tabs .wk-tab[aria-selected=true]')"
        "?.dataset.tab === arg",
        title,
    )


_NOTEBOOK_STATE_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel');
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
  return {
    active: cells.findIndex(c => c.classList.contains('jp-mod-active')),
    selected: cells.filter(c => c.classList.contains('jp-mod-selected')).length,
    count: cells.length,
  };
}"""


# ------------------------------------------------------------ compare view --


def test_compare_view_rows_say_which_fields_differ(compare_view):
    view = compare_view
    comparison = _comparison()
    status = view.locator(".wasmkit-status").inner_text()
    assert f"{len(comparison.flows)} flows" in status
    assert f"{len(comparison.differing)} differing" in status
    assert "tagger" in status and "mixed" in status
    heads = [h.strip(" ▲▼") for h in view.locator(".wk-headcell").all_inner_texts()]
    assert heads == [
        "#", "method", "host", "path", "status tagger → mixed", "tagger", "mixed",
        "differs in",
    ]  # fmt: skip
    buttons = view.locator(".wasmkit-show button")
    assert [b.strip() for b in buttons.all_inner_texts()] == ["All", "Differing"]
    assert view.locator(".wasmkit-show button[aria-pressed=true]").inner_text() == (
        "Differing"
    )
    view.locator(".wasmkit-filter input").wait_for()
    # Every differing flow is listed (fewer than a screenful: all drawn), and
    # each row says in words what differs, the status a → b, what each side
    # did; rows where a side failed are marked.
    differing = {f.index: f for f in comparison.differing}
    _wait(
        view,
        f"{_ROWS_JS}.map(r => Number(r.dataset.index)).join() === arg",
        ",".join(map(str, differing)),
    )
    rows = _rows(view)
    failed = 0
    for row in rows:
        flow = differing[row["index"]]
        cells = row["cells"]
        assert cells["fields"] == ", ".join(flow.fields), row
        a = "-" if flow.status_a is None else flow.status_a
        b = "-" if flow.status_b is None else flow.status_b
        assert cells["status"] == f"{a} → {b}"
        assert cells["a"].endswith(flow.action_a) and cells["b"].endswith(flow.action_b)
        if "failed" in (flow.action_a, flow.action_b):
            failed += 1
            assert "wk-row-failed" in row["classes"], row
            assert cells["b"] == "\u2716 failed"
        else:
            assert "wk-row-differs" in row["classes"], row
    assert failed >= 1
    assert "wk-selected" in rows[0]["classes"]


def test_compare_view_keyboard_moves_the_selection(compare_view, page):
    view = compare_view
    order = [f.index for f in _comparison().differing]
    _select(view, order[0])
    view.locator(".wasmkit-flowtable").focus()
    before = page.evaluate(_NOTEBOOK_STATE_JS)
    for key, position in (
        ("j", 1), ("ArrowDown", 2), ("k", 1), ("ArrowUp", 0), ("End", -1),
        ("Home", 0),
    ):  # fmt: skip
        page.keyboard.press(key)
        _wait_for_selected(view, order[position])
        title = view.locator(".wasmkit-flow-title b").text_content() or ""
        assert title.startswith(f"#{order[position]}  ")
    # The keys stayed in the view: no notebook shortcut ran.
    page.keyboard.press("a")  # "insert a cell above" in command mode
    page.wait_for_timeout(300)
    assert page.evaluate(_NOTEBOOK_STATE_JS) == before
    assert page.evaluate(
        "() => document.activeElement.classList.contains('wasmkit-flowtable')"
    )


def test_compare_view_side_by_side_detail(compare_view):
    view = compare_view
    comparison = _comparison()
    failed = next(f for f in comparison.differing if f.action_b == "failed")
    _select(view, failed.index)
    badges = view.locator(".wasmkit-differs .wk-badge").all_inner_texts()
    assert badges == failed.fields
    marked = view.locator(".wasmkit-flow-tabs .wk-tab-marked").evaluate_all(
        "tabs => tabs.map(t => t.dataset.tab)"
    )
    assert "Overview" in marked and "Error" in marked
    # Overview: the two sides as columns, the differing rows tinted.
    _flow_tab(view, "Overview")
    table = view.locator(".wasmkit-flow-pane table.wasmkit-compare-side")
    assert [t.strip() for t in table.locator("thead th").all_inner_texts()][1:] == [
        "tagger",
        "mixed",
    ]
    action = table.locator("tbody tr").filter(
        has=view.page.locator("td", has_text=exact("action"))
    )
    assert action.locator("td.wk-changed").count() == 3
    # Error: mixed's trap with its backtrace as a list of frames; tagger did
    # not fail.
    _flow_tab(view, "Error")
    sides = view.locator(".wasmkit-compare-errors .wk-side")
    assert sides.nth(0).locator(".wk-side-title").inner_text() == "tagger"
    assert "did not fail" in sides.nth(0).inner_text()
    frames = sides.nth(1).locator("ol.wasmkit-frames li")
    assert failed.b is not None and failed.b.result.error is not None
    assert frames.count() == len(failed.b.result.error.wasm_backtrace) >= 1
    # Request headers: x-replayed only under tagger (removed a → b).
    denied = next(f for f in comparison.differing if f.action_b == "local reply")
    _select(view, denied.index)
    _flow_tab(view, "Request headers")
    diff = view.locator(".wasmkit-flow-pane table.wasmkit-diff")
    row = diff.locator("tbody tr").filter(has_text="x-replayed")
    assert row.locator("td.wk-removed").count() >= 1
    # Bodies: the explorer's body views, the sides by their names.
    rewritten = next(
        f
        for f in comparison.differing
        if f.response_body is not None
        and f.response_body.changed
        and f.action_b == "forwarded"
    )
    _select(view, rewritten.index)
    _flow_tab(view, "Bodies")
    pane = view.locator(".wasmkit-flow-pane")
    response = pane.locator(".wk-body-side[data-side='response']")
    assert "changed" in response.locator(".wk-badge").inner_text()
    pane.locator(".wasmkit-body-view button[data-view='text']").click()
    titles = response.locator(".wk-side-title").all_inner_texts()
    assert [t.split(" · ")[0] for t in titles] == list(NAMES)
    assert response.locator("pre.wasmkit-body-text").nth(1).inner_text() == '{"x": 1}'
    pane.locator(".wasmkit-body-view button[data-view='diff']").click()
    _flow_tab(view, "Overview")


# ---------------------------------------------------------- failed flows --


def test_failed_rows_are_marked(trapped):
    ex = trapped
    failed = _trapped_failed()
    assert failed, "the DEEP filter trapped on no flow"
    _wait(ex, f"{_ROWS_JS}.length === 17")
    rows = _rows(ex)
    marked = [r["index"] for r in rows if "wk-row-failed" in r["classes"]]
    assert marked == failed
    for row in rows:
        if row["index"] in failed:
            assert row["cells"]["action"] == "\u2716 failed"
            assert row["cells"]["error"]
        else:
            assert not row["cells"]["action"].startswith("\u2716")
    # The Errors switch lists the failed flows only.
    ex.locator(".wasmkit-show button", has_text="Errors").click()
    _wait(
        ex,
        f"{_ROWS_JS}.map(r => Number(r.dataset.index)).join() === arg",
        ",".join(map(str, failed)),
    )
    ex.locator(".wasmkit-show button", has_text="All").click()
    _wait(ex, f"{_ROWS_JS}.length === 17")


def test_error_pane_lists_the_backtrace_frames(trapped):
    ex = trapped
    index = _trapped_failed()[0]
    _select(ex, index)
    _flow_tab(ex, "Error")
    error = ex.locator(".wasmkit-flow-pane .wasmkit-error")
    assert error.get_attribute("data-flow") == str(index)
    assert "trap" in error.locator(".wk-badge").inner_text()
    assert "proxy_on_request_headers" in error.inner_text()
    assert "unreachable" in error.locator(".wasmkit-error-message").inner_text()
    # One list item per frame, innermost first: deep, check, the callback.
    frames = error.locator("ol.wasmkit-frames > li").all_inner_texts()
    assert len(frames) == 3, frames
    assert "deep" in frames[0] and "check" in frames[1]
    assert ex.locator("ol.wasmkit-frames").get_attribute("start") == "0"
    _flow_tab(ex, "Response headers")


# ------------------------------------------------------- a large capture --


def test_large_capture_draws_only_a_window(many):
    ex = many
    status = ex.locator(".wasmkit-status").inner_text()
    assert f"{MANY} flows" in status.replace(",", "")
    _wait(ex, "root.querySelector('.wasmkit-flowtable .wk-row[data-index]') !== null")
    assert 0 < _drawn(ex) <= DRAWN_MAX
    # The spacer is as tall as every row: the scrollbar covers all flows.
    height = ex.locator(".wk-spacer").evaluate("s => s.getBoundingClientRect().height")
    assert height >= MANY * 24 - 1
    # Scrolled to the middle, the rows there arrive (another window) and the
    # DOM still holds a window only.
    ex.locator(".wk-viewport").evaluate("v => { v.scrollTop = 2500 * 24; }")
    _wait(ex, "root.querySelector(\".wk-row[data-index='2500']\") !== null")
    _wait(ex, "root.querySelector('.wk-row-loading') === null")
    assert _drawn(ex) <= DRAWN_MAX


def test_large_capture_end_and_repeated_j_reach_the_last_flow(many, page):
    ex = many
    ex.locator(".wasmkit-flowtable").focus()
    page.keyboard.press("Home")
    _wait_for_selected(ex, 0)
    page.keyboard.press("End")
    _wait_for_selected(ex, MANY - 1)
    assert _drawn(ex) <= DRAWN_MAX
    at_bottom = ex.locator(".wk-viewport").evaluate(
        "v => v.scrollTop + v.clientHeight >= v.scrollHeight - 2"
    )
    assert at_bottom
    for i in range(1, 4):
        page.keyboard.press("k")
        _wait_for_selected(ex, MANY - 1 - i)
    for i in range(3):
        page.keyboard.press("j")
        _wait_for_selected(ex, MANY - 3 + i)
    page.keyboard.press("j")  # past the last row: stays on it
    page.wait_for_timeout(300)
    _wait_for_selected(ex, MANY - 1)
    assert _drawn(ex) <= DRAWN_MAX
    assert ex.locator(".wk-row.wk-selected .wk-col-path").inner_text() == (
        f"/items/{MANY - 1}?q=1"
    )
    page.keyboard.press("Home")
    _wait_for_selected(ex, 0)
    assert _drawn(ex) <= DRAWN_MAX


# ------------------------------------------------------------------ themes --

THEMES = ["JupyterLab Light", "JupyterLab Dark"]


@pytest.mark.parametrize("theme", THEMES)
def test_compare_view_is_readable(compare_view, page, artifact, theme):
    view = compare_view
    comparison = _comparison()
    failed = next(f for f in comparison.differing if f.action_b == "failed")
    set_theme(page, theme, UPDATE_TIMEOUT)
    try:
        view.scroll_into_view_if_needed()
        _select(view, failed.index)
        _flow_tab(view, "Overview")
        low = low_contrast(
            {
                "flow rows": view.locator(".wk-row .wk-cell"),
                "table headers": view.locator(".wk-headcell"),
                "legend": view.locator(".wasmkit-status span[class^='wk-']"),
                "tabs": view.locator(".wk-tab"),
                "switch": view.locator(".wasmkit-show button"),
                "differs badges": view.locator(".wasmkit-differs .wk-badge"),
                "overview cells": view.locator(
                    ".wasmkit-flow-pane td, .wasmkit-flow-pane th"
                ),
            }
        )
        name = "light" if theme == THEMES[0] else "dark"
        view.screenshot(path=str(artifact(f"compare-{name}.png")))
        assert not low, f"text below {MIN_CONTRAST}:1 in {theme}: {low}"
        # The failed row is red, the other differing rows keep a tint of
        # their own, in both themes.
        failed_row = view.locator(".wk-row.wk-row-failed:not(.wk-selected)").first
        r, g, b = colours(failed_row)["bg"]
        assert r > g and r > b, (theme, colours(failed_row))
    finally:
        if theme != THEMES[0]:
            set_theme(page, THEMES[0], UPDATE_TIMEOUT)
