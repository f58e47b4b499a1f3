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

from collections.abc import Callable, Iterator
from typing import Any

import pytest


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
    from wasmkit.testing.driver import built

    return built(source, **build_options)


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
