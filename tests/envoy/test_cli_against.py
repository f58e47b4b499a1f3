"""``wasmkit replay ... --against-envoy``: the differences, printed, and the exit code."""

from __future__ import annotations

import re

from wasmkit import cli

from .conftest import ADD_HEADERS, API_FLOW, sample, wat
from .test_failures import TRAP

LINE = re.compile(r"^flow \d+: \S.*: wasmkit .* \| envoy .*$")


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    code = cli.main(["replay", *argv, "--against-envoy"])
    out = capsys.readouterr().out.splitlines()
    start = next(i for i, ln in enumerate(out) if ln.startswith("wasmkit and Envoy"))
    return code, out[start:]


def _check(code: int, lines: list[str]) -> None:
    headline, normalized, *rest = lines
    assert normalized.startswith("normalized: ")
    differences = [ln for ln in rest if not ln.startswith("note: ")]
    if headline.endswith(", identical"):
        assert code == 0 and differences == []
    else:
        # One line per differing field; exit 1.
        assert code == 1 and differences, lines
        assert all(LINE.match(ln) for ln in differences), differences
        count = int(re.search(r"(\d+) unexplained", headline).group(1))
        assert count == len(differences)


def test_against_envoy_prints_each_difference_and_exits_by_them(capsys):
    code, lines = _run(
        capsys,
        str(sample("add_headers", "rust")),
        str(API_FLOW),
        "--root-id",
        "add_headers",
        "--config",
        ADD_HEADERS,
        "--limit",
        "3",
    )
    assert lines[0].startswith("wasmkit and Envoy ")
    assert "3 exchanges" in lines[0]
    _check(code, lines)


def test_a_trapping_filter_fails_the_same_way(capsys, tmp_path):
    path = tmp_path / "trap.wasm"
    path.write_bytes(wat(TRAP))
    code, lines = _run(capsys, str(path), str(API_FLOW), "--limit", "2")
    _check(code, lines)


def test_against_envoy_needs_every_flow(capsys):
    code = cli.main(
        [
            "replay",
            str(sample("add_headers", "rust")),
            str(API_FLOW),
            "--keep",
            "changed",
            "--against-envoy",
        ]
    )
    assert code == 1
    assert "--against-envoy compares every flow" in capsys.readouterr().err
