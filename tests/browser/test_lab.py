"""The replay explorer in a real browser: JupyterLab + headless Chromium.

The tutorial ``notebooks/08-replay-a-capture.ipynb`` is opened in JupyterLab
and run with Run → Run All Cells. Near its end it replays
samples/captures/api.flow through its AssemblyScript ``tagger`` filter, which
changes ``server``, removes ``date`` and adds ``x-replayed`` on every response,
and shows the result (``tagged``), which opens the replay explorer
(wasmkit/notebook/explorer.py). The tests drive that explorer (the notebook
shows an earlier one too) through its CSS classes, the DOM contract of the
explorer:

- ``.wasmkit-explorer`` root, ``.wasmkit-status`` status line;
- ``.wasmkit-tabs`` main tab (Summary, Flows, Logs, Metrics, Callouts);
- ``.wasmkit-filter`` text box, ``.wasmkit-show`` toggle buttons,
  ``.wasmkit-unchanged`` checkbox;
- ``.wasmkit-flowlist`` select, options labelled ``#<index> ...``;
- ``.wasmkit-flow-tabs`` per-flow tab (Request headers, Response headers,
  Body, Logs, Trace);
- ``table.wasmkit-diff[data-flow=<index>]`` with ``wk-added`` / ``wk-removed``
  / ``wk-changed`` / ``wk-unchanged`` cells, coloured green / red / yellow.

The tests share one page and run in file order; each one puts the explorer
back the way it found it. A screenshot of the explorer goes to
build/test-artifacts/explorer.png.
"""

from __future__ import annotations

import functools
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import CAPTURE, NOTEBOOK_IN_LAB, Lab
from wasmkit.traffic import load_capture

pytestmark = pytest.mark.browser

LOAD_TIMEOUT = 30_000  # ms: JupyterLab's first page load on a busy 2-core machine
RUN_TIMEOUT = 300_000  # ms: kernel start + every cell, builds of the filters included
UPDATE_TIMEOUT = 10_000  # ms: a widget round trip to the kernel and back

EXPLORER_CELL = "tagged = tagger.replay(CAPTURE)"
"""The first line of the cell whose explorer the tests drive."""
EXPLORERS = 3
"""Replay results the notebook shows (``result``, ``tagged`` and ``replayed``,
the one checked against Envoy)."""
LABEL = "tutorial-08"
"""The tagger's configuration: the value it gives ``server``."""

MAIN_TABS = ["Summary", "Flows", "Logs", "Metrics", "Callouts"]
FLOW_TABS = ["Request headers", "Response headers", "Body", "Logs", "Trace"]
SHOW_BUTTONS = ["All", "Modified", "Errors", "Local reply"]
WIDGETS_HINT = (
    "is the jupyterlab_widgets extension in the venv "
    "(.venv/share/jupyter/labextensions/@jupyter-widgets)?"
)


@functools.cache
def _methods() -> list[str]:
    return [exchange.request.method for exchange in load_capture(CAPTURE)]


# ----------------------------------------------------------------- helpers --
# Each takes the explorer's root: the page holds more than one explorer.


