"""The filter object a notebook works with: a built module and a loaded plugin."""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import Callable, Sequence
from typing import Any

from wasmkit.build import Artifact
from wasmkit.errors import FilterError
from wasmkit.host import HttpMessage, Plugin, StreamResult, load
from wasmkit.host import request as make_request
from wasmkit.notebook import cell_lines
from wasmkit.replay.results import ReplayResult
from wasmkit.replay.run import replay

PathArg = str | os.PathLike[str]


def _default_name(artifact: Artifact) -> str:
    source = artifact.source
    # A sample's folder is named after its language: show the filter's too.
    if source.name in ("assemblyscript", "rust", "go", "tinygo"):
        return source.parent.name
    return source.name


class Filter:
    """A built filter, loaded and ready to run: what ``%%wasm NAME`` binds.

    It keeps the :class:`~wasmkit.build.Artifact` and one loaded
    :class:`~wasmkit.host.Plugin`; :meth:`reload` starts a fresh VM (new
    state, same module). Shown in a notebook, it reports the language, size,
    ABI version, callbacks, build time and whether the build cache answered.

    Args:
        artifact: the built module.
        config: the plugin configuration.
        root_id: the plugin's root id.
        name: how replays and the explorer name it (default: the source's
            folder or file name and the language, e.g. ``json_rewrite/go``).
        cell_first_line: for a filter built from a ``%%wasm`` cell, the cell
            line its source starts on (2): failures (a Go or Rust panic) then
            name the cell's line beside the generated file's.
        **vm_options: for :class:`wasmkit.host.FilterVm` (``limits``,
            ``properties``, ``responder`` ...), used by every load and replay.

    Raises:
        FilterLoadError: the module cannot be loaded or started.
        FilterStartError: the filter rejected its configuration.
    """

    def __init__(
        self,
        artifact: Artifact,
        *,
        config: bytes | str = b"",
        root_id: str = "",
        name: str | None = None,
        cell_first_line: int | None = None,
        **vm_options: Any,
    ) -> None:
        self.artifact = artifact
        self.name = name or _default_name(artifact)
        self.cell_first_line = cell_first_line
        """The cell line the source starts on, for a ``%%wasm`` filter."""
        self.config = config.encode() if isinstance(config, str) else config
        self.root_id = root_id
        self.vm_options = vm_options
        self._plugin: Plugin | None = None
        self.load_ms = 0.0
        """How long the last load took (ms): module code, instantiation, start."""
        self.reload()

    @property
    def plugin(self) -> Plugin:
        """The loaded plugin (reloaded if it was closed)."""
        if self._plugin is None:
            self.reload()
        assert self._plugin is not None
        return self._plugin

    def reload(self) -> Plugin:
        """Close the VM and load the module again: fresh state, same module."""
        self.close()
        try:
            self._plugin = load(
                self.artifact,
                config=self.config,
                root_id=self.root_id,
                **self.vm_options,
            )
        except FilterError as exc:
            if self.cell_first_line is not None:
                cell_lines.map_error(exc, self.artifact.lang, self.cell_first_line)
            raise
        self.load_ms = self._plugin.load_ms or 0.0
        return self._plugin

    def run(
        self,
        request: HttpMessage | None = None,
        response: HttpMessage | Callable[[HttpMessage], HttpMessage] | None = None,
        **options: Any,
    ) -> StreamResult:
        """Run one HTTP exchange through the plugin (see ``Plugin.run_http``).

        ``request`` defaults to ``wasmkit.request()`` (``GET /``), ``response``
        to an empty 200. A filter failure is reported in the result.
        """
        result = self.plugin.run_http(
            make_request() if request is None else request, response, **options
        )
        if self.cell_first_line is not None:
            cell_lines.map_result(result, self.artifact.lang, self.cell_first_line)
        return result

    def replay(
        self, capture: PathArg | Sequence[PathArg], **options: Any
    ) -> ReplayResult:
        """Replay capture files through a fresh VM of this filter.

        Uses this filter's configuration, root id and VM options; ``options``
        go to :func:`wasmkit.replay.run.replay` (``filter_expr``, ``limit``
        ...). The plugin of :meth:`run` is not touched.
        """
        kwargs: dict[str, Any] = {
            "config": self.config,
            "root_id": self.root_id,
            **self.vm_options,
        }
        kwargs.update(options)
        result = replay(self.artifact.path, capture, **kwargs)
        result.filter = f"{self.name} ({self.artifact.lang})"
        if self.cell_first_line is not None:
            cell_lines.to_cell_lines(result, self.artifact.lang, self.cell_first_line)
        return result

    def close(self) -> None:
        """Release the VM (a later :attr:`plugin` loads it again)."""
        plugin, self._plugin = self._plugin, None
        if plugin is not None:
            # A filter that traps in on_done must not make closing fail.
            with contextlib.suppress(FilterError):
                plugin.vm.close()

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def abi_version(self) -> str:
        """The proxy-wasm ABI version the module declares, e.g. ``0.2.1``."""
        return str(self.plugin.vm.abi_version.value)

    @property
    def callbacks(self) -> list[str]:
        """The ``proxy_on_*`` callbacks the module exports, in export order."""
        exports = self.plugin.vm.module.exports
        return [name for name in exports if name.startswith("proxy_on_")]

    def __repr__(self) -> str:
        return f"<wasmkit Filter {self.name!r}: {self.artifact.summary()}>"

    def _repr_html_(self) -> str:
        a = self.artifact
        timing = (
            f"{a.build_ms:.0f} ms (cache hit)"
            if a.cache_hit
            else f"{a.build_ms / 1000:.1f} s (compiled)"
        )
        tools = ", ".join(f"{k} {v}" for k, v in a.toolchain.items())
        module = self.plugin.vm.module
        code = {
            "compiled": f"compiled by wasmtime in {module.load_ms / 1000:.1f} s",
            "disk": f"code from the module cache, {module.load_ms:.0f} ms",
            "memory": "code already in this kernel",
        }[module.origin]
        hits = [
            f"build cache: {'yes' if a.cache_hit else 'no'}",
            {
                "compiled": "module cache: no",
                "disk": "module cache: yes",
                "memory": "module cache: yes (loaded in this kernel)",
            }[module.origin],
        ]
        rows = [
            ("language", f"{a.lang} ({tools})" if tools else a.lang),
            ("ABI version", self.abi_version),
            ("size", f"{a.size:,} bytes"),
            ("root id", self.root_id or '""'),
            ("build time", timing),
            ("load time", f"{self.load_ms:.0f} ms ({code})"),
            ("cache hits", ", ".join(hits)),
            ("callbacks", ", ".join(self.callbacks) or "none"),
            ("module", str(a.path)),
        ]
        # Long values (the module's path in the cache) wrap inside the card.
        cell = "text-align:left;vertical-align:top;padding:1px 8px 1px 0"
        wrap = f"{cell};overflow-wrap:anywhere;word-break:break-all"
        body = "".join(
            f"<tr><th style='{cell};white-space:nowrap'>{html.escape(k)}</th>"
            f"<td style='{wrap if k == 'module' else cell}'>"
            + (f"<code>{html.escape(v)}</code>" if k == "module" else html.escape(v))
            + "</td></tr>"
            for k, v in rows
        )
        warnings = "".join(
            f"<li><code>{html.escape(str(w))}</code></li>" for w in a.warnings
        )
        extra = f"<p>warnings:</p><ul>{warnings}</ul>" if warnings else ""
        return (
            "<div class='wasmkit-filter-card' style='max-width:100%;overflow:hidden'>"
            f"<p><b>{html.escape(self.name)}</b> · wasmkit filter "
            f"({html.escape(a.lang)}, ABI {html.escape(self.abi_version)}, "
            f"<code>{html.escape(a.path.name)}</code>)</p>"
            "<table style='table-layout:fixed;width:100%;max-width:60em'>"
            "<colgroup><col style='width:9em'><col></colgroup>"
            f"{body}</table>{extra}</div>"
        )
