from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_capture_cache(tmp_path_factory, monkeypatch):
    # Replays read captures through the warm-load cache; keep it out of ~/.cache.
    monkeypatch.setenv("WASMKIT_CACHE", str(tmp_path_factory.mktemp("kit-cache")))
