"""Names: %%wasm filters in compare, labelled sides, filter cards, panics at cell lines.

Cells are built by the real compilers (Go and Rust) in a real IPython shell.
"""

from __future__ import annotations

import re

import wasmkit
from tests.notebook.test_magics import FLOW, GO_CELL
from wasmkit.notebook.compare_view import CompareView
from wasmkit.replay.compare import Comparison
from wasmkit.testing import filter_wat

GO_CELL_NO = GO_CELL.replace('"x-wasmkit", "cell"', '"x-wasmkit", "other"')
assert GO_CELL_NO != GO_CELL

GO_PANIC = GO_CELL.replace(
    '\t_ = proxywasm.AddHttpRequestHeader("x-wasmkit", "cell")\n',
    '\tvar counts map[string]int\n\tcounts["boom"] = 1 // PANIC HERE\n',
)
assert "PANIC HERE" in GO_PANIC

RUST_PANIC = """\
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream;

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        panic!("boom in the cell"); // PANIC HERE
    }
}
"""
AS_ABORT = """\
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, FilterHeadersStatusValues, registerRootContext,
} from "@solo-io/proxy-runtime";

class Root extends RootContext {
  createContext(context_id: u32): Context {
    return new Boom(context_id, this);
  }
}

class Boom extends Context {
  constructor(context_id: u32, root_context: Root) {
    super(context_id, root_context);
  }
  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    throw new Error("boom in the cell"); // PANIC HERE
  }
}

registerRootContext((context_id: u32): RootContext => new Root(context_id), "boom");
"""
ADD_WAT = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-wasmkit", "v": "cell"},
)


def _cell_line(cell: str) -> int:
    # The notebook's numbering: the %%wasm line is 1.
    return (
        cell.splitlines().index(
            next(line for line in cell.splitlines() if "PANIC HERE" in line)
        )
        + 1
    )


def test_compare_takes_wasm_filters_and_names_the_sides(shell):
    shell.run("%%wasm old --lang go --config '{}'\n" + GO_CELL)
    shell.run("%%wasm new --lang go --config '{}'\n" + GO_CELL_NO)
    old, new = shell.user_ns["old"], shell.user_ns["new"]
    result = wasmkit.compare(old, new, FLOW)
    assert isinstance(result, Comparison)
    assert result.names == ("old", "new")
    assert result.a.filter == "old (go)" and result.b.filter == "new (go)"
    assert len(result.flows) == 17
    # Every flow reached the filter; each request differs in x-wasmkit only.
    assert result.differing and all(
        f.fields == ["request headers"] for f in result.differing
    )
    row = result.differing[0].row()
    assert row["fields"] == "request headers"
    assert row["request_headers"] == "~ x-wasmkit: cell -> other"
    # The views: labels, repr, static HTML, the plain table.
    view = CompareView(result)
    label = view.window[0]["label"]
    assert re.search(
        r"  old \d+ forwarded \| new \d+ forwarded  differs: request headers$", label
    )
    assert "<b>old</b>" in view.status and "<b>new</b>" in view.status
    assert "only in new" in view.status
    assert [c["title"] for c in view.columns][5:7] == ["old", "new"]
    panes = "".join(view.detail["panes"].values())
    assert ">old</th>" in panes and ">new</th>" in panes
    assert repr(result).startswith("<Comparison 'old' vs 'new': 17 flows")
    assert "<b>old</b> (old (go))" in result._repr_html_()
    text = result.text()
    assert text.splitlines()[0].split()[:5] == ["#", "method", "path", "old", "new"]
    assert text.splitlines()[-1].startswith(
        f"17 flows compared, {len(result.differing)} differ: old = old (go), new = "
    )


def test_compare_takes_a_wasm_filter_against_a_path(shell, tmp_path):
    shell.run("%%wasm old --lang go --config '{}'\n" + GO_CELL)
    wat = tmp_path / "same.wat"
    wat.write_text(ADD_WAT)
    result = shell.run(
        f"import wasmkit\nwasmkit.compare(old, {str(wat)!r}, {str(FLOW)!r})"
    )
    assert isinstance(result, Comparison)
    assert result.names == ("old", "same.wat")
    # The WAT filter adds the same header: nothing differs.
    assert result.differing == [] and len(result.flows) == 17
    # The filter's own configuration unless another is given.
    assert result.a.inputs is not None and result.a.inputs["config"] == b"{}"


