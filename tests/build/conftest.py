"""Build tests: skip toolchain-marked tests when the tool is absent; own build cache."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "filters" / "add_headers"

# The marker names the tests use, and the languages they stand for.
MARKS = {"asc": "assemblyscript", "cargo": "rust", "go": "go", "tinygo": "tinygo"}


def absent(tool: str) -> str | None:
    """Why ``tool`` cannot run here, or ``None``."""
    if tool == "asc":
        missing = [t for t in ("node", "npm") if shutil.which(t) is None]
        return f"{', '.join(missing)} not installed" if missing else None
    if tool == "cargo":
        for exe in ("/usr/bin/rustc", "/usr/bin/cargo"):
            if not os.path.exists(exe):
                return f"{exe} not installed"
        return None
    return None if shutil.which(tool) else f"{tool} not installed"


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("toolchain"):
        reason = absent(mark.args[0])
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A build cache of this test session (toolchains stay in the kit cache)."""
    path = tmp_path_factory.mktemp("build-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WASMKIT_BUILD_CACHE", str(path))
        yield path


@pytest.fixture(
    params=[
        pytest.param("assemblyscript", marks=pytest.mark.toolchain("asc")),
        pytest.param("rust", marks=pytest.mark.toolchain("cargo")),
        pytest.param("go", marks=pytest.mark.toolchain("go")),
    ]
)
def lang(request: pytest.FixtureRequest) -> str:
    """Each language, skipped when its compiler is absent."""
    return str(request.param)
