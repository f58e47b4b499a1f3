"""Project-level rules: pins in sync, curated exports, layering."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker

import wasmkit

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names of the PyPI packages where they differ.
CONDA_NAMES: dict[str, str] = {}


def _split(spec: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec.strip())
    assert match, spec
    return match.group(1).lower(), match.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str))
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    conda.update(_split(d) for d in pip if not d.startswith("-"))
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for spec in wanted:
        spec, _, marker = spec.partition(";")
        # A range that follows the Python version: conda's solver keeps older
        # Pythons on the releases they support, so environment.yml holds the
        # newest Python's range.
        if marker and not Marker(marker).evaluate({"python_version": "3.13"}):
            continue
        name, version = _split(spec)
        assert conda.get(CONDA_NAMES.get(name, name)) == version, spec
    for tool in ("nodejs", "go", "rust"):
        assert tool in conda, tool


def test_wasmtime_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [d for d in project["dependencies"] if d.startswith("wasmtime")]
    from wasmkit.host.vm import WASMTIME_VERSION

    assert pin == f"wasmtime=={WASMTIME_VERSION}"
    from importlib.metadata import version

    assert version("wasmtime") == WASMTIME_VERSION


@pytest.mark.parametrize(
    "name",
    [
        "wasmkit",
        "wasmkit.host",
        "wasmkit.abi",
        "wasmkit.traffic",
        "wasmkit.notebook",
        "wasmkit.testing",
    ],
)
def test_all_is_sorted_and_complete(name):
    module = importlib.import_module(name)
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


def test_version():
    from importlib.metadata import version

    assert wasmkit.__version__ == version("wasmkit")


def test_core_imports_no_notebook_or_pandas():
    code = (
        "import sys, wasmkit, wasmkit.host, wasmkit.cli;"
        "bad = [m for m in ('pandas', 'IPython', 'ipywidgets', 'mitmproxy')"
        " if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_abi_layer_is_stdlib_only():
    stdlib = sys.stdlib_module_names
    for path in (ROOT / "wasmkit" / "abi").glob("*.py"):
        for match in re.finditer(r"^(?:from|import) ([\w.]+)", path.read_text(), re.M):
            top = match.group(1).split(".")[0]
            ok = top in stdlib or match.group(1).startswith(
                ("wasmkit.abi", "wasmkit.errors")
            )
            assert ok or top == "__future__", f"{path.name} imports {match.group(1)}"


def test_only_vm_imports_wasmtime():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "wasmkit").rglob("*.py")
        if re.search(r"^\s*(import|from) wasmtime", path.read_text(), re.M)
        and str(path.relative_to(ROOT / "wasmkit"))
        not in ("host/vm.py", "host/engine.py")
    ]
    assert offenders == []


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:8]
    commands = [line.split("#")[0].strip() for line in head if line.startswith("make ")]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
