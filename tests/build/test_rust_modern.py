"""The kit's modern Rust: set-up, choice, and real builds run in the host."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

import wasmkit
from wasmkit.build import build, doctor, rustmodern, rustup
from wasmkit.build.project import resolve
from wasmkit.build.rust import Rust
from wasmkit.build.rustworkspace import lock_folder, workspace_root
from wasmkit.build.toolchain import KIT_ROOT, kit_cache
from wasmkit.errors import BuildError, ToolchainNotFoundError

SETUP = KIT_ROOT / "scripts" / "setup-rust-modern.sh"
RATE_LIMIT = KIT_ROOT / "samples" / "filters" / "rate_limit" / "rust-current"

# A notebook cell on the current proxy-wasm: let-else, and Option::is_none_or
# (Rust 1.82), neither of which Debian's rustc 1.63 knows.
CELL = """\
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { value: None })
    });
}}

struct Root {
    value: Option<String>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(raw) = self.get_plugin_configuration() else {
            return true;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        self.value = Some(text.trim().to_owned());
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { value: self.value.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    value: Option<String>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end: bool) -> Action {
        let Some(value) = self.value.as_deref() else {
            return Action::Continue;
        };
        if self.get_http_request_header("x-cell").is_none_or(|v| v.is_empty()) {
            self.add_http_request_header("x-cell", value);
        }
        Action::Continue
    }
}
"""


@pytest.fixture(scope="module")
def modern() -> rustmodern.ModernToolchain:
    """The kit's modern Rust, made by its set-up when it is not there yet."""
    found = rustmodern.find()
    if found is None:
        if shutil.which("apt-get") is None:
            pytest.skip("the kit's modern Rust is made on Debian only")
        proc = subprocess.run(
            ["bash", str(SETUP)], capture_output=True, text=True, timeout=3600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        found = rustmodern.find()
    assert found is not None
    return found


@pytest.fixture(autouse=True)
def forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "modern")
    monkeypatch.delenv("WASMKIT_RUST_TARGET", raising=False)


def _cargo(chain: rustmodern.ModernToolchain, *args: str, cwd: Path) -> None:
    env = dict(os.environ, CARGO_HOME=str(kit_cache() / "cargo-home"))
    proc = subprocess.run(
        [str(chain.cargo), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _lock(chain: rustmodern.ModernToolchain, root: Path) -> None:
    """Cargo.lock for ``root``: from the crates the kit has, else crates.io."""
    try:
        _cargo(chain, "generate-lockfile", "--offline", cwd=root)
    except AssertionError:
        _cargo(chain, "generate-lockfile", cwd=root)


def test_set_up_is_made_once_and_leaves_debian_alone(modern):
    started = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(SETUP)], capture_output=True, text=True, timeout=600
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == modern.root
    assert "up to date" in proc.stderr
    assert seconds < 3  # well under a second on a quiet machine
    assert modern.root.parent == kit_cache() / "rust-modern"
    assert modern.root.name.startswith(f"{modern.release}-{modern.commit[:12]}-")
    info = subprocess.run(
        [str(modern.rustc), "-vV"], capture_output=True, text=True, check=True
    ).stdout
    assert f"commit-hash: {modern.commit}" in info
    major, minor = (int(p) for p in modern.release.split(".")[:2])
    assert (major, minor) >= (1, 85)
    rustlib = modern.root / "usr" / "lib" / "rustlib"
    for target in ("wasm32-unknown-unknown", rustup.WASIP1):
        assert rustup.has_std(modern.root / "usr", target)
    crt = rustlib / rustup.WASIP1 / "lib" / "self-contained"
    assert (crt / "crt1-command.o").is_file() and (crt / "libc.a").is_file()
    assert modern.linker.name == "wasm-ld" and modern.linker.is_file()
    # Debian's rustc 1.63 is still the one installed.
    debian = subprocess.run(
        ["/usr/bin/rustc", "--version"], capture_output=True, text=True
    )
    assert "1.63" in debian.stdout
    state = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", "rustc-web"],
        capture_output=True,
        text=True,
    ).stdout
    assert state != "installed"


def test_the_choice_goes_rustup_then_modern_then_debian(modern, tmp_path, monkeypatch):
    monkeypatch.setenv("RUSTUP_HOME", str(tmp_path / "no-rustup"))
    monkeypatch.delenv("RUSTUP_TOOLCHAIN", raising=False)
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "auto")
    assert rustmodern.choose() == modern
    versions = Rust().versions()
    assert versions == {
        "rustc": modern.release,
        "cargo": modern.cargo_release,
        "target": rustup.WASIP1,
        "from": f"modern (rustc-web {modern.debian_version})",
    }
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "debian")
    assert rustmodern.choose() is None
    assert Rust().versions()["from"] == "debian"
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "rustup")
    with pytest.raises(ToolchainNotFoundError, match="rustup target add"):
        rustmodern.choose()
    # No modern Rust in this kit cache: auto falls back to Debian's, modern says
    # how to make it.
    monkeypatch.setenv("WASMKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "auto")
    assert rustmodern.find() is None and rustmodern.choose() is None
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "modern")
    with pytest.raises(ToolchainNotFoundError, match=r"setup-rust-modern\.sh"):
        rustmodern.choose()
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "nightly")
    with pytest.raises(ValueError, match="auto, rustup, modern, debian"):
        rustmodern.choose()


