"""``doctor()``: which toolchains are there, and do they build a filter."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wasmkit.build.driver import build
from wasmkit.build.languages import LANGUAGES, REQUIRED, normalize, toolchain
from wasmkit.build.toolchain import build_cache, kit_cache
from wasmkit.errors import BuildError, ToolchainNotFoundError


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolchainStatus:
    """What ``doctor`` found out about one language's toolchain."""

    lang: str
    """The language."""
    required: bool
    """Whether the kit needs it (TinyGo is optional unless asked for)."""
    found: bool
    """Whether the tools are installed."""
    versions: Mapping[str, str] = field(default_factory=dict)
    """Their versions."""
    works: bool | None = None
    """Whether the tiny test filter built (``None``: not tried)."""
    build_ms: float | None = None
    """How long that build took (ms)."""
    problem: str | None = None
    """What is wrong."""
    install: str | None = None
    """How to install what is missing."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "lang": self.lang,
            "required": self.required,
            "found": self.found,
            "versions": dict(self.versions),
            "works": self.works,
            "build_ms": None if self.build_ms is None else round(self.build_ms, 1),
            "problem": self.problem,
            "install": self.install,
        }

    @property
    def state(self) -> str:
        """``ok``, ``missing``, ``broken`` or ``found`` (not built)."""
        if not self.found:
            return "missing"
        if self.works is None:
            return "found"
        return "ok" if self.works else "broken"


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """The state of every toolchain."""

    toolchains: tuple[ToolchainStatus, ...]
    """One status per language."""

    @property
    def ok(self) -> bool:
        """Every required toolchain is there and (when tried) builds."""
        return all(
            t.found and t.works is not False for t in self.toolchains if t.required
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: ``ok``, the cache folders and the toolchains."""
        return {
            "ok": self.ok,
            "kit_cache": str(kit_cache()),
            "build_cache": str(build_cache()),
            "toolchains": [t.to_json() for t in self.toolchains],
        }

    def __str__(self) -> str:
        lines = []
        for t in self.toolchains:
            versions = ", ".join(f"{k} {v}" for k, v in t.versions.items())
            timing = (
                ""
                if t.build_ms is None
                else f" (tiny filter in {t.build_ms / 1000:.1f} s)"
            )
            optional = "" if t.required else " [optional]"
            lines.append(f"{t.lang:<15} {t.state:<8} {versions}{timing}{optional}")
            if t.problem:
                lines.extend("    " + line for line in t.problem.splitlines()[:12])
            if t.install and t.install not in (t.problem or ""):
                lines.append(f"    install: {t.install}")
        lines.append(f"kit cache       {kit_cache()}")
        lines.append(f"build cache     {build_cache()}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


def doctor(
    langs: Iterable[str] | None = None,
    *,
    build_filters: bool = True,
    timeout: float = 900.0,
) -> DoctorReport:
    """Check each toolchain: its tools, their versions, and a build of a tiny filter.

    The tiny filter is compiled for real (not taken from the build cache), so
    ``works`` proves the toolchain builds today. A toolchain installed but not
    yet set up is set up first (that downloads once).

    Args:
        langs: the languages to check (default: all, TinyGo optional).
        build_filters: build the tiny filters (``False``: only look for tools).
        timeout: time limit of each build (s).
    """
    chosen = [normalize(lang) for lang in langs] if langs else list(LANGUAGES)
    statuses = []
    for lang in chosen:
        tool = toolchain(lang)
        required = lang in REQUIRED or langs is not None
        try:
            versions = tool.versions(setup=build_filters)
        except ToolchainNotFoundError as exc:
            statuses.append(
                ToolchainStatus(
                    lang=lang,
                    required=required,
                    found=False,
                    problem=str(exc),
                    install=tool.install,
                )
            )
            continue
        works: bool | None = None
        build_ms: float | None = None
        problem: str | None = None
        if build_filters:
            try:
                artifact = build(
                    tool.tiny_filter,
                    lang,
                    root_id="wasmkit_doctor",
                    force=True,
                    timeout=timeout,
                )
            except BuildError as exc:
                works, problem = False, str(exc)
            else:
                works, build_ms = True, artifact.build_ms
        statuses.append(
            ToolchainStatus(
                lang=lang,
                required=required,
                found=True,
                versions=versions,
                works=works,
                build_ms=build_ms,
                problem=problem,
                install=tool.install if works is False else None,
            )
        )
    return DoctorReport(tuple(statuses))
