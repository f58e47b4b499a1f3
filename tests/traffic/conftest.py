"""Traffic tests: a private warm-load cache per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def capture_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "wasmkit-cache"
    monkeypatch.setenv("WASMKIT_CACHE", str(root))
    return root / "captures"
