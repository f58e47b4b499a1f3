"""Tables: nullable dtypes, coloured Stylers readable in light and dark, no MathJax.

Replays of the sample capture through filters compiled by wasmtime from WAT.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import wasmkit
from wasmkit.diff import frames
from wasmkit.notebook import tables
from wasmkit.notebook.explorer import ReplayExplorer
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "samples" / "captures" / "api.flow"


# Requests: a header added, user-agent removed; non-empty responses: the body
# becomes other JSON (a "$" in its values), so body diffs
# list "$.id" and friends.
def _rewrite(header: str) -> str:
    return filter_wat(
        """
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_add_header_map_value (i32.const 0)
            (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
          (drop (call $proxy_remove_header_map_value (i32.const 0)
            (global.get $s_ua) (global.get $s_ua_len)))
          (i32.const 0))
        (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
          ;; Held until its end (Envoy's HTTP/1 codec ends it with an empty frame),
          ;; then the whole body is replaced.
          (if (i32.eqz (local.get 2)) (then (return (i32.const 1))))
          (if (i32.gt_u (local.get 1) (i32.const 0)) (then
            (drop (call $proxy_set_buffer_bytes (i32.const 1) (i32.const 0) (local.get 1)
              (global.get $s_body) (global.get $s_body_len)))))
          (i32.const 0))
        """,
        strings={
            "k": header,
            "v": "yes",
            "ua": "user-agent",
            "body": '{"id": "$2$", "note": "two lines"}',
        },
    )


REWRITE = _rewrite("x-replayed")
OTHER = _rewrite("x-other")


@pytest.fixture(scope="module")
def result():
    return replay(REWRITE, FLOW)


def _nullable(frame: pd.DataFrame) -> None:
    for column, dtype in frame.dtypes.items():
        assert isinstance(dtype, pd.api.extensions.ExtensionDtype), (column, dtype)
        assert str(dtype) in ("Int64", "Float64", "boolean", "string"), (column, dtype)


def test_every_frame_has_nullable_dtypes(result):
    summary = result.summary()
    _nullable(summary)
    assert str(summary["status_before"].dtype) == "Int64"
    assert str(summary["body_changed"].dtype) == "boolean"
    assert str(summary["us"].dtype) == "Float64"
    assert summary["error"].isna().all() and summary["error"].iloc[0] is pd.NA
    _nullable(result.header_diff())
    _nullable(result.header_diff(unchanged=True))
    bodies = result.body_diff()
    _nullable(bodies)
    assert len(bodies) > 0
    comparison = wasmkit.compare(REWRITE, OTHER, FLOW, limit=4)
    _nullable(comparison.frame())
    assert comparison.frame()["differs"].all()


def test_frames_keep_their_style_when_sliced(result):
    headers = result.header_diff()
    added = headers[headers["change"] == "added"]
    assert isinstance(added, frames.ReplayFrame)
    classes = set(
        re.findall(r'<td [^>]*class="data [^"]* (wk-\w+)"', added.style.to_html())
    )
    assert classes == {"wk-added"}


def test_header_diff_style_is_coloured_by_change(result):
    html = result.header_diff().style.to_html()
    assert "wk-added" in html and "wk-removed" in html
    for variable in ("--jp-success-color1", "--jp-error-color1"):
        assert f"var({variable}" in html
    assert "var(--jp-content-font-color1" in html  # the theme's text colour
    assert 'class="wasmkit-frame tex2jax_ignore mathjax_ignore"' in html


def test_body_diff_never_meets_mathjax_and_breaks_lines(result):
    bodies = result.body_diff()
    diff = bodies["diff"].iloc[0]
    assert "$.id" in diff and "\n" in diff
    for html in (bodies.style.to_html(), bodies._repr_html_()):
        table = re.search(r"<table[^>]*>", html)
        assert table and "tex2jax_ignore mathjax_ignore" in table.group(0)
        cells = re.findall(r'<td id="T_\w+_row0_col5"[^>]*>(.*?)</td>', html, re.S)
        assert cells, html[:300]
        cell = cells[0]
        assert "$.id" in cell and "\n" not in cell and "<br>" in cell
        # "+" / "-" / "~" lines are tinted by kind
        assert "<span style=" in cell


def _rgb(text: str) -> tuple[float, float, float, float]:
    r, g, b, a = (float(x) for x in text.split(","))
    return r, g, b, a


def _over(top: tuple[float, float, float, float], under: tuple[float, float, float]):
    r, g, b, a = top
    return tuple(a * c + (1 - a) * u for c, u in zip((r, g, b), under, strict=True))


def _luminance(rgb) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(x, y) -> float:
    a, b = sorted((_luminance(x), _luminance(y)), reverse=True)
    return (a + 0.05) / (b + 0.05)


# JupyterLab's light and dark themes: --jp-layout-color0 and
# --jp-content-font-color1 (rgba(0,0,0,.87) / rgba(255,255,255,1)).
THEMES = {
    "light": ((255, 255, 255), (0, 0, 0, 0.87)),
    "dark": ((17, 17, 17), (255, 255, 255, 1.0)),
}


@pytest.mark.parametrize("theme", list(THEMES))
def test_row_tints_keep_text_readable_in_light_and_dark(result, theme):
    background, text = THEMES[theme]
    html = result.summary().style.to_html() + result.header_diff().style.to_html()
    tints = set(re.findall(r"background-color: rgba\(([^)]*)\)", html))
    assert len(tints) >= 3  # added, removed, modified ...
    for tint in tints:
        cell = _over(_rgb(tint), background)
        shown = _over(text, cell)
        assert _contrast(shown, cell) >= 4.5, (theme, tint)


def test_summary_style_marks_modified_local_reply_and_failed(result):
    html = result.summary().style.to_html()
    assert "wk-modified" in html
    assert "td.wk-failed" in html and "td.wk-local-reply" in html  # styles exist


def test_the_summary_tab_is_compact_with_every_column_behind_a_toggle(result):
    explorer = ReplayExplorer(result)
    page = explorer.pages["Summary"]
    compact, toggle, full = page.partition('<details class="wasmkit-summary-toggle">')
    assert toggle, page[:300]
    heads = re.findall(r'class="col_heading[^"]*" >([^<]*)</th>', compact)
    assert heads == list(tables.COMPACT_COLUMNS)
    every = re.findall(r'class="col_heading[^"]*" >([^<]*)</th>', full)
    assert every == frames.SUMMARY_COLUMNS
    assert f"All {len(frames.SUMMARY_COLUMNS)} columns</summary>" in full
    # the changes in words, the status as before → after
    row = result.summary_rows[0]
    assert tables.compact_rows([row])[0]["changes"] == "request +1 -1, body"
    assert f"{row['status_before']} → {row['status_after']}" in compact
    # words are not broken mid-token; the table scrolls sideways instead
    assert "break-all" not in compact
    scroll = '<div style="overflow:auto;max-height:36em"><div class="tex2jax_ignore'
    assert compact.startswith(scroll) and scroll in full


def test_static_html_is_kept_from_mathjax(result):
    assert (
        'class="wasmkit-replay tex2jax_ignore mathjax_ignore"' in result._repr_html_()
    )
    comparison = wasmkit.compare(REWRITE, OTHER, FLOW, limit=2)
    assert "wasmkit-compare-summary tex2jax_ignore mathjax_ignore" in (
        comparison._repr_html_()
    )
    flow = result.flows[0]
    body = tables.body_table(flow.index, [("response", None)])
    assert "tex2jax_ignore" in body


def test_widget_text_is_kept_from_mathjax_too(result):
    from wasmkit.notebook.compare_view import CompareView

    quiet = '<div class="tex2jax_ignore mathjax_ignore">'
    explorer = ReplayExplorer(result)
    assert explorer.status.startswith(quiet)
    for title in ("Request headers", "Response headers"):
        assert explorer.detail["panes"][title].startswith(quiet)
    # The front end sets the title, notes and body views as text, inside a
    # root that MathJax skips.
    assert 'el.classList.add("wasmkit-explorer", ...NO_MATHJAX)' in explorer._esm
    view = CompareView(wasmkit.compare(REWRITE, OTHER, FLOW, limit=2))
    assert view.status.startswith(quiet)
    assert all(pane.startswith(quiet) for pane in view.detail["panes"].values())
    assert 'el.classList.add("wasmkit-compare", "wk-root", ...NO_MATHJAX)' in view._esm
