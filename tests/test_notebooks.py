"""Every tutorial notebook runs top to bottom with no edits and shows what it teaches.

Each notebook runs in a fresh kernel of the ``python3`` kernelspec, which
jupyter_client starts with the interpreter running the tests (the venv's), so
``%load_ext wasmkit`` works. After the last cell, a cell of checks runs in the
same kernel: a few facts the notebook's outputs show (the notebooks themselves
carry no asserts). First builds compile (Rust: up to a minute), hence the
generous per-cell timeout.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600

# Expressions evaluated in the notebook's kernel after its last cell; each
# must be true. They name the notebook's own variables.
CHECKS: dict[str, list[str]] = {
    "01-lifecycle.ipynb": [
        "(b'x-hello', b'from wasm') in result.request_after.headers",
    ],
    "02-headers.ipynb": [
        "result.request_after.get(b':path') == b'/v2/items?page=2'",
        "result.request_after.get(b'x-original-path') == b'/items?page=2'",
        "result.request_after.get(b'cookie') is None",
        "result.request_after.get(b'user-agent') == b'wasmkit-tutorial/1'",
        "result.response_after.get(b'server') is None",
        "result.response_after.get(b'cache-control') == b'no-store'",
        "result.response_after.get(b'x-upstream-status') == b'200'",
        "any('invalid configuration' in r.message for r in vm.logs)",
    ],
    "03-bodies.ipynb": [
        # Each body ends in the empty frame of Envoy's HTTP/1 codec.
        "list(body_calls(streamed)['body_size']) == [16, 16, 11, 0, 6, 0]",
        "list(body_calls(buffered)['body_size']) == [16, 32, 43, 43, 6, 6]",
        "list(body_calls(rewritten)['body_size']) == [20, 40, 60, 67, 67]",
        "json.loads(rewritten.response_after.body)"
        " == {'id': 7, 'name': 'widget', 'price': 9.5, 'served_by': 'wasm'}",
        "rewritten.response_after.get(b'content-length') is None",
        "kept.response_after.get(b'content-length') == b'67'",
        "len(kept.response_after.body) == 55",
    ],
    "04-local-replies.ipynb": [
        "record['local_reply']['status'] == 403",
        "record['local_reply']['details'] == 'gate_denied'",
        "record['response']['status'] == {'before': None, 'after': 403}",
        "record['request']['forwarded'] is False",
        "[row['client status'] for row in rows] == [403, 403, 200, 502, 200]",
        "[row['upstream asked'] for row in rows] == [0, 0, 1, 1, 0]",
        "results['gRPC, no token'].response_after.get(b'grpc-status') == b'7'",
        "results['right token'].request_after.get(b'authorization') is None",
    ],
    "05-http-callouts.ipynb": [
        "[s['request went upstream'] for s in steps] == [False, False, True, True]",
        "alice.request_after.get(b'x-user') == b'alice'",
        "[row['callout'] for row in rows]"
        " == ['response', 'response', 'timeout', 'failure']",
        "[row['client status'] for row in rows] == [200, 403, 503, 503]",
        "[row['waited (ms)'] for row in rows] == [40.0, 15.0, 300.0, 10.0]",
    ],
    "06-ticks-shared-data-metrics.ipynb": [
        "[r.message for r in vm.logs].count('solo: tick, 1 hits so far') == 3",
        "b.response_after.get(b'x-hit') == b'4'",
        "a.response_after.get(b'x-hit') == b'5'",
        "proxy.shared.items('demo') == {'hits': b'5'}",
        "sum('report received' in r.message for r in w1.vm.logs) == 2",
        "[m['samples'] for m in w1.vm.metrics.table() if m['type'] == 'histogram']"
        " == [[1, 1, 2]]",
    ],
    "07-rust-and-go.ipynb": [
        "all(all(v for k, v in row.items() if k.startswith('same')) for row in rows)",
        "[row['rust status'] for row in rows] == [200, 403, 403, 200, 200]",
        "len(comparison) == 17 and comparison.differing == []",
    ],
    "08-replay-a-capture.ipynb": [
        "len(summary) == 17",
        "len(result.body_diff()) == 8",
        "set(result.header_diff()['name']) == {'content-length'}",
        "len(gzip_flow.body_diff()) == 1",
        "list(errors.summary()['index']) == [10, 11]",
        "set(errors.header_diff()['name'])"
        " == {'server', 'date', 'x-replayed', 'cache-control'}",
        "list(posts.summary()['index']) == [1, 4, 5]",
        "len(tagged.summary()) == 17",
        # One explorer shows every kind of change: flow 0 has all three.
        "tagged.header_diff().query('flow == 0').set_index('name')['change'].to_dict()"
        " == {'server': 'changed', 'date': 'removed', 'x-replayed': 'added'}",
        "set(tagged.header_diff().query('change == \"changed\"')['after'])"
        " == {'tutorial-08'}",
        "(tagged.header_diff()['name'] == 'x-replayed').sum() == 17",
        "sorted(files['file'])"
        " == ['records.json', 'report.html', 'rewritten.flow', 'rewritten.har']",
        'b\'"via":"wasmkit"\' in back[0].response.body',
        "two.parts == [(0, range(9)), (1, range(9, 17))] and same",
        # Checked against a real Envoy: every exchange, nothing unexplained.
        "len(checked) == 17 and replayed.envoy_comparison is checked",
        "checked.envoy.runtime == 'envoy' and len(checked.envoy) == 17",
        "checked.unexplained == [] and checked.identical",
    ],
    "09-comparing-filters.ipynb": [
        "[f.index for f in comparison.differing] == [10, 15]",
        "len(by_config.differing) == 6",
        "len(wasmkit.compare(old, new).differing) == 2",
    ],
    "10-waf.ipynb": [
        "[f.index for f in result.flows if f.result.local_reply]"
        " == [5, 6, 7, 8, 9, 10]",
        "list(summary['status_after'][:5]) == list(summary['status_before'][:5])",
        "set(reasons['status']) == {403}",
        "set(reasons['details']) == {'waf_rule_949110'}",
        "reasons.set_index('index').loc[5, 'detected by'].startswith('941100 ')",
        "reasons.set_index('index').loc[10, 'detected by'].startswith('942100 ')",
        "any('ARGS_GET:q' in r.message for r in result.flows[5].result.logs)",
        "chunked.flows[0].result.local_reply.status == 403",
        "[f.index for f in lenient_result.flows if f.result.local_reply] == [5, 7, 8]",
        "not any(f.result.local_reply for f in detect_result.flows)",
        "detect_result.summary()['logs'][5:].min() > 0",
    ],
    "11-unit-testing.ipynb": [
        "paused.action == 'StopAllIterationAndWatermark'",
        "http.request_headers['x-auth-checked'] == 'yes'",
        "failing.callouts[0].outcome == 'inline_reply'",
        "r.logs.error"
        " == ['Attempted call to restricted proxy-wasm capability: proxy_http_call']",
        "logged.called and not skipped.called",
        # The test files it writes run: unit tests, then the snapshot round trip.
        "unit.returncode == 0 and '2 passed' in unit.stdout",
        "first.returncode == 0",
        "second.returncode == 1 and '\"add_headers: added 1 response headers\"'"
        " ' -> \"add_headers: set 1 response headers\"' in second.stdout",
        "updated.returncode == 0 and third.returncode == 0",
    ],
}


def _check_cell(name: str) -> nbformat.NotebookNode:
    lines = [f"assert {expr}, {expr!r}" for expr in CHECKS.get(name, [])]
    return nbformat.v4.new_code_cell("\n".join(lines) or "pass")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    nb.cells.append(_check_cell(path.name))
    # Raises CellExecutionError, naming the cell, at the first error (a failed
    # check included).
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3").execute(
        cwd=str(path.parent)
    )
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert errors == []
    assert any(cell.get("outputs") for cell in code_cells)


def test_every_notebook_has_checks() -> None:
    # A new notebook gets a CHECKS entry: what its outputs must show.
    assert sorted(CHECKS) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count)
    ]
    assert dirty == [], f"{path.name}: clear the outputs of cells {dirty}"
