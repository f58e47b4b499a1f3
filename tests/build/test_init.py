"""The public surface of wasmkit.build."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import wasmkit
import wasmkit.build as package  # noqa: F401  (the function shadows it on wasmkit)


def test_all_is_sorted_and_complete():
    module = sys.modules["wasmkit.build"]
    exported = module.__all__
    assert exported == sorted(exported)
    for attr in exported:
        assert hasattr(module, attr), attr
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and not isinstance(v, type(sys))
        and getattr(v, "__module__", "").startswith("wasmkit")
    }
    assert public <= set(exported)
    assert {"Artifact", "build", "doctor"} <= set(exported)


def test_wasmkit_exports_build():
    from wasmkit.build import build

    assert "build" in wasmkit.__all__
    assert wasmkit.build is build
    assert wasmkit.Artifact is sys.modules["wasmkit.build"].Artifact
    assert "doctor" in wasmkit.__all__


def test_build_layer_is_stdlib_only():
    root = Path(sys.modules["wasmkit.build"].__file__ or "").parent
    for path in root.glob("*.py"):
        for match in re.finditer(r"^(?:from|import) ([\w.]+)", path.read_text(), re.M):
            name = match.group(1)
            top = name.split(".")[0]
            ok = top in sys.stdlib_module_names or top == "__future__"
            ok = ok or name.startswith(("wasmkit.build", "wasmkit.errors"))
            assert ok, f"{path.name} imports {name}"
