"""The sample filters, built by the real compilers, run in the host."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wasmkit.host import load, request, response

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "samples"
CONFIG = json.dumps(
    {
        "request": {"x-added": "req", "x-two": "2"},
        "response": {"x-powered-by": "wasmkit"},
    }
)


def _have(lang: str) -> str | None:
    if lang == "assemblyscript":
        return None if shutil.which("npm") else "npm (Node.js) is not installed"
    if lang == "go":
        return None if shutil.which("go") else "go is not installed (Go >= 1.24)"
    if not Path("/usr/bin/rustc").exists() or not Path("/usr/bin/cargo").exists():
        return (
            "Debian's rustc/cargo are not installed (apt-get install rustc cargo "
            "libstd-rust-dev-wasm32 lld)"
        )
    return None


@pytest.fixture(scope="session")
def samples() -> Path:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-samples.sh"), str(OUT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the samples failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return OUT


LANGS = [
    pytest.param("assemblyscript", marks=pytest.mark.toolchain("asc")),
    pytest.param("rust", marks=pytest.mark.toolchain("cargo")),
    pytest.param("go", marks=pytest.mark.toolchain("go")),
]


@pytest.mark.parametrize("lang", LANGS)
def test_add_headers_sample(lang, samples):
    reason = _have(lang)
    if reason:
        pytest.skip(reason)
    path = samples / f"add_headers.{lang}.wasm"
    plugin = load(path, root_id="add_headers", config=CONFIG)
    result = plugin.run_http(
        request("GET", "http://example.com/a", [("Accept", "*/*")]),
        response(200, [("content-type", "text/plain")], "hello"),
    )
    assert result.error is None, result.error
    after = result.request_after.headers
    assert after[-2:] == [(b"x-added", b"req"), (b"x-two", b"2")]
    assert (b"x-powered-by", b"wasmkit") in result.response_after.headers
    assert result.response_after.body == b"hello"
    messages = [r.message for r in result.logs]
    assert "add_headers: added 2 request headers" in messages
    assert "add_headers: added 1 response headers" in messages
    # Every stream starts from a working VM; a second one behaves the same.
    again = plugin.run_http(request(), response())
    assert again.request_after.headers[-2:] == [(b"x-added", b"req"), (b"x-two", b"2")]


@pytest.mark.parametrize("lang", LANGS)
def test_add_headers_sample_without_config_adds_nothing(lang, samples):
    reason = _have(lang)
    if reason:
        pytest.skip(reason)
    path = samples / f"add_headers.{lang}.wasm"
    if lang == "assemblyscript":
        # proxy-runtime 0.1.8 traps on an empty configuration, as in Envoy.
        from wasmkit.errors import FilterLoadError

        with pytest.raises(FilterLoadError, match="cannot read an empty plugin"):
            load(path, root_id="add_headers")
        plugin = load(path, root_id="add_headers", config="{}")
    else:
        plugin = load(path, root_id="add_headers")
    result = plugin.run_http(
        request("GET", "http://example.com/a", [("Accept", "*/*")]), response()
    )
    assert result.error is None, result.error
    assert result.request_after.headers == result.request_before.headers
    assert result.response_after.headers == result.response_before.headers
    messages = [r.message for r in result.logs]
    assert "add_headers: added 0 request headers" in messages
    assert "add_headers: added 0 response headers" in messages


@pytest.mark.parametrize("lang", LANGS)
def test_add_headers_sample_rejects_bad_config(lang, samples):
    reason = _have(lang)
    if reason:
        pytest.skip(reason)
    from wasmkit.errors import FilterError

    with pytest.raises(FilterError) as info:
        load(
            samples / f"add_headers.{lang}.wasm", root_id="add_headers", config="{nope"
        )
    assert info.value.kind == "load"


@pytest.mark.parametrize("lang", LANGS)
def test_cli_run_on_sample_shows_added_headers(lang, samples):
    reason = _have(lang)
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wasmkit.cli",
            "run",
            str(samples / f"add_headers.{lang}.wasm"),
            "--root-id",
            "add_headers",
            "--config",
            CONFIG,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert ["x-added", "req"] in record["request"]["headers"]["after"]
    assert ["x-added", "req"] not in record["request"]["headers"]["before"]
    assert ["x-powered-by", "wasmkit"] in record["response"]["headers"]["after"]
    assert record["error"] is None


def test_assemblyscript_sample_reads_config_despite_runtime_bug(samples):
    """proxy-runtime 0.1.8 passes the config size as the size pointer."""
    if _have("assemblyscript"):
        pytest.skip(_have("assemblyscript"))
    big = json.dumps({"request": {f"x-h{i}": "v" * 60 for i in range(100)}})
    plugin = load(
        samples / "add_headers.assemblyscript.wasm", root_id="add_headers", config=big
    )
    quirks = [t for t in plugin.vm.trace if "quirk" in t.args]
    assert quirks and quirks[0].name == "proxy_get_buffer_bytes"
    result = plugin.run_http(request(), response())
    assert result.error is None
    # Pseudo-headers, x-forwarded-proto and x-request-id, and the 100 added.
    assert len(result.request_after.headers) == 4 + 2 + 100


def test_assemblyscript_sdk_abort_is_reported_with_its_message(samples):
    """proxy-runtime aborts (proc_exit) when no root context matches the root id."""
    if _have("assemblyscript"):
        pytest.skip(_have("assemblyscript"))
    from wasmkit.errors import FilterLoadError

    with pytest.raises(FilterLoadError) as info:
        load(samples / "add_headers.assemblyscript.wasm", root_id="not-registered")
    text = str(info.value)
    assert "proc_exit(255)" in text
    assert "Missing root context factory for root id: not-registered" in text
    assert "proxy_on_context_create" in text


@pytest.fixture(scope="session")
def panic_filter(tmp_path_factory) -> Path:
    if _have("rust"):
        pytest.skip(_have("rust"))
    out = tmp_path_factory.mktemp("panic") / "panic.wasm"
    subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "build-rust.sh"),
            str(ROOT / "tests" / "data" / "filters" / "panic" / "rust"),
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return out


@pytest.mark.toolchain("cargo")
def test_rust_panic_is_a_trap_with_message_and_demangled_backtrace(panic_filter):
    if _have("rust"):
        pytest.skip(_have("rust"))
    from wasmkit.host import Limits

    # fail_reload with a short backoff: each stream after a trap reloads.
    plugin = load(
        panic_filter,
        limits=Limits(memory_bytes=64 * 1024 * 1024),
        failure_policy="fail_reload",
        reload_backoff_ms=2,
    )
    result = plugin.run_http(
        request("GET", "http://h/", [("x-panic", "now")]), response()
    )
    err = result.error
    assert err.kind == "trap" and err.trap_code == "UNREACHABLE"
    assert err.callback == "proxy_on_request_headers"
    assert "the filter said: panicked at 'asked to panic: now'" in str(err)
    assert any(
        "<panic_filter::Stream as proxy_wasm::traits::HttpContext>"
        "::on_http_request_headers" in frame
        for frame in err.wasm_backtrace
    )
    assert result.response_after.status == 503
    # A Rust allocation failure is a memory error.
    plugin.vm.advance(5)
    hog = plugin.run_http(request("GET", "http://h/", [("x-hog", "1")]), response())
    assert hog.error.kind == "memory"
    assert "memory allocation of 1048576 bytes failed" in str(hog.error)
    # And the next stream runs on a fresh instance.
    plugin.vm.advance(5)
    fine = plugin.run_http(request(), response(200))
    assert fine.error is None and fine.response_after.status == 200