def test_build_environment_names_the_linker_and_protoc(modern):
    env = rustmodern.env(modern)
    assert env["RUSTC"] == str(modern.rustc)
    assert env["CARGO_TARGET_WASM32_WASIP1_LINKER"] == str(modern.linker)
    assert env["PATH"].split(os.pathsep)[0] == str(modern.root / "bin")
    assert modern.protoc is not None
    assert env.get("PROTOC") in (str(modern.protoc), os.environ.get("PROTOC"))
    flags = env["CARGO_ENCODED_RUSTFLAGS"].split("\x1f")
    assert "-Clink-arg=--allow-undefined" in flags


@pytest.mark.toolchain("cargo")
def test_doctor_says_modern(modern):
    (status,) = doctor(["rust"]).toolchains
    assert status.works, status.problem
    assert status.versions["from"].startswith("modern (rustc-web ")


@pytest.mark.toolchain("cargo")
def test_a_cell_on_the_current_crate_builds_runs_and_hits_the_cache(
    modern, monkeypatch
):
    artifact = build(CELL, "rust", root_id="modern_cell")
    manifest = tomllib.loads((artifact.source / "Cargo.toml").read_text())
    assert manifest["dependencies"]["proxy-wasm"] == "=0.2.5"
    assert artifact.toolchain["from"].startswith("modern")
    plugin = wasmkit.load(artifact, root_id="modern_cell", config="from-a-cell")
    result = plugin.run_http(wasmkit.request(), wasmkit.response())
    assert result.error is None and result.request_after is not None
    assert (b"x-cell", b"from-a-cell") in result.request_after.headers

    # A cached rebuild starts no process and takes a few milliseconds.
    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        again = build(CELL, "rust", root_id="modern_cell")
        timings.append((time.perf_counter() - started) * 1000)
        assert again.cache_hit and again.wasm == artifact.wasm
    assert statistics.median(timings) < 5


@pytest.mark.toolchain("cargo")
def test_edition_2024_sample_with_lockfile_v4_limits_requests(modern):
    manifest = tomllib.loads((RATE_LIMIT / "Cargo.toml").read_text())
    assert manifest["package"]["edition"] == "2024"
    assert "serde_json" in manifest["dependencies"]
    assert tomllib.loads((RATE_LIMIT / "Cargo.lock").read_text())["version"] == 4
    artifact = build(RATE_LIMIT)
    assert artifact.path.name == "rate_limit.rust.wasm"
    config = json.dumps({"requests_per_second": 0.5, "burst": 2})
    plugin = wasmkit.load(artifact, root_id="rate_limit", config=config)

    def status(key: str) -> tuple[bytes | None, dict[bytes, bytes]]:
        result = plugin.run_http(
            wasmkit.request(headers=[("x-api-key", key)]), wasmkit.response()
        )
        assert result.error is None and result.response_after is not None
        headers = dict(result.response_after.headers)
        return headers.get(b":status"), headers

    first = status("a")
    assert first[0] == b"200" and first[1][b"x-ratelimit-remaining"] == b"1"
    assert status("a")[1][b"x-ratelimit-remaining"] == b"0"
    limited, headers = status("a")
    assert limited == b"429" and headers[b"retry-after"] == b"2"
    assert status("b")[0] == b"200"  # another key, another bucket
    plugin.vm.advance(2000)  # one token back at 0.5/s
    assert status("a")[0] == b"200"
    assert status("a")[0] == b"429"
    with pytest.raises(wasmkit.FilterStartError):
        wasmkit.load(artifact, root_id="rate_limit", config='{"burst": 0}')


@pytest.mark.toolchain("cargo")
def test_debian_fallback_refuses_a_v4_lockfile_clearly(modern, monkeypatch):
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "debian")
    with pytest.raises(BuildError) as info:
        build(RATE_LIMIT)
    text = str(info.value)
    assert "version 4 lockfile" in text and "Debian's cargo" in text
    assert "setup-rust-modern.sh" in text