def _exact(text: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def _wait(ex: Locator, condition: str, arg: Any = None) -> None:
    """Wait until ``condition`` (JS, on ``root`` the explorer and ``arg``) holds."""
    ex.page.wait_for_function(
        f"([root, arg]) => {condition}",
        arg=[ex.element_handle(), arg],
        timeout=UPDATE_TIMEOUT,
    )


def _tab_labels(ex: Locator, tab_class: str) -> list[str]:
    # The tab's own bar only: the per-flow tab sits inside the main one.
    labels = ex.locator(f".{tab_class} > .lm-TabBar .lm-TabBar-tabLabel")
    return [t.strip() for t in labels.all_inner_texts()]


def _click_tab(ex: Locator, tab_class: str, title: str) -> None:
    tab = ex.locator(f".{tab_class} > .lm-TabBar .lm-TabBar-tab").filter(
        has=ex.page.locator(".lm-TabBar-tabLabel", has_text=_exact(title))
    )
    tab.click()
    _wait(
        ex,
        """(() => {
             const [cls, title] = arg;
             const cur = root.querySelector(
               `.${cls} > .lm-TabBar .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel`);
             return cur !== null && cur.textContent.trim() === title;
           })()""",
        [tab_class, title],
    )


def _options(ex: Locator) -> list[str]:
    return [
        o.strip()
        for o in ex.locator(".wasmkit-flowlist select option").all_inner_texts()
    ]


def _option_index(label: str) -> int:
    m = re.match(r"#(\d+)", label)
    assert m, f"flow list option {label!r} does not start with #<index>"
    return int(m.group(1))


def _wait_for_options(ex: Locator, count: int) -> None:
    _wait(
        ex,
        "root.querySelectorAll('.wasmkit-flowlist select option').length == arg",
        count,
    )


def _visible_diff(ex: Locator) -> Locator:
    tables = ex.locator(".wasmkit-flow-tabs table.wasmkit-diff:visible")
    tables.first.wait_for(state="visible", timeout=UPDATE_TIMEOUT)
    return tables.first


def _rgb(cell: Locator) -> tuple[int, int, int]:
    css = cell.evaluate("e => getComputedStyle(e).backgroundColor")
    m = re.match(r"rgba?\((\d+),\s*(\d+),\s*(\d+)", css)
    assert m, f"background-color {css!r} is not an rgb() colour"
    r, g, b = (int(x) for x in m.groups())
    return r, g, b


def _is_green(c: tuple[int, int, int]) -> bool:  # like #d4f7d4
    r, g, b = c
    return g - r >= 20 and g - b >= 20


def _is_red(c: tuple[int, int, int]) -> bool:  # like #f9d0d0
    r, g, b = c
    return r - g >= 20 and r - b >= 20


def _is_yellow(c: tuple[int, int, int]) -> bool:  # like #fbf0b8
    r, g, b = c
    return r - b >= 40 and g - b >= 40 and abs(r - g) < 40


def _row(table: Locator, name: str) -> Locator:
    """The diff table's row of header ``name``."""
    return table.locator("tbody tr").filter(
        has=table.page.locator("td", has_text=_exact(name))
    )


# The diff table on show: the one of the current per-flow tab.
_SHOWN_DIFF_JS = """[...root.querySelectorAll(
  '.wasmkit-flow-tabs table.wasmkit-diff')].find(e => e.offsetParent !== null)"""


def _wait_for_diff(ex: Locator, condition: str, arg: Any = None) -> None:
    """Wait until ``condition`` (JS, on ``t`` the shown diff table) holds."""
    _wait(
        ex,
        f"(() => {{ const t = {_SHOWN_DIFF_JS}; return t !== undefined && ({condition}); }})()",
        arg,
    )


def _select_flow(ex: Locator, index: int) -> None:
    """Select flow ``index`` in the list and wait for its tables."""
    label = next(o for o in _options(ex) if _option_index(o) == index)
    ex.locator(".wasmkit-flowlist select").select_option(label=label)
    _wait_for_diff(ex, "t.dataset.flow === arg", str(index))


# ---------------------------------------------------------------- fixtures --


def _wait_for_kernel_connection(lab: Lab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        lab.url("api/kernels"), headers={"Authorization": f"token {lab.token}"}
    )
    kernels: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=5) as response:
            kernels = json.load(response)
        if any(k.get("connections", 0) > 0 for k in kernels):
            return
        time.sleep(0.2)
    pytest.fail(f"no kernel connected within {timeout:.0f} s: {kernels}")


def _run_all_cells(page: Page, lab: Lab) -> None:
    page.goto(lab.url(f"lab/tree/{NOTEBOOK_IN_LAB}"), timeout=LOAD_TIMEOUT)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=LOAD_TIMEOUT)
    # Run only once the page talks to a started kernel: the execution
    # indicator says "idle" before the kernel exists too (and Run All then
    # does nothing), so first wait until the server sees the page's kernel
    # connection, then for the page to call the kernel idle.
    _wait_for_kernel_connection(lab, LOAD_TIMEOUT / 1000)
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
        state="attached", timeout=LOAD_TIMEOUT
    )
    page.locator(".jp-NotebookPanel .jp-Notebook").click()
    page.locator(".lm-MenuBar-itemLabel", has_text=_exact("Run")).click()
    page.get_by_role("menuitem", name=_exact("Run All Cells")).click()
    # Every code cell got an execution count (no [ ] or [*] left) and the
    # kernel went back to idle.
    page.wait_for_function(
        """() => {
             const prompts = [...document.querySelectorAll(
               '.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
             return prompts.length > 0
               && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
           }""",
        timeout=RUN_TIMEOUT,
    )
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
        state="attached", timeout=RUN_TIMEOUT
    )
    errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']")
    if errors.count():
        pytest.fail("a notebook cell failed:\n" + "\n".join(errors.all_inner_texts()))


@pytest.fixture(scope="module")
def page(lab: Lab, browser: Browser, artifact: Callable[[str], Path]) -> Iterator[Page]:
    """Tutorial 08 open in JupyterLab, every cell run."""
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    context.set_default_timeout(UPDATE_TIMEOUT)
    try:
        page = context.new_page()
        try:
            _run_all_cells(page, lab)
        except BaseException:
            page.screenshot(path=str(artifact("failure-run-all-cells.png")))
            raise
        yield page
    finally:
        context.close()


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
    # Every replay result the notebook shows (``result`` and ``tagged``)
    # rendered as widgets, not just the one the tests drive: none fell back to
    # the static HTML summary or to a widget error.
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
    assert _tab_labels(explorer, "wasmkit-tabs") == MAIN_TABS


