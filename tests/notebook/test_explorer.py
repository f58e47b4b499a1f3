"""The replay explorer: built from a real replay of the sample capture, traits checked."""

from __future__ import annotations

import re
from pathlib import Path

import ipywidgets as widgets
import pytest

from wasmkit.notebook import formatters, tables
from wasmkit.notebook.explorer import FLOW_TABS, TABS, ReplayExplorer
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "samples" / "captures" / "api.flow"

# Per request, by the length of :path: 5 bytes (/form, /gzip, ...) traps;
# 8 bytes (/missing, /chunked) gets a local 403; the rest gets x-replayed.
# Every request logs "seen". Responses: content-type replaced, date removed,
# a non-empty body replaced by {"x": 1}.
MIXED = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (local $len i32)
      (drop (call $proxy_log (i32.const 2) (global.get $s_seen) (global.get $s_seen_len)))
      (drop (call $proxy_get_header_map_value (i32.const 0)
        (global.get $s_path) (global.get $s_path_len) (i32.const 512) (i32.const 516)))
      (local.set $len (i32.load (i32.const 516)))
      (if (i32.eq (local.get $len) (i32.const 5)) (then unreachable))
      (if (i32.eq (local.get $len) (i32.const 8)) (then
        (drop (call $proxy_send_local_response (i32.const 403)
          (global.get $s_details) (global.get $s_details_len)
          (global.get $s_no) (global.get $s_no_len)
          (global.get $s_headers) (global.get $s_headers_len) (i32.const -1)))
        (return (i32.const 1))))
      (drop (call $proxy_add_header_map_value (i32.const 0)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_replace_header_map_value (i32.const 2)
        (global.get $s_ct) (global.get $s_ct_len) (global.get $s_ctv) (global.get $s_ctv_len)))
      (drop (call $proxy_remove_header_map_value (i32.const 2)
        (global.get $s_date) (global.get $s_date_len)))
      (i32.const 0))
    (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
      (if (i32.and (local.get 2) (i32.gt_u (local.get 1) (i32.const 0))) (then
        (drop (call $proxy_set_buffer_bytes (i32.const 1) (i32.const 0) (local.get 1)
          (global.get $s_body) (global.get $s_body_len)))))
      (i32.const 0))
    """,
    strings={
        "seen": "seen",
        "path": ":path",
        "details": "denied",
        "no": "no",
        "headers": b"\x00\x00\x00\x00",
        "k": "x-replayed",
        "v": "yes",
        "ct": "content-type",
        "ctv": "text/x-wasmkit",
        "date": "date",
        "body": '{"x": 1}',
    },
)


# Each trapping flow gets a new VM on the next flow (Envoy's fail_reload with
# a short backoff), so that one replay has every kind of flow.
RELOADING = {"failure_policy": "fail_reload", "reload_backoff_ms": 2}


@pytest.fixture(scope="module")
def result():
    return replay(MIXED, FLOW, **RELOADING)


@pytest.fixture()
def explorer(result):
    return ReplayExplorer(result)


def _indices(explorer):
    return [value for _, value in explorer.flowlist.options]


def _flow_attr(html):
    return set(re.findall(r'data-flow="(\d+)"', html))


def test_the_replay_has_every_kind_of_flow(result):
    actions = {row["action"] for row in result.summary_rows}
    assert {"failed", "local reply", "forwarded"} <= actions


def test_dom_contract_classes_and_titles(explorer):
    assert isinstance(explorer, widgets.VBox)
    assert "wasmkit-explorer" in explorer._dom_classes
    assert "wasmkit-status" in explorer.status._dom_classes
    assert isinstance(explorer.tabs, widgets.Tab)
    assert "wasmkit-tabs" in explorer.tabs._dom_classes
    assert list(explorer.tabs.titles) == list(TABS)
    assert list(TABS) == ["Summary", "Flows", "Logs", "Metrics", "Callouts"]
    assert isinstance(explorer.filter, widgets.Text)
    assert "wasmkit-filter" in explorer.filter._dom_classes
    assert isinstance(explorer.show_mode, widgets.ToggleButtons)
    assert "wasmkit-show" in explorer.show_mode._dom_classes
    assert list(explorer.show_mode.options) == [
        "All",
        "Modified",
        "Errors",
        "Local reply",
    ]
    assert isinstance(explorer.unchanged, widgets.Checkbox)
    assert "wasmkit-unchanged" in explorer.unchanged._dom_classes
    assert explorer.unchanged.value is False
    assert isinstance(explorer.flowlist, widgets.Select)
    assert "wasmkit-flowlist" in explorer.flowlist._dom_classes
    assert isinstance(explorer.flow_tabs, widgets.Tab)
    assert "wasmkit-flow-tabs" in explorer.flow_tabs._dom_classes
    assert list(explorer.flow_tabs.titles) == list(FLOW_TABS)
    assert list(FLOW_TABS) == [
        "Request headers",
        "Response headers",
        "Body",
        "Logs",
        "Trace",
    ]
    # The widgets are where the tree says.
    flows_page = explorer.tabs.children[1]
    assert explorer.flow_tabs in flows_page.children
    assert explorer.flowlist in flows_page.children
    assert explorer.unchanged in flows_page.children


def test_status_line_and_legend(explorer, result):
    status = explorer.status.value
    assert "17 flows" in status
    failed = len(result.failed)
    counts = " · ".join(result.totals.describe().split(", "))
    assert f"{failed} failed" in status and counts in status and " ms " in status
    for word, colour in (
        ("added", "#d4f7d4"),
        ("removed", "#f9d0d0"),
        ("changed", "#fbf0b8"),
    ):
        assert word in status and colour in status


def test_flow_list_labels_and_first_flow_selected(explorer, result):
    labels = [label for label, _ in explorer.flowlist.options]
    assert len(labels) == 17
    assert all(
        label.startswith(f"#{f.index}")
        for label, f in zip(labels, result.flows, strict=True)
    )
    assert labels[0].startswith("#0  GET ") and "/api/items/1  200→200" in labels[0]
    # /missing: captured 404, the filter answered 403 (the upstream not asked).
    assert (
        labels[10] == "#10  GET " + labels[10].split(" ")[3] + "  404→403  local reply"
    )
    assert explorer.flowlist.value == 0
    assert _flow_attr(explorer.flow_pages[0].value) == {"0"}


def test_per_flow_pages_are_built_for_the_selected_flow_only(explorer):
    before = [page.value for page in explorer.flow_pages]
    explorer.flowlist.value = 2
    after = [page.value for page in explorer.flow_pages]
    assert all(a != b for a, b in zip(before, after, strict=True))
    for page in explorer.flow_pages:
        assert _flow_attr(page.value) == {"2"}
    assert "#2  PUT" in explorer.flow_title.value


def test_header_diff_tables_are_coloured_with_a_change_column(explorer):
    request, response = explorer.flow_pages[0].value, explorer.flow_pages[1].value
    assert (
        '<table id="T_' in request and 'class="wasmkit-diff" data-flow="0"' in request
    )
    # Request: one added field, every cell of its row classed, "added" in words.
    row = re.search(r"<tr>\s*(<td[^>]*>added</td>.*?)</tr>", request, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*class=\"([^\"]*)\"", row.group(1))
    assert len(cells) == 4 and all("wk-added" in c for c in cells)
    assert "x-replayed" in row.group(1)
    # Response: content-type changed, date removed.
    assert "wk-changed" in response and "text/x-wasmkit" in response
    assert "wk-removed" in response and ">date<" in response
    # Real CSS, scoped to the table by the Styler's id.
    table_id = re.search(r'<table id="(T_\w+)"', response).group(1)
    assert re.search(
        rf"#{table_id}\s+td\.wk-added\s*{{\s*background-color: #d4f7d4", response
    )
    assert re.search(
        rf"#{table_id}\s+td\.wk-removed\s*{{\s*background-color: #f9d0d0", response
    )
    assert re.search(
        rf"#{table_id}\s+td\.wk-changed\s*{{\s*background-color: #fbf0b8", response
    )


def test_show_unchanged_adds_the_unchanged_rows(explorer):
    hidden = explorer.flow_pages[0].value
    assert "wk-unchanged" not in hidden and "unchanged fields hidden" in hidden
    explorer.unchanged.value = True
    shown = explorer.flow_pages[0].value
    assert shown.count("wk-unchanged") > 0 and ":method" in shown
    assert shown.count("<tr>") > hidden.count("<tr>")
    assert 'data-flow="0"' in shown
    explorer.unchanged.value = False
    assert explorer.flow_pages[0].value.count("wk-unchanged") == 0


def test_filter_expression_narrows_the_list(explorer, result):
    explorer.filter.value = "~m POST"
    posts = [
        f.index
        for f in result.flows
        if f.result.request_before.get(b":method") == b"POST"
    ]
    assert _indices(explorer) == posts
    assert explorer.flowlist.value == posts[0]
    assert _flow_attr(explorer.flow_pages[0].value) == {str(posts[0])}
    assert f"{len(posts)} flows match" in explorer.filter_message.value
    explorer.filter.value = "!~m GET"
    assert set(_indices(explorer)) >= set(posts) and 0 not in _indices(explorer)
    explorer.filter.value = "~c 404"
    assert _indices(explorer) == [10]  # /missing as captured (the filter made it 403)
    explorer.filter.value = "~c 403"  # after the filter: its local replies
    assert _indices(explorer) and all(
        result.flows[i].result.local_reply is not None for i in _indices(explorer)
    )
    explorer.filter.value = "~h x-replayed"  # added by the filter
    assert 0 in _indices(explorer)
    explorer.filter.value = "~d nowhere.invalid"
    assert _indices(explorer) == [] and explorer.flowlist.value is None
    assert "No flow matches" in explorer.flow_title.value
    explorer.filter.value = ""
    assert len(_indices(explorer)) == 17


def test_invalid_expression_shows_a_message_not_a_traceback(explorer):
    explorer.filter.value = "~m POST"
    posts = _indices(explorer)
    explorer.filter.value = "~m ("
    message = explorer.filter_message.value
    assert "Invalid filter expression" in message and "Traceback" not in message
    assert _indices(explorer) == posts  # the last valid filter's flows stay
    explorer.filter.value = "~c abc"
    assert "Invalid filter expression" in explorer.filter_message.value


def test_toggle_modes(explorer, result):
    rows = {r["index"]: r for r in result.summary_rows}
    explorer.show_mode.value = "Errors"
    assert _indices(explorer) == [f.index for f in result.failed]
    assert explorer.flowlist.value == result.failed[0].index
    explorer.show_mode.value = "Local reply"
    replies = _indices(explorer)
    assert replies and all(rows[i]["local_reply"] == 403 for i in replies)
    explorer.show_mode.value = "Modified"
    assert set(_indices(explorer)) >= set(replies)
    explorer.show_mode.value = "All"
    assert len(_indices(explorer)) == 17
    # The toggle and the expression combine.
    explorer.filter.value = "~m GET"
    explorer.show_mode.value = "Local reply"
    assert all(rows[i]["method"] == "GET" for i in _indices(explorer))


def test_selection_survives_a_narrowing_that_keeps_it(explorer):
    explorer.flowlist.value = 4
    explorer.filter.value = "~m POST"
    assert explorer.flowlist.value == 4


def test_body_tab_shows_the_body_diff_with_sizes(explorer):
    body = explorer.flow_pages[2].value
    assert 'class="wasmkit-diff" data-flow="0"' in body
    assert "response body</b> (json" in body and "→ 8 bytes" in body
    assert "$.x" in body  # the JSON compared structurally
    assert "wk-changed" in body and ">request<" in body


def test_logs_and_trace_tabs(explorer):
    logs = explorer.flow_pages[3].value
    assert 'class="wasmkit-logs" data-flow="0"' in logs and "seen" in logs
    trace = explorer.flow_pages[4].value
    assert 'class="wasmkit-trace" data-flow="0"' in trace
    for word in (
        "callback",
        "hostcall",
        "proxy_on_request_headers",
        "proxy_add_header_map_value",
        "µs",
    ):
        assert word in trace
    assert "x-replayed" in trace  # the host call's arguments


def test_a_failed_flow_says_why(explorer, result):
    failed = result.failed[0]
    explorer.flowlist.value = failed.index
    assert "filter failed (trap)" in explorer.flow_title.value
    assert _flow_attr(explorer.flow_pages[4].value) == {str(failed.index)}


def test_summary_logs_metrics_callouts_tabs(explorer, result):
    summary, _, logs, metrics, callouts = (child for child in explorer.tabs.children)
    # The compact columns first, every column behind the toggle.
    compact, _, full = summary.value.partition(
        '<details class="wasmkit-summary-toggle">'
    )
    assert '<div class="tex2jax_ignore mathjax_ignore"><style' in compact
    assert 'class="wasmkit-summary"' in compact
    assert compact.count("<tr>") == 18  # header + 17 flows
    assert re.findall(r'class="col_heading[^"]*" >([^<]*)</th>', compact) == list(
        tables.COMPACT_COLUMNS
    )
    assert 'class="wasmkit-summary-all"' in full
    assert full.count("<tr>") == 18 and "All 21 columns</summary>" in full
    assert "wk-failed" in summary.value and "wk-modified" in summary.value
    assert "td.wk-failed" in summary.value  # tinted by CSS
    assert "wasmkit-logs" in logs.value
    assert logs.value.count(">seen<") == sum(len(f.result.logs) for f in result.flows)
    assert "wasmkit-metrics" in metrics.value
    assert "wasmkit-callouts" in callouts.value and "no HTTP callouts" in callouts.value


def test_show_returns_the_explorer(result):
    widget = result.show()
    assert isinstance(widget, ReplayExplorer) and widget.result is result


def test_formatter_bundle_has_the_widget_view_and_the_static_summary(result):
    bundle = formatters.bundle(result)
    view = bundle[formatters.WIDGET_MIME]
    assert view["model_id"] and view["version_major"] == 2
    assert bundle["text/html"] == result._repr_html_()
    assert "17 flows" in bundle["text/plain"]


def test_load_ext_registers_the_formatter_outside_a_kernel_it_steps_aside(
    shell, result
):
    formatter = shell.ip.display_formatter.mimebundle_formatter
    assert formatter.lookup(result) is formatters.show_in_kernel
    data, _ = shell.ip.display_formatter.format(result)
    # No kernel here: no widget, the static summary and text instead.
    assert formatters.WIDGET_MIME not in data
    assert "17 flows" in data["text/html"]


def test_in_a_live_kernel_import_wasmkit_shows_widgets_and_progress():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = (
        "import time, wasmkit\n"
        "from wasmkit.replay.run import replay\n"
        "from tests.notebook.test_explorer import MIXED, FLOW, RELOADING\n"
        "r = replay(MIXED, FLOW, on_flow=lambda flow: time.sleep(0.07), "
        "**RELOADING)\n"
        "r"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(code),
        nbformat.v4.new_code_cell("wasmkit.compare(r, r)"),
    ]
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()
    outputs = nb.cells[0].outputs
    streams = [o for o in outputs if o.output_type == "stream"]
    # The progress bar was a widget; one summary line stays, on stdout.
    assert [o.name for o in streams] == ["stdout"]
    assert re.fullmatch(
        r"replayed 17 flows in \d+\.\d s: 17 modified, 2 failed, 3 local reply, 1 no response\n",
        streams[0].text,
    )
    result = next(o for o in outputs if o.output_type == "execute_result")
    assert formatters.WIDGET_MIME in result.data
    assert (
        "17 flows" in result.data["text/html"]
        and "ReplayResult" in result.data["text/plain"]
    )
    compared = nb.cells[1].outputs[0]
    assert (
        formatters.WIDGET_MIME in compared.data
        and "0 differing" in compared.data["text/html"]
    )