def test_debian_vendoring_is_not_disturbed_by_the_current_sample(modern):
    proc = subprocess.run(
        ["bash", str(KIT_ROOT / "scripts" / "setup-rust.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _workspace(root: Path, greeting: str) -> Path:
    (root / "Cargo.toml").write_text(
        '[workspace]\nmembers = ["crates/*"]\nexclude = ["crates/old"]\n'
        'resolver = "3"\n\n[workspace.package]\nedition = "2024"\n\n'
        '[workspace.dependencies]\nproxy-wasm = "=0.2.5"\n\n'
        '[profile.release]\nopt-level = "s"\nlto = true\npanic = "abort"\n'
    )
    words = root / "crates" / "words"
    (words / "src").mkdir(parents=True, exist_ok=True)
    (words / "Cargo.toml").write_text(
        '[package]\nname = "words"\nversion = "0.1.0"\nedition.workspace = true\n'
    )
    (words / "src" / "lib.rs").write_text(
        f'pub const GREETING: (&str, &str) = ("x-greeting", "{greeting}");\n'
    )
    member = root / "crates" / "greeter"
    (member / "src").mkdir(parents=True, exist_ok=True)
    (member / "Cargo.toml").write_text(
        '[package]\nname = "greeter"\nversion = "0.1.0"\nedition.workspace = true\n'
        '\n[lib]\ncrate-type = ["cdylib"]\n\n[dependencies]\n'
        'proxy-wasm.workspace = true\nwords = { path = "../words" }\n'
    )
    (member / "src" / "lib.rs").write_text(
        CELL.replace(
            'self.add_http_request_header("x-cell", value);',
            'self.add_http_request_header("x-cell", value);\n'
            "            let (name, text) = words::GREETING;\n"
            "            self.add_http_request_header(name, text);",
        )
    )
    return member


@pytest.mark.toolchain("cargo")
def test_a_workspace_member_builds_with_the_workspace_lockfile(modern, tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    member = _workspace(root, "hello")
    old = root / "crates" / "old"
    old.mkdir()
    (old / "Cargo.toml").write_text('[package]\nname = "old"\nversion = "0.1.0"\n')
    _lock(modern, root)
    assert not (member / "Cargo.lock").exists()
    assert workspace_root(member) == root and lock_folder(member) == root
    assert workspace_root(old) is None  # excluded
    first = build(member)
    plugin = wasmkit.load(first, root_id="greeter", config="on")
    result = plugin.run_http(wasmkit.request(), wasmkit.response())
    assert result.error is None and result.request_after is not None
    assert (b"x-greeting", b"hello") in result.request_after.headers
    assert not (member / "target").exists() and not (root / "target").exists()
    assert build(member).cache_hit

    # A change in another member of the workspace is a change of this build.
    _workspace(root, "bonjour")
    assert resolve(member).digest != first.source_digest
    second = build(member)
    assert not second.cache_hit
    plugin = wasmkit.load(second, root_id="greeter", config="on")
    result = plugin.run_http(wasmkit.request(), wasmkit.response())
    assert result.request_after is not None
    assert (b"x-greeting", b"bonjour") in result.request_after.headers


PROTO = """\
syntax = "proto3";
package demo;
message Hello {
  string name = 1;
  uint32 count = 2;
}
"""

PROST_FILTER = """\
use prost::Message;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

pub mod demo {
    include!(concat!(env!("OUT_DIR"), "/demo.rs"));
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream;

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _end: bool) -> Action {
        let hello = demo::Hello { name: "wasmkit".into(), count: 3 };
        let hex: String = hello.encode_to_vec().iter().map(|b| format!("{b:02x}")).collect();
        self.add_http_request_header("x-proto", &hex);
        Action::Continue
    }
}
"""


@pytest.mark.toolchain("cargo")
def test_prost_with_protoc_builds_and_encodes(modern, tmp_path):
    crate = tmp_path / "protofilter"
    (crate / "src").mkdir(parents=True)
    (crate / "proto").mkdir()
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "protofilter"\nversion = "0.1.0"\nedition = "2024"\n\n'
        '[lib]\ncrate-type = ["cdylib"]\n\n[dependencies]\nproxy-wasm = "=0.2.5"\n'
        'prost = "0.14"\n\n[build-dependencies]\n'
        'prost-build = { version = "0.14", default-features = false }\n\n'
        '[profile.release]\nopt-level = "s"\npanic = "abort"\n'
    )
    (crate / "build.rs").write_text(
        "fn main() {\n"
        '    prost_build::compile_protos(&["proto/demo.proto"], &["proto"]).unwrap();\n'
        "}\n"
    )
    (crate / "proto" / "demo.proto").write_text(PROTO)
    (crate / "src" / "lib.rs").write_text(PROST_FILTER)
    _lock(modern, crate)
    artifact = build(crate)
    plugin = wasmkit.load(artifact, root_id="protofilter")
    result = plugin.run_http(wasmkit.request(), wasmkit.response())
    assert result.error is None and result.request_after is not None
    # field 1 (string) "wasmkit", field 2 (varint) 3
    expected = b"0a07" + b"wasmkit".hex().encode() + b"1003"
    assert (b"x-proto", expected) in result.request_after.headers
