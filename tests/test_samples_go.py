"""The Go sample filter, built by Go >= 1.24 (wasip1, c-shared), runs in the host.

The same checks as tests/test_samples.py makes for the AssemblyScript and Rust
versions of add_headers.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from wasmkit.host import load, request, response

from .test_samples import CONFIG

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "filters" / "add_headers" / "go"

pytestmark = pytest.mark.toolchain("go")


@pytest.fixture(scope="session")
def go_sample(tmp_path_factory) -> Path:
    if shutil.which("go") is None:
        pytest.skip("go is not installed (Go >= 1.24 builds the Go filters)")
    out = tmp_path_factory.mktemp("go") / "add_headers.go.wasm"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-go.sh"), str(SAMPLE), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_go_add_headers_sample(go_sample):
    plugin = load(go_sample, root_id="add_headers", config=CONFIG)
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
    assert again.error is None, again.error
    assert again.request_after.headers[-2:] == [(b"x-added", b"req"), (b"x-two", b"2")]


def test_go_add_headers_sample_rejects_bad_config(go_sample):
    from wasmkit.errors import FilterError

    with pytest.raises(FilterError) as info:
        load(go_sample, root_id="add_headers", config="{nope")
    assert info.value.kind == "load"


def test_go_add_headers_sample_without_config_adds_nothing(go_sample):
    plugin = load(go_sample, root_id="add_headers")
    result = plugin.run_http(
        request("GET", "http://example.com/a", [("Accept", "*/*")]), response()
    )
    assert result.error is None, result.error
    assert result.request_after.headers == result.request_before.headers
    assert result.response_after.headers == result.response_before.headers
    messages = [r.message for r in result.logs]
    assert "add_headers: added 0 request headers" in messages
    assert "add_headers: added 0 response headers" in messages
