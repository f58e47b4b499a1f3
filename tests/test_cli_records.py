"""``wasmkit replay --records-to`` and compact ``--json`` on Dask workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .replay.test_run import ADD, FLOW
from .test_cli import wasmkit, write

# Per-VM numbering and timing differ between one VM and several.
_VOLATILE = {"duration_us", "context_id", "us", "micros"}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _records(path: Path) -> list[Any]:
    return [_stable(r) for r in json.loads(path.read_text())]


def test_compact_json_on_two_workers_equals_one_process(tmp_path):
    wat = write(tmp_path, "add.wat", ADD)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    first = wasmkit("replay", wat, str(FLOW), "--json", str(one), timeout=180)
    assert first.returncode == 0, first.stderr
    second = wasmkit(
        "replay", wat, str(FLOW), "--workers", "2", "--keep", "summary",
        "--json", str(two), timeout=300,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "17 flows replayed" in second.stdout
    got, want = _records(two), _records(one)
    assert len(got) == 17
    assert got == want


def test_records_to_a_folder_names_its_files_in_a_manifest(tmp_path):
    wat = write(tmp_path, "add.wat", ADD)
    folder = tmp_path / "records"
    proc = wasmkit(
        "replay", wat, str(FLOW), "--workers", "2", "--keep", "summary",
        "--records-to", str(folder), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest
    lines = [
        json.loads(line)
        for part in sorted(folder.glob("part-*.records.jsonl"))
        for line in part.read_text().splitlines()
    ]
    assert len(lines) == 17
    added = [r["request"]["headers"]["after"] for r in lines]
    assert all(["x-replayed", "yes"] in h for h in added), added[0]
