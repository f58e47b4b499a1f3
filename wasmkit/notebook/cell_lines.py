"""Where a ``%%wasm`` filter failed, at the cell's line numbers.

A cell's text is the generated project's one source file (``main.go``,
``src/lib.rs``, ``assembly/index.ts``) line for line, and the ``%%wasm`` line
is line 1 of the cell. A Go panic says ``wasmkit/filters/x/main.go:37``, a
Rust panic ``panicked at src/lib.rs:37:9``, an AssemblyScript abort
``.../assembly/index.ts(37:5)``: :func:`to_cell_lines` adds the
cell's line to each such place (``cell line 38 (main.go:37)``), in error
messages and log lines, so a failure points where the user typed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# The user's file of a generated project, as the compilers' runtimes name it
# in panics; paths of dependencies (a module cache's "@v1.2.3/...", a crate's
# ".../proxy-wasm-0.2.5/src/lib.rs") are not the cell's.
_PLACES = {
    "go": re.compile(r"(?<![\w@./-])(?:[\w.-]+/)*main\.go:(\d+)(?::(\d+))?"),
    "rust": re.compile(r"(?<![\w/.-])src/lib\.rs:(\d+)(?::(\d+))?"),
    "assemblyscript": re.compile(
        r"(?<![\w@./~-])(?:[\w.-]+/)*assembly/index\.ts\((\d+):(\d+)\)"
    ),
}
_PLACES["tinygo"] = _PLACES["go"]


def map_text(text: str, lang: str, first_line: int = 2) -> str:
    """``text`` with the cell's line beside each place in the cell's source.

    Args:
        text: an error message or log line.
        lang: the cell's language (``go``, ``tinygo``, ``rust``,
            ``assemblyscript``).
        first_line: the cell line the source starts on (2: below ``%%wasm``).
    """
    pattern = _PLACES.get(lang)
    if pattern is None or "cell line" in text:
        return text

    def cell(match: re.Match[str]) -> str:
        line = int(match.group(1)) + first_line - 1
        column = f", column {match.group(2)}" if match.group(2) else ""
        place = match.group(0)  # without the generated project's folder
        if lang == "assemblyscript":
            place = "assembly/" + place.rsplit("/", 1)[-1]
        elif lang != "rust":
            place = place.rsplit("/", 1)[-1]
        return f"cell line {line}{column} ({place})"

    return pattern.sub(cell, text)


def map_error(error: BaseException | None, lang: str, first_line: int = 2) -> None:
    """Rewrite ``error``'s message in place to carry the cell's lines."""
    if error is None or not error.args or not isinstance(error.args[0], str):
        return
    mapped = map_text(error.args[0], lang, first_line)
    if mapped != error.args[0]:
        error.args = (mapped, *error.args[1:])


def map_result(result: Any, lang: str, first_line: int = 2) -> None:
    """A stream result's error and log lines at the cell's lines, in place."""
    map_error(getattr(result, "error", None), lang, first_line)
    logs: Iterable[Any] = getattr(result, "logs", ())
    for log in logs:
        log.message = map_text(log.message, lang, first_line)


def to_cell_lines(replay: Any, lang: str, first_line: int = 2) -> None:
    """Every failed flow of a replay result at the cell's lines, in place."""
    for flow in replay.flows:
        if flow.result.error is not None:
            map_result(flow.result, lang, first_line)
