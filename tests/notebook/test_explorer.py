"""The replay explorer: built from a real replay of the sample capture, traits checked."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import anywidget
import pytest

from wasmkit.notebook import flow_detail, formatters, tables
from wasmkit.notebook.explorer import FLOW_TABS, TABS, ReplayExplorer
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

from .flows import write_flows

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
      ;; Held until its end (Envoy's HTTP/1 codec ends it with an empty frame),
      ;; then the whole body is replaced.
      (if (i32.eqz (local.get 2)) (then (return (i32.const 1))))
      (if (i32.gt_u (local.get 1) (i32.const 0)) (then
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


# Adds x-replayed to every response: the many-flow capture's filter.
TAGGER = filter_wat(
    """
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 2)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    """,
    strings={"k": "x-replayed", "v": "yes"},
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
    return explorer.order


def _flow_attr(html):
    return set(re.findall(r'data-flow="(\d+)"', html))


def _panes(explorer):
    return explorer.detail["panes"]


def test_the_replay_has_every_kind_of_flow(result):
    actions = {row["action"] for row in result.summary_rows}
    assert {"failed", "local reply", "forwarded"} <= actions


def test_it_is_an_anywidget_with_its_front_end_and_dom_class(explorer):
    assert isinstance(explorer, anywidget.AnyWidget)
    assert "wasmkit-explorer" in explorer._dom_classes
    assert "export default" in explorer._esm and "wasmkit-flowtable" in explorer._esm
    assert "--jp-" in explorer._css
    # Colours come from the theme's variables only: no literal colour anywhere.
    assert not re.search(r"#[0-9a-fA-F]{3,6}\b|rgba?\(", explorer._css)
    assert list(explorer.tabs) == list(TABS)
    assert list(TABS) == [
        "Flows",
        "Summary",
        "Resources",
        "Logs",
        "Metrics",
        "Callouts",
    ]
    assert explorer.tab == "Flows"
    assert list(explorer.show_options) == ["All", "Modified", "Errors", "Local reply"]
    assert list(explorer.flow_tabs) == list(FLOW_TABS)
    assert explorer.unchanged is False
    keys = [c["key"] for c in explorer.columns]
    assert keys == [
        "index", "method", "host", "path", "status", "action", "request",
        "response", "body", "us", "error",
    ]  # fmt: skip


def test_the_state_is_plain_json(explorer):
    state = explorer.get_state()
    json.dumps({k: v for k, v in state.items() if k != "layout"})


def test_status_line_and_legend(explorer, result):
    status = explorer.status
    assert "17 flows" in status
    failed = len(result.failed)
    counts = " · ".join(result.totals.describe().split(", "))
    assert f"{failed} failed" in status and counts in status and " ms " in status
    for word, variable in (
        ("added", "--jp-success-color1"),
        ("removed", "--jp-error-color1"),
        ("changed", "--jp-warn-color1"),
    ):
        assert f'class="wk-{word}"' in status and variable in status


def test_rows_and_first_flow_selected(explorer, result):
    assert explorer.count == explorer.total == 17
    rows = explorer.window
    assert [r["index"] for r in rows] == list(range(17))
    assert [r["position"] for r in rows] == list(range(17))
    first = rows[0]
    assert first["method"] == "GET" and first["path"] == "/api/items/1"
    assert first["status"] == "200 → 200" and first["request"] == "+1"
    # /missing: captured 404, the filter answered 403 (the upstream not asked).
    assert rows[10]["status"] == "404 → 403" and rows[10]["tag"] == "local-reply"
    assert rows[10]["label"].endswith("404→403  local reply")
    failed = {f.index for f in result.failed}
    assert {r["index"] for r in rows if r["tag"] == "failed"} == failed
    assert all(r["error"].startswith("trap: ") for r in rows if r["tag"] == "failed")
    assert explorer.selected == 0 and explorer.position == 0
    assert explorer.detail["index"] == 0
    assert _flow_attr(_panes(explorer)["Request headers"]) == {"0"}


def test_panes_are_built_for_the_selected_flow_only(explorer):
    before = dict(_panes(explorer))
    explorer.selected = 2
    after = _panes(explorer)
    assert all(after[k] != before[k] for k in before)
    for html in after.values():
        assert _flow_attr(html) == {"2"}
    assert explorer.detail["title"].startswith("#2  PUT")
    assert explorer.position == 2


def test_header_diff_tables_are_tinted_with_a_change_column(explorer):
    request, response = (
        _panes(explorer)["Request headers"],
        _panes(explorer)["Response headers"],
    )
    assert (
        '<table id="T_' in request and 'class="wasmkit-diff" data-flow="0"' in request
    )
    row = re.search(r"<tr>\s*(<td[^>]*>added</td>.*?)</tr>", request, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*class=\"([^\"]*)\"", row.group(1))
    assert len(cells) == 4 and all("wk-added" in c for c in cells)
    assert "x-replayed" in row.group(1)
    assert "wk-changed" in response and "text/x-wasmkit" in response
    assert "wk-removed" in response and ">date<" in response
    table_id = re.search(r'<table id="(T_\w+)"', response).group(1)
    for kind, variable in (
        ("added", "--jp-success-color1"),
        ("removed", "--jp-error-color1"),
        ("changed", "--jp-warn-color1"),
    ):
        assert re.search(
            rf"#{table_id}\s+td\.wk-{kind}\s*{{[^}}]*color-mix\(in srgb, var\({variable}",
            response,
        )


def test_show_unchanged_adds_the_unchanged_rows(explorer):
    hidden = _panes(explorer)["Request headers"]
    assert "wk-unchanged" not in hidden and "unchanged fields hidden" in hidden
    explorer.unchanged = True
    shown = _panes(explorer)["Request headers"]
    assert shown.count("wk-unchanged") > 0 and ":method" in shown
    assert shown.count("<tr>") > hidden.count("<tr>")
    explorer.unchanged = False
    assert _panes(explorer)["Request headers"].count("wk-unchanged") == 0


def test_filter_expression_narrows_the_table(explorer, result):
    explorer.filter_text = "~m POST"
    posts = [
        f.index
        for f in result.flows
        if f.result.request_before.get(b":method") == b"POST"
    ]
    assert _indices(explorer) == posts and explorer.count == len(posts)
    assert [r["index"] for r in explorer.window] == posts
    assert explorer.selected == posts[0] and explorer.position == 0
    assert f"{len(posts)} flows match" in explorer.filter_message
    explorer.filter_text = "!~m GET"
    assert set(_indices(explorer)) >= set(posts) and 0 not in _indices(explorer)
    explorer.filter_text = "~c 404"
    assert _indices(explorer) == [10]  # /missing as captured (the filter made it 403)
    explorer.filter_text = "~c 403"  # after the filter: its local replies
    assert _indices(explorer) and all(
        result.flows[i].result.local_reply is not None for i in _indices(explorer)
    )
    explorer.filter_text = "~h x-replayed"  # added by the filter
    assert 0 in _indices(explorer)
    explorer.filter_text = "~d nowhere.invalid"
    assert _indices(explorer) == [] and explorer.selected == -1
    assert explorer.window == [] and explorer.count == 0
    assert explorer.detail["title"] == "No flow matches."
    explorer.filter_text = ""
    assert len(_indices(explorer)) == 17


def test_invalid_expression_shows_a_message_not_a_traceback(explorer):
    explorer.filter_text = "~m POST"
    posts = _indices(explorer)
    explorer.filter_text = "~m ("
    assert explorer.filter_invalid
    assert "Invalid filter expression" in explorer.filter_message
    assert "Traceback" not in explorer.filter_message
    assert _indices(explorer) == posts  # the last valid filter's flows stay
    explorer.filter_text = "~c abc"
    assert "Invalid filter expression" in explorer.filter_message
    explorer.filter_text = "~m GET"
    assert not explorer.filter_invalid


def test_switch_modes(explorer, result):
    rows = {r["index"]: r for r in result.summary_rows}
    explorer.show = "Errors"
    assert _indices(explorer) == [f.index for f in result.failed]
    assert explorer.selected == result.failed[0].index
    explorer.show = "Local reply"
    replies = _indices(explorer)
    assert replies and all(rows[i]["local_reply"] == 403 for i in replies)
    explorer.show = "Modified"
    assert set(_indices(explorer)) >= set(replies)
    explorer.show = "All"
    assert len(_indices(explorer)) == 17
    explorer.filter_text = "~m GET"
    explorer.show = "Local reply"
    assert all(rows[i]["method"] == "GET" for i in _indices(explorer))


def test_selection_survives_a_narrowing_that_keeps_it(explorer):
    explorer.selected = 4
    explorer.filter_text = "~m POST"
    assert explorer.selected == 4 and explorer.position == _indices(explorer).index(4)


def test_sorting_by_any_column(explorer, result):
    micros = {f.index: round(f.micros, 1) for f in result.flows}
    explorer.sort_by = "us"
    assert _indices(explorer) == sorted(micros, key=lambda i: (micros[i], i))
    explorer.sort_desc = True
    shown = [r["us"] for r in explorer.window]
    assert shown == sorted(shown, reverse=True)
    # The selection stays and its row follows it.
    assert explorer.selected == 0
    assert explorer.position == _indices(explorer).index(0)
    for key in [c["key"] for c in explorer.columns]:
        explorer.sort_by = key
        assert sorted(_indices(explorer)) == list(range(17)), key
    explorer.sort_by = "status"
    explorer.sort_desc = False
    statuses = [
        result.summary_rows[i]["status_after"] or -1 for i in _indices(explorer)
    ]
    assert statuses == sorted(statuses)
    explorer.sort_by = "index"
    assert _indices(explorer) == list(range(17))


def test_move_is_what_the_keys_do(explorer):
    explorer.move(1)
    assert explorer.selected == 1 and explorer.detail["index"] == 1
    explorer.move(-5)
    assert explorer.selected == 0
    explorer.move(to=-1)
    assert explorer.selected == 16 and explorer.position == 16
    explorer.move(3)
    assert explorer.selected == 16
    explorer._handle_custom_msg({"type": "move", "delta": -2}, [])
    assert explorer.selected == 14
    explorer._handle_custom_msg({"type": "move", "to": 0}, [])
    assert explorer.selected == 0
    explorer.sort_desc = True  # moves follow the table's order: 0 is last now
    assert explorer.position == 16
    explorer.move(-1)
    assert explorer.selected == 1


def test_body_views_diff_text_json_hex(explorer, result):
    bodies = {b["side"]: b for b in explorer.detail["bodies"]}
    response = bodies["response"]
    captured = result.flows[0].result.response_before.body
    assert response["kind"] in ("json", "same")
    assert response["before"]["bytes"] == len(captured)
    assert response["before"]["text"] == captured.decode()
    pretty = response["before"]["json"]
    assert pretty.startswith("{\n  ") and json.loads(pretty) == json.loads(captured)
    assert response["before"]["hex"].startswith("00000000  7b 22 69 64 22")
    assert response["before"]["hex"].splitlines()[0].endswith('|{"id":1,"name":"|')
    assert bodies["request"]["before"]["json"] is None  # an empty GET body
    # A changed body: its diff is the one body_diff() has.
    changed = result.body_rows()[0]
    explorer.selected = changed["flow"]
    body = {b["side"]: b for b in explorer.detail["bodies"]}[changed["side"]]
    assert body["changed"] and body["diff"] == changed["diff"]
    assert body["after"]["bytes"] == changed["size_after"]


def test_hexdump_and_pretty_json():
    assert flow_detail.hexdump(b"ab\x00") == "00000000  61 62 00" + " " * 39 + "  |ab.|"
    long = flow_detail.hexdump(bytes(5000))
    assert long.endswith("… first 4,096 of 5,000 bytes")
    assert len(long.splitlines()) == 4096 // 16 + 1
    assert flow_detail.pretty_json(b'{"a":[1]}') == '{\n  "a": [\n    1\n  ]\n}'
    assert flow_detail.pretty_json(b"not json") is None
    assert flow_detail.pretty_json(b"") is None


def test_logs_and_trace_panes(explorer):
    logs = _panes(explorer)["Logs"]
    assert 'class="wasmkit-logs" data-flow="0"' in logs and "seen" in logs
    trace = _panes(explorer)["Trace"]
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


def test_a_failed_flow_has_its_error_and_backtrace_frames(explorer, result):
    failed = result.failed[0]
    explorer.selected = failed.index
    detail = explorer.detail
    assert detail["failed"]
    assert any("filter failed (trap)" in n for n in detail["notes"])
    error = detail["error"]
    assert error["kind"] == "trap" and error["callback"] == "proxy_on_request_headers"
    assert error["trap_code"] == "UNREACHABLE"
    assert error["frames"] == failed.result.error.wasm_backtrace
    assert error["frames"] and error["frames"][0].startswith("#0 ")
    assert len(error["message"]) > 1  # lines, not one reflowed paragraph
    explorer.selected = 0
    assert explorer.detail["error"] is None


def test_copy_as_curl_before_and_after_the_filter(explorer, result):
    curl = explorer.detail["curl"]
    host = result.summary_rows[0]["host"]
    assert shlex.split(curl["before"])[:2] == ["curl", f"http://{host}/api/items/1"]
    words = shlex.split(curl["after"])
    assert "x-replayed: yes" in words and "x-replayed: yes" not in shlex.split(
        curl["before"]
    )
    # A local reply on the request path: the request still went nowhere new,
    # yet the filter's version is what it held.
    explorer.selected = 10
    assert explorer.detail["curl"]["before"].startswith("curl ")


def test_the_table_gets_only_a_window_of_rows(tmp_path):
    from wasmkit.notebook import explorer as explorer_module

    capture = tmp_path / "many.flow"
    n = 2500
    write_flows(capture, n)
    result = replay(TAGGER, capture)
    assert len(result.flows) == n
    explorer = ReplayExplorer(result)
    window = explorer_module.WINDOW
    assert explorer.count == n and len(explorer.window) == window
    # What goes to the front end stays small whatever the capture's size.
    state = explorer.get_state()
    sent = len(json.dumps({k: v for k, v in state.items() if k != "layout"}))
    assert sent < 400_000, sent
    explorer.window_start = 2000
    assert [r["position"] for r in explorer.window] == list(range(2000, 2000 + window))
    explorer.move(to=-1)
    assert explorer.position == n - 1
    assert explorer.window[-1]["position"] == n - 1
    assert explorer.window_start <= n - 1 < explorer.window_start + window
    explorer.sort_by = "us"
    explorer.sort_desc = True
    assert explorer.count == n and len(explorer.window) == window
    shown = [r["us"] for r in explorer.window]
    assert shown == sorted(shown, reverse=True)
    explorer.filter_text = "~m POST"
    assert 0 < explorer.count < n
    # The Resources view thins its series to what a plot can show.
    for series in explorer.resources["series"]:
        assert len(series["values"]) <= 600


def test_static_tabs(explorer, result):
    pages = explorer.pages
    compact, _, full = pages["Summary"].partition(
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
    assert "wk-failed" in pages["Summary"] and "wk-modified" in pages["Summary"]
    assert "td.wk-failed" in pages["Summary"]  # tinted by CSS
    assert "wasmkit-logs" in pages["Logs"]
    assert pages["Logs"].count(">seen<") == sum(
        len(f.result.logs) for f in result.flows
    )
    assert "wasmkit-metrics" in pages["Metrics"]
    assert "wasmkit-callouts" in pages["Callouts"]
    assert "no HTTP callouts" in pages["Callouts"]


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