def test_artifacts_and_one_filter_twice_are_a_and_b(shell):
    shell.run("%%wasm old --lang go --config '{}'\n" + GO_CELL)
    old = shell.user_ns["old"]
    by_artifact = wasmkit.compare(old.artifact, old.artifact, FLOW, limit=3)
    assert by_artifact.names == ("a", "b")  # not the cache paths
    twice = wasmkit.compare(old, old, FLOW, limit=3, config_b="{}")
    assert twice.names == ("old (a)", "old (b)")
    named = wasmkit.compare(old, old, FLOW, limit=3, names=("mine", "theirs"))
    assert named.names == ("mine", "theirs")
    results = wasmkit.compare(old.replay(FLOW, limit=3), old.replay(FLOW, limit=3))
    assert results.names == ("a", "b") and results.differing == []


def test_filter_card_is_titled_with_the_cell_name(shell):
    shell.run("%%wasm my_header_filter --lang go --config '{}'\n" + GO_CELL)
    card = shell.user_ns["my_header_filter"]
    page = card._repr_html_()
    title = re.search(r"<p><b>([^<]+)</b> · wasmkit filter \(([^)]*)\)", page)
    assert title and title.group(1) == "my_header_filter"
    assert f"go, ABI {card.abi_version}" in title.group(2)
    for row in ("language", "ABI version", "size", "build time", "load time",
                "cache hits", "module"):  # fmt: skip
        assert f">{row}</th>" in page
    assert re.search(r">build cache: (yes|no), module cache: (yes|no)", page)
    # The module's long path wraps inside the card instead of overflowing it.
    module = re.search(r"<td style='([^']*)'><code>([^<]*)</code>", page)
    assert module and module.group(2) == str(card.artifact.path)
    assert "overflow-wrap:anywhere" in module.group(1)
    assert "max-width:100%" in page and "table-layout:fixed" in page
    assert repr(card).startswith("<wasmkit Filter 'my_header_filter': ")


def test_a_go_panic_points_at_the_cell_line(shell):
    cell = "%%wasm boom --lang go\n" + GO_PANIC
    shell.run(cell)
    boom = shell.user_ns["boom"]
    line = _cell_line(cell)
    result = boom.run()
    assert result.error is not None
    message = str(result.error)
    assert f"cell line {line} (main.go:{line - 1})" in message, message
    replayed = boom.replay(FLOW, limit=2)
    # The flow that panicked (a VM that failed may fail later flows for it).
    first = replayed.failed[0]
    assert f"cell line {line} (main.go:{line - 1})" in str(first.result.error)


def test_a_rust_panic_points_at_the_cell_line(shell):
    cell = "%%wasm rboom --lang rust\n" + RUST_PANIC
    shell.run(cell)
    rboom = shell.user_ns["rboom"]
    line = _cell_line(cell)
    result = rboom.run()
    assert result.error is not None
    message = str(result.error)
    assert re.search(
        rf"panicked at cell line {line}, column \d+ \(src/lib\.rs:{line - 1}:\d+\)",
        message,
    ), message
    logged = [log.message for log in result.logs if "panicked" in log.message]
    assert logged and all(f"cell line {line}" in m for m in logged)


def test_a_filter_not_from_a_cell_keeps_the_file_lines(shell):
    # Only %%wasm cells are renumbered: elsewhere the file's lines are the user's.
    shell.run(f"import wasmkit\nart = wasmkit.build({GO_PANIC!r}, 'go')")
    from wasmkit.notebook import Filter

    plain = Filter(shell.user_ns["art"], name="plain")
    message = str(plain.run().error)
    assert "cell line" not in message and "main.go:" in message
    plain.close()


def test_replay_takes_a_wasm_filter_as_compare_does(shell):
    from wasmkit.replay.run import replay

    shell.run("%%wasm ux --lang go --config '{}'\n" + GO_CELL)
    ux = shell.user_ns["ux"]
    result = replay(ux, FLOW, limit=3)
    assert result.filter == "ux (go)" and len(result) == 3
    assert result.inputs is not None and result.inputs["config"] == b"{}"
    assert all(
        f.result.request_after.get(b"x-wasmkit") == b"cell" for f in result.flows
    )
    other = replay(ux, FLOW, limit=1, config="{}", filter_expr="~m POST")
    assert [f.exchange.request.method for f in other] == ["POST"]


def test_an_assemblyscript_abort_points_at_the_cell_line(shell):
    cell = (
        "%%wasm asboom --lang assemblyscript --root-id boom --config '{}'\n" + AS_ABORT
    )
    shell.run(cell)
    line = _cell_line(cell)
    result = shell.user_ns["asboom"].run()
    message = str(result.error)
    assert re.search(
        rf"boom in the cell at: cell line {line}, column \d+ "
        rf"\(assembly/index\.ts\({line - 1}:\d+\)\)",
        message,
    ), message
