"""Notebook tests: a real IPython shell that re-raises errors; own build cache."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("toolchain"):
        if shutil.which(mark.args[0]) is None:
            pytest.skip(f"{mark.args[0]} not installed")


@pytest.fixture(scope="session", autouse=True)
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A build cache of this test session (toolchains stay in the kit cache)."""
    path = tmp_path_factory.mktemp("build-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WASMKIT_BUILD_CACHE", str(path))
        yield path


class Shell:
    """Runs cells in a real ``InteractiveShell``; errors are raised, not shown."""

    def __init__(self, ip: InteractiveShell) -> None:
        self.ip = ip
        self.user_ns = ip.user_ns

    def run(self, cell: str) -> Any:
        result = self.ip.run_cell(cell, store_history=False)
        result.raise_error()
        return result.result


@pytest.fixture(scope="module")
def shell() -> Iterator[Shell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "wasmkit")
    try:
        yield Shell(ip)
    finally:
        ip.run_line_magic("unload_ext", "wasmkit")
