"""wasmkit against a real Envoy: the tutorials' own filters.

Each ``%%wasm`` cell of ``notebooks/*.ipynb`` is read from the notebook (its
source, language, root id and configuration: a literal, or the literal the
notebook assigns to the variable it names), built with ``wasmkit.build`` as
the magic builds it (cached after the first time), and replayed over the API
capture and the edge-case capture through wasmkit and through Envoy. Each
test asserts that no difference is left unexplained.
"""

from __future__ import annotations

import ast
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

import wasmkit
from wasmkit.envoy import EnvoyRunner
from wasmkit.envoy.differ import EnvoyComparison
from wasmkit.replay import run
from wasmkit.traffic import load_capture

from .conftest import ROOT
from .test_against import CAPTURES, LOG_LEVEL, check

NOTEBOOKS = ROOT / "notebooks"
USED = ["api.flow", "edges.flow"]

# The callout answers tutorial 05 gives its table responder.
RESPONDERS: dict[str, Any] = {
    "05-http-callouts.ipynb": {
        "auth /check": {"status": 200, "headers": {"x-user": "table-user"}}
    },
}


@dataclass(frozen=True)
class Cell:
    """One ``%%wasm`` cell of a tutorial."""

    notebook: str
    name: str
    lang: str
    root_id: str
    config: str
    source: str

    @property
    def id(self) -> str:
        return f"{self.notebook[:2]}-{self.name}"


def _assigned(cells: list[str], name: str) -> Any:
    # The literal the notebook last assigns to ``name`` before the cell.
    value: Any = None
    for source in cells:
        # Line magics (%load_ext ...) are not Python: blank them.
        python = "\n".join(
            "" if ln.lstrip().startswith(("%", "!")) else ln
            for ln in source.splitlines()
        )
        try:
            tree = ast.parse(python)
        except SyntaxError:  # a cell magic
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                value = ast.literal_eval(node.value)
    if value is None:
        raise LookupError(f"no literal assignment to {name!r}")
    return value


def _config(text: str | None, earlier: list[str]) -> str:
    if text is None:
        return ""
    if text.isidentifier():
        value = _assigned(earlier, text)
        return value if isinstance(value, str) else json.dumps(value)
    return text


def cells() -> list[Cell]:
    """Every ``%%wasm`` cell of every tutorial, in order."""
    out = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        code = [
            c.source for c in nbformat.read(path, as_version=4).cells
            if c.cell_type == "code"
        ]  # fmt: skip
        for i, source in enumerate(code):
            if not source.startswith("%%wasm"):
                continue
            line, _, body = source.partition("\n")
            words = shlex.split(line)[1:]
            name, flags = words[0], dict(zip(words[1::2], words[2::2], strict=False))
            out.append(
                Cell(
                    path.name,
                    name,
                    flags["--lang"],
                    flags.get("--root-id", ""),
                    _config(flags.get("--config"), code[:i]),
                    body,
                )
            )
    return out


CELLS = cells()


def test_every_tutorial_cell_is_found():
    assert len(CELLS) >= 10
    assert {c.lang for c in CELLS} == {"assemblyscript", "rust", "go"}


# Log text a tutorial filter computes from the clock, which is virtual in
# wasmkit (the responder answers at once) and the wall clock in Envoy (its
# callout takes a millisecond or so): tutorial 05 logs the callout's latency.
CLOCK_LOGS = {"05-http-callouts.ipynb": r"(answered \d+ after )\d+(?= ms)"}

# Differences not modelled yet, asserted to be still there (so the test says
# so when they are gone): none today.
KNOWN_GAPS: dict[str, str] = {}


@pytest.fixture(scope="module", params=CELLS, ids=[c.id for c in CELLS])
def compared(request: pytest.FixtureRequest) -> tuple[Any, EnvoyComparison]:
    cell = request.param
    artifact = wasmkit.build(cell.source, cell.lang, root_id=cell.root_id or None)
    responder = RESPONDERS.get(cell.notebook)
    paths = [CAPTURES[name] for name in USED]
    ours = run.replay(
        artifact.path,
        paths,
        root_id=cell.root_id,
        config=cell.config,
        responder=responder,
        log_level=LOG_LEVEL,
        progress=False,
    )
    with EnvoyRunner(
        artifact.path,
        root_id=cell.root_id,
        config=cell.config,
        responder=responder,
        log_level=LOG_LEVEL,
    ) as runner:
        theirs = runner.replay(load_capture(paths))
    comparison = wasmkit.compare(ours, theirs)
    assert isinstance(comparison, EnvoyComparison)
    return cell, comparison


def _ranges() -> dict[str, range]:
    out, start = {}, 0
    for name in USED:
        n = sum(1 for _ in load_capture(CAPTURES[name]))
        out[name] = range(start, start + n)
        start += n
    return out


RANGES = _ranges()


@pytest.mark.parametrize("capture", USED)
def test_tutorial_filter_agrees_with_envoy(compared, capture):
    cell, comparison = compared
    flows = [f for f in comparison.flows if f.index in RANGES[capture]]
    assert len(flows) == len(RANGES[capture])
    checked = EnvoyComparison(comparison.wasmkit, comparison.envoy, flows)
    if cell.id in KNOWN_GAPS:
        gaps = checked.unexplained
        assert gaps, f"{cell.id} agrees with Envoy now: drop it from KNOWN_GAPS"
        assert all(d.field.startswith("logs[") for d in gaps), [d.line() for d in gaps]
        assert all("body: " in d.wasmkit + d.envoy for d in gaps)
        return
    check(checked, masked=CLOCK_LOGS.get(cell.notebook))


def test_cells_are_read_as_the_magic_reads_them():
    by_id = {c.id: c for c in CELLS}
    gate = by_id["04-gate"]
    assert (gate.lang, gate.root_id, gate.config) == (
        "assemblyscript",
        "gate",
        "s3cret",
    )
    counter = by_id["06-counter"]
    assert json.loads(counter.config) == {"name": "solo", "collector": True}
    assert json.loads(by_id["05-auth"].config)["cluster"] == "auth"
    assert Path(NOTEBOOKS / gate.notebook).is_file()
