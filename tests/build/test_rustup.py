"""Choosing a rustup toolchain with wasm32-wasip1 before the modern or Debian's rustc."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from wasmkit.build import rustmodern, rustup
from wasmkit.build.rust import Rust
from wasmkit.build.toolchain import TEMPLATES, Options, kit_cache
from wasmkit.errors import ToolchainNotFoundError

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "filters"


def _real_rustup() -> tuple[Path, str] | None:
    """The machine's rustup home and default toolchain folder, if any."""
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    exe = shutil.which("rustup")
    if exe is None:
        return None
    out = subprocess.run(
        [exe, "show", "active-toolchain"], capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0 or not out.stdout.split():
        return None
    return home, out.stdout.split()[0]


def _installed_targets() -> list[str]:
    exe = shutil.which("rustup")
    assert exe is not None
    out = subprocess.run(
        [exe, "target", "list", "--installed"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.split()


@pytest.fixture
def auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WASMKIT_RUST_TOOLCHAIN", raising=False)
    monkeypatch.delenv("WASMKIT_RUST_TARGET", raising=False)


def test_mode_defaults_to_auto_and_rejects_unknown_values(
    auto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert rustup.mode() == "auto"
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", " Debian ")
    assert rustup.mode() == "debian"
    assert rustup.choose() is None
    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "nightly")
    with pytest.raises(ValueError, match="auto, rustup, modern, debian"):
        rustup.mode()


def test_the_machines_rustup_is_used_exactly_when_it_has_wasip1(
    auto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _real_rustup() is None:
        pytest.skip("rustup is not installed here")
    has_wasip1 = rustup.WASIP1 in _installed_targets()
    found = rustup.find()
    assert (found is not None) == has_wasip1
    versions = Rust().versions()
    if has_wasip1:
        assert versions["target"] == rustup.WASIP1
        assert versions["from"].startswith("rustup ")
    elif rustmodern.find() is not None:
        assert versions["from"].startswith("modern ")
        assert versions["target"] == rustup.WASIP1
    else:
        assert versions["from"] == "debian"
        assert versions["target"] == "wasm32-wasi"
        monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "rustup")
        with pytest.raises(ToolchainNotFoundError) as err:
            Rust().versions()
        assert f"rustup target add {rustup.WASIP1}" in str(err.value)
        assert "WASMKIT_RUST_TOOLCHAIN=debian" in str(err.value)


def _toolchain_with_wasip1(tmp_path: Path) -> Path:
    """A rustup home whose default toolchain has a wasm32-wasip1 std folder.

    Its bin/ is the machine's real default toolchain, so versions come from the
    real rustc; the std folder holds a placeholder library (the real one cannot
    be downloaded here), enough for the choice, which looks at files only.
    """
    real = _real_rustup()
    if real is None:
        pytest.skip("rustup is not installed here")
    home, name = real
    source = home / "toolchains" / name
    root = tmp_path / "rustup" / "toolchains" / name
    (root / "lib" / "rustlib" / rustup.WASIP1 / "lib").mkdir(parents=True)
    (root / "lib" / "rustlib" / rustup.WASIP1 / "lib" / "libstd-0.rlib").touch()
    (root / "bin").symlink_to(source / "bin")
    (tmp_path / "rustup" / "settings.toml").write_text(
        f'default_toolchain = "{name}"\n'
    )
    return tmp_path / "rustup"


def test_a_rustup_toolchain_with_wasip1_builds_with_the_current_crate(
    auto: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _toolchain_with_wasip1(tmp_path)
    monkeypatch.setenv("RUSTUP_HOME", str(home))
    monkeypatch.delenv("RUSTUP_TOOLCHAIN", raising=False)
    found = rustup.find()
    assert found is not None
    assert found.rustc == found.root / "bin" / "rustc"
    assert rustup.choose() == found
    rust = Rust()
    versions = rust.versions()
    assert versions["target"] == rustup.WASIP1
    assert versions["from"] == f"rustup {found.name}"
    major, minor = (int(p) for p in versions["rustc"].split(".")[:2])
    assert (major, minor) >= (1, 78)  # wasm32-wasip1 exists from Rust 1.78
    files = rust.template("// cell", "my_filter")
    manifest = tomllib.loads(files["Cargo.toml"].decode())
    assert manifest["package"]["name"] == "my_filter"
    assert manifest["dependencies"]["proxy-wasm"] == "=0.2.5"
    command, env = rust._command("my_filter", Options())
    assert command[:4] == [str(found.cargo), "build", "--target", rustup.WASIP1]
    assert "--offline" in command and "--locked" in command
    assert env["RUSTC"] == str(found.rustc)
    assert env["CARGO_HOME"] == str(kit_cache() / "cargo-home")
    # Debian's set-up is not asked for: no vendoring flags.
    assert not any("wasmkit-vendor" in part for part in command)

    monkeypatch.setenv("WASMKIT_RUST_TOOLCHAIN", "debian")
    assert rust.versions()["from"] == "debian"
    plain = tomllib.loads(rust.template("// cell", "x")["Cargo.toml"].decode())
    assert plain["dependencies"]["proxy-wasm"] == "=0.2.2"


@pytest.mark.toolchain("cargo")
def test_every_rust_sample_compiles_against_the_current_crate(
    tmp_path: Path,
) -> None:
    """The samples' sources type-check with proxy-wasm 0.2.5 and modern rustc.

    With the kit's modern Rust for wasm32-wasip1; else for the host target with
    the machine's rustup toolchain (which has no wasm32-wasip1 std here),
    offline, from the crates ``scripts/setup-rust.sh`` fetched into the kit
    cache.
    """
    modern = rustmodern.find()
    cargo_home = kit_cache() / "cargo-home"
    if modern is not None:
        cargo: str | None = str(modern.cargo)
        env = rustmodern.env(modern)
        target = ["--target", rustup.WASIP1]
    else:
        cargo = shutil.which("cargo", path=str(Path.home() / ".cargo" / "bin"))
        env = dict(os.environ, CARGO_HOME=str(cargo_home))
        env.pop("RUSTC", None)
        target = []
    if cargo is None or not (cargo_home / "registry").is_dir():
        pytest.skip("no modern cargo or no fetched crates (run make toolchains)")
    target_dir = tmp_path / "target"
    command = [cargo, "check", "--offline", "--locked", "--target-dir", str(target_dir)]
    checked = []
    for sample in sorted(SAMPLES.glob("*/rust")):
        crate = tmp_path / sample.parent.name
        crate.mkdir()
        for name in ("Cargo.toml", "Cargo.lock"):
            shutil.copy(TEMPLATES / "rust-current" / name, crate / name)
        shutil.copytree(sample / "src", crate / "src")
        proc = subprocess.run(
            [*command, *target],
            cwd=crate,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{sample}:\n{proc.stderr[-3000:]}"
        checked.append(sample.parent.name)
    assert checked == ["add_headers", "auth_callout", "authorize", "json_rewrite"]
