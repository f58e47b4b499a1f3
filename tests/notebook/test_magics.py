"""The %%wasm and %wasmkit magics through a real IPython shell."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError
from traitlets import TraitError

import wasmkit
from wasmkit.notebook import Filter
from wasmkit.notebook.magics import WasmkitMagics, compile_message
from wasmkit.replay.results import ReplayResult

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "samples" / "captures" / "api.flow"

# A small Go filter: adds "x-wasmkit: cell" to every request.
GO_CELL = """\
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &root{} })
}

type root struct{ types.DefaultPluginContext }

func (*root) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	_ = proxywasm.AddHttpRequestHeader("x-wasmkit", "cell")
	return types.ActionContinue
}
"""
BROKEN_LINE = "func bad() int { return z }"


def _magics(shell) -> WasmkitMagics:
    return shell.ip.magics_manager.registry["WasmkitMagics"]


def test_load_ext_registers_the_magics(shell):
    magics = shell.ip.magics_manager.magics
    assert "wasm" in magics["cell"] and "wasmkit" in magics["line"]
    assert _magics(shell) in shell.ip.configurables


def test_config_sets_the_defaults(shell):
    magics = _magics(shell)
    try:
        shell.run("%config WasmkitMagics.default_lang = 'rs'")
        assert magics.default_lang == "rust"  # normalized
        shell.run("%config WasmkitMagics.default_root_id = 'mine'")
        assert magics.default_root_id == "mine"
        with pytest.raises(TraitError, match="cobol"):
            magics.default_lang = "cobol"
        assert magics.default_lang == "rust"
    finally:
        shell.ip.config.pop("WasmkitMagics", None)
        magics.default_lang = ""
        magics.default_root_id = ""
    assert WasmkitMagics.class_traits()["default_lang"].help


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("%%wasm 1x --lang go\n" + GO_CELL, "identifier"),
        ("%%wasm f --lang cobol\n" + GO_CELL, "cobol"),
        ("%%wasm f --config '{bad'\n" + GO_CELL, "--config"),
        ("%%wasm f --bogus\n" + GO_CELL, "--bogus"),
        ("%%wasm\n" + GO_CELL, "name"),
        ("%wasmkit", "command"),
        ("%wasmkit frobnicate", "frobnicate"),
        ("%wasmkit replay nothing_here x.flow", "nothing_here"),
    ],
)
def test_bad_arguments_are_usage_errors(shell, cell, words):
    with pytest.raises(UsageError, match=words):
        shell.run(cell)
    assert "f" not in shell.user_ns


def test_help_prints_and_does_not_fail(shell, capsys):
    assert shell.run("%wasmkit replay --help") is None
    assert "--filter" in capsys.readouterr().out


def test_doctor_prints_the_toolchains(shell, capsys):
    shell.run("%wasmkit doctor --no-build --lang go")
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("go ")
    assert "build cache" in out


@pytest.mark.toolchain("go")
def test_wasm_cell_builds_loads_and_binds_a_filter(shell):
    shown = shell.run("%%wasm hdr --lang go --config '{}'\n" + GO_CELL)
    hdr = shell.user_ns["hdr"]
    assert shown is hdr and isinstance(hdr, Filter)
    assert hdr.artifact.lang == "go" and hdr.config == b"{}"
    result = hdr.run(wasmkit.request(), wasmkit.response())
    assert result.error is None and result.request_after is not None
    assert result.request_after.get(b"x-wasmkit") == b"cell"
    assert hdr.run().request_after.get(b"x-wasmkit") == b"cell"  # default request

    # The same cell again: from the build cache; the old VM is released.
    old_plugin = hdr.plugin
    shell.run("%%wasm hdr --lang go --config '{}'\n" + GO_CELL)
    again = shell.user_ns["hdr"]
    assert again is not hdr and again.artifact.cache_hit
    assert again.artifact.key == hdr.artifact.key
    assert old_plugin.vm.vm is None
    assert hdr.plugin is not old_plugin  # a closed filter reloads on use

    page = again._repr_html_()
    assert again.abi_version in ("0.2.0", "0.2.1")
    for words in ("go", "ABI version", again.abi_version, "proxy_on_request_headers"):
        assert words in page
    assert "cache hit" in page and "yes" in page and "bytes" in page
    assert "x-wasmkit" not in page


@pytest.mark.toolchain("go")
def test_filter_html_escapes(shell):
    shell.run("%%wasm hdr --lang go\n" + GO_CELL)
    weird = Filter(shell.user_ns["hdr"].artifact, root_id="<b>&")
    with weird:
        page = weird._repr_html_()
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page


@pytest.mark.toolchain("go")
def test_compile_error_is_a_usage_error_at_the_cells_line(shell):
    cell = "%%wasm broken --lang go\n" + GO_CELL + BROKEN_LINE + "\n"
    line = cell.splitlines().index(BROKEN_LINE) + 1  # the %%wasm line is 1
    with pytest.raises(UsageError) as info:
        shell.run(cell)
    message = str(info.value)
    assert f"cell line {line}, column 25: undefined: z" in message
    assert "Traceback" not in message
    assert "broken" not in shell.user_ns


@pytest.mark.toolchain("go")
def test_wasmkit_replay_binds_the_result(shell):
    shell.run("%%wasm hdr --lang go\n" + GO_CELL)
    assert shell.run(f"%wasmkit replay hdr {FLOW} -o res") is None
    res = shell.user_ns["res"]
    assert isinstance(res, ReplayResult) and len(res) == 17
    assert res.filter == "hdr (go)"  # the cell's name, not the cache path
    assert all(r["request_added"] == 1 for r in res.summary_rows)
    posts = shell.run(f"%wasmkit replay hdr {FLOW} --filter '~m POST' --limit 2")
    assert isinstance(posts, ReplayResult) and 0 < len(posts) <= 2
    assert {f.result.request_before.get(b":method") for f in posts} == {b"POST"}
    # Any filter replay() accepts, e.g. the artifact.
    shell.user_ns["art"] = shell.user_ns["hdr"].artifact
    assert len(shell.run(f"%wasmkit replay art {FLOW} --limit 1")) == 1


def test_compile_message_without_diagnostics_is_the_error_text():
    exc = wasmkit.errors.CompileError(
        "go build failed (exit 1):\nboom", command=["go"], returncode=1, stderr="boom"
    )
    assert compile_message(exc) == str(exc)


def test_unload_removes_the_magics_and_load_brings_them_back(shell):
    ip = shell.ip
    instance = _magics(shell)
    ip.run_line_magic("unload_ext", "wasmkit")
    try:
        assert "wasm" not in ip.magics_manager.magics["cell"]
        assert "wasmkit" not in ip.magics_manager.magics["line"]
        assert "WasmkitMagics" not in ip.magics_manager.registry
        assert instance not in ip.configurables
        with pytest.raises(UsageError, match="wasm"):
            shell.run("%%wasm hdr\n" + GO_CELL)
        wasmkit.unload_ipython_extension(ip)  # twice is harmless
    finally:
        ip.run_line_magic("load_ext", "wasmkit")
    assert "wasm" in ip.magics_manager.magics["cell"]


@pytest.mark.toolchain("go")
def test_wasm_cell_takes_build_tags_limits_and_vm_options(shell):
    gated = "//go:build wasmkit_cell\n\n" + GO_CELL
    # Without the tag every file is excluded: the build fails, clearly.
    with pytest.raises(UsageError, match="build constraints exclude"):
        shell.run("%%wasm gated --lang go --config '{}'\n" + gated)
    shell.run(
        "%%wasm gated --lang go --config '{}' --tags wasmkit_cell "
        "--timeout-ms 7 --start-timeout-ms 9000 --memory-mb 64 --log-level debug "
        "--property xds.route_name=api --vm-config vm-text\n" + gated
    )
    gated = shell.user_ns["gated"]
    limits = gated.vm_options["limits"]
    assert (limits.timeout_ms, limits.startup_timeout_ms) == (7, 9000)
    assert limits.memory_bytes == 64 << 20
    assert gated.vm_options["log_level"] == "debug"
    assert gated.vm_options["properties"] == {"xds.route_name": "api"}
    vm = gated.plugin.vm
    assert vm.limits == limits and vm.vm_configuration == b"vm-text"
    assert vm.log_level.name == "DEBUG"
    result = gated.run()
    assert result.request_after is not None
    assert result.request_after.get(b"x-wasmkit") == b"cell"
    with pytest.raises(UsageError, match="--timeout-ms must be 0"):
        shell.run("%%wasm bad --lang go --timeout-ms -3\n" + GO_CELL)


@pytest.mark.toolchain("go")
def test_wasm_cell_takes_the_failure_policy_environment_and_clusters(shell):
    shell.run(
        "%%wasm cell --lang go --config '{}' --failure-policy fail_reload "
        "--reload-backoff-ms 250 --env A=1 --cluster auth\n" + GO_CELL
    )
    cell = shell.user_ns["cell"]
    config = cell.plugin.config
    assert (config.policy, config.reload_backoff_ms) == ("fail_reload", 250)
    vm = cell.plugin.vm
    assert vm.environ == {"A": "1"} and vm.events.clusters == {"auth"}
    with pytest.raises(UsageError, match="invalid choice"):
        shell.run("%%wasm bad --lang go --failure-policy sometimes\n" + GO_CELL)


@pytest.mark.toolchain("go")
def test_filter_card_reports_load_time_apart_from_build_time(shell):
    shell.run("%%wasm card --lang go --config '{}'\n" + GO_CELL)
    card = shell.user_ns["card"]
    page = card._repr_html_()
    assert "build time" in page and "load time" in page
    assert card.load_ms > 0
    origin = card.plugin.vm.module.origin
    wording = {
        "compiled": "compiled by wasmtime",
        "disk": "code from the module cache",
        "memory": "code already in this kernel",
    }[origin]
    assert wording in page
