"""wasmkit's pytest plugin (entry point ``wasmkit`` in ``pytest11``).

Fixtures:

* ``wasmkit_filter(source, **options)``: a started
  :class:`~wasmkit.host.Plugin` of a ``.wasm`` / ``.wat`` file, WAT text,
  wasm bytes, or a source folder or file (built through the kit's build
  cache); its VM is closed after the test.
* ``wasmkit_driver(source, **options)``: a :class:`~wasmkit.testing.Driver`
  on the same, closed after the test.
* ``wasmkit_capture(path, **options)``: the exchanges of a ``.flow`` or HAR
  capture, as a list.

Option ``--wasmkit-update``: snapshot checks rewrite their snapshots
(:mod:`wasmkit.testing.snapshot`).

Nothing heavy is imported until a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_SOURCE_SUFFIXES = (".rs", ".go", ".ts")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--wasmkit-update``."""
    group = parser.getgroup("wasmkit")
    group.addoption(
        "--wasmkit-update",
        action="store_true",
        default=False,
        dest="wasmkit_update",
        help="rewrite wasmkit snapshots with this run's output instead of "
        "comparing (as WASMKIT_UPDATE=1)",
    )


def _module(source: Any, build_options: dict[str, Any]) -> Any:
    if isinstance(source, str | os.PathLike) and not (
        isinstance(source, str) and source.lstrip().startswith("(")
    ):
        path = Path(source)
        if path.is_dir() or path.suffix in _SOURCE_SUFFIXES:
            from wasmkit.build import build

            return build(path, progress=False, **build_options)
    return source


@pytest.fixture
def wasmkit_filter() -> Iterator[Callable[..., Any]]:
    """Load a filter (a source folder is built first); closed after the test.

    Call it as ``wasmkit_filter(source, config=..., root_id=..., lang=...,
    **vm_options)``; it returns the started plugin.
    """
    from wasmkit.host.plugin import load

    made: list[Any] = []

    def make(
        source: Any, *, build: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        options.setdefault("progress", False)
        plugin = load(_module(source, dict(build or {})), **options)
        made.append(plugin.vm)
        return plugin

    yield make
    for vm in made:
        vm.close()


@pytest.fixture
def wasmkit_driver() -> Iterator[Callable[..., Any]]:
    """A :class:`~wasmkit.testing.Driver` of a filter; closed after the test.

    Call it as ``wasmkit_driver(source, config=..., **options)``; ``source``
    may also be a plugin or a VM.
    """
    from wasmkit.testing.driver import Driver

    made: list[Driver] = []

    def make(
        source: Any, *, build: dict[str, Any] | None = None, **options: Any
    ) -> Driver:
        driver = Driver(_module(source, dict(build or {})), **options)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.close()


@pytest.fixture
def wasmkit_capture() -> Callable[..., list[Any]]:
    """Read a capture's exchanges: ``wasmkit_capture(path, limit=..., decoded=...)``."""
    from wasmkit.traffic import load_capture

    def read(path: Any, **options: Any) -> list[Any]:
        capture = load_capture(path, **options)
        try:
            return list(capture)
        finally:
            capture.close()

    return read