def test_flow_list_and_coloured_diff(explorer, artifact):
    ex = explorer
    _click_tab(ex, "wasmkit-tabs", "Flows")
    flow_list = ex.locator(".wasmkit-flowlist select")
    flow_list.wait_for()
    options = _options(ex)
    assert len(options) == len(_methods()) == 17
    assert [_option_index(o) for o in options] == list(range(17))
    # Controls of the list.
    ex.locator(".wasmkit-filter input").wait_for()
    buttons = ex.locator(".wasmkit-show button")
    assert [b.strip() for b in buttons.all_inner_texts()] == SHOW_BUTTONS
    ex.locator(".wasmkit-unchanged input[type=checkbox]").wait_for()

    # The first flow is selected and shown.
    assert _option_index(flow_list.evaluate("s => s.selectedOptions[0].text")) == 0
    assert _tab_labels(ex, "wasmkit-flow-tabs") == FLOW_TABS
    # The tagger leaves requests alone.
    _click_tab(ex, "wasmkit-flow-tabs", "Request headers")
    table = _visible_diff(ex)
    assert table.get_attribute("data-flow") == "0"
    assert table.locator("td.wk-added, td.wk-removed, td.wk-changed").count() == 0

    # Flow 0's response diff has all three colours: x-replayed added (green),
    # date removed (red), server changed to the label (yellow).
    _click_tab(ex, "wasmkit-flow-tabs", "Response headers")
    table = _visible_diff(ex)
    assert table.get_attribute("data-flow") == "0"
    added = _row(table, "x-replayed").locator("td.wk-added")
    assert added.count() >= 1
    assert _is_green(_rgb(added.first)), _rgb(added.first)
    removed = _row(table, "date").locator("td.wk-removed")
    assert removed.count() >= 1
    assert _is_red(_rgb(removed.first)), _rgb(removed.first)
    changed = _row(table, "server").locator("td.wk-changed")
    assert changed.count() >= 1
    assert _is_yellow(_rgb(changed.first)), _rgb(changed.first)
    assert LABEL in _row(table, "server").inner_text()
    ex.screenshot(path=str(artifact("explorer.png")))


def test_selecting_another_flow_updates_the_tables(explorer):
    ex = explorer
    _click_tab(ex, "wasmkit-tabs", "Flows")
    _click_tab(ex, "wasmkit-flow-tabs", "Response headers")
    before = _visible_diff(ex).get_attribute("data-flow")
    assert "no-store" not in _visible_diff(ex).inner_text()
    # The last flow of the list: not the one shown (the first).
    label = _options(ex)[-1]
    target = _option_index(label)
    assert str(target) != before
    ex.locator(".wasmkit-flowlist select").select_option(label=label)
    _wait_for_diff(ex, "t.dataset.flow !== arg", before)
    table = _visible_diff(ex)
    assert table.get_attribute("data-flow") == str(target)
    assert _row(table, "x-replayed").locator("td.wk-added").count() >= 1
    # An error flow: the table gains the tagger's cache-control.
    _select_flow(ex, 10)
    table = _visible_diff(ex)
    assert _row(table, "cache-control").locator("td.wk-added").count() >= 1
    assert "no-store" in table.inner_text()
    _select_flow(ex, 0)


def test_filter_expression_shrinks_the_list(explorer):
    ex = explorer
    _click_tab(ex, "wasmkit-tabs", "Flows")
    posts = [i for i, m in enumerate(_methods()) if m == "POST"]
    assert 0 < len(posts) < 17
    box = ex.locator(".wasmkit-filter input")
    box.fill("~m POST")
    box.press("Enter")
    _wait_for_options(ex, len(posts))
    assert [_option_index(o) for o in _options(ex)] == posts
    # The tables show a flow of the list.
    _wait_for_diff(ex, "arg.includes(Number(t.dataset.flow))", posts)
    box.fill("")
    box.press("Enter")
    _wait_for_options(ex, 17)
    _select_flow(ex, 0)


def test_show_unchanged_adds_the_unchanged_fields(explorer):
    ex = explorer
    _click_tab(ex, "wasmkit-tabs", "Flows")
    _click_tab(ex, "wasmkit-flow-tabs", "Response headers")
    table = _visible_diff(ex)
    assert table.locator("td.wk-unchanged").count() == 0
    rows = table.locator("tbody tr").count()
    checkbox = ex.locator(".wasmkit-unchanged input[type=checkbox]")
    checkbox.check()
    _wait_for_diff(ex, "t.querySelector('td.wk-unchanged') !== null")
    table = _visible_diff(ex)
    assert table.locator("tbody tr").count() > rows
    # content-type went through untouched; unchanged fields are not coloured
    # like changes.
    assert _row(table, "content-type").locator("td.wk-unchanged").count() >= 1
    colour = _rgb(table.locator("td.wk-unchanged").first)
    assert not (_is_green(colour) or _is_red(colour) or _is_yellow(colour)), colour
    checkbox.uncheck()
    _wait_for_diff(ex, "t.querySelector('td.wk-unchanged') === null")
