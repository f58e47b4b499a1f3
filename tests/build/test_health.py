"""doctor(): tools, versions, a real build of a tiny filter, install hints."""

from __future__ import annotations

import json

import pytest

import wasmkit
from wasmkit.build import DoctorReport, ToolchainStatus, doctor


@pytest.mark.toolchain("go")
def test_doctor_builds_a_tiny_filter():
    report = doctor(["go"])
    (go,) = report.toolchains
    assert go.found and go.works is True
    assert go.versions["go"].startswith("go1.")
    assert go.build_ms is not None and go.build_ms > 0
    assert go.problem is None and go.install is None
    assert report.ok


def test_doctor_without_go_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    report = doctor(["go", "assemblyscript"])
    assert not report.ok
    go, asc = report.toolchains
    assert (go.found, go.works, go.state) == (False, None, "missing")
    assert go.install is not None and "https://go.dev/dl/" in go.install
    assert asc.install is not None and "apt-get install -y nodejs npm" in asc.install
    text = str(report)
    assert "go              missing" in text and "go.dev" in text


def test_tinygo_is_optional_unless_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    optional = ToolchainStatus(lang="tinygo", required=False, found=False)
    assert DoctorReport((optional,)).ok
    assert not doctor(["tinygo"], build_filters=False).ok


def test_report_json_shape():
    report = DoctorReport(
        (
            ToolchainStatus(
                lang="go",
                required=True,
                found=True,
                versions={"go": "go1.26"},
                works=True,
                build_ms=12.34,
            ),
            ToolchainStatus(
                lang="rust",
                required=True,
                found=True,
                works=False,
                problem="boom",
                install="apt",
            ),
        )
    )
    record = json.loads(json.dumps(report.to_json()))
    assert record["ok"] is False
    assert set(record) == {"ok", "kit_cache", "build_cache", "toolchains"}
    assert record["toolchains"][0] == {
        "lang": "go",
        "required": True,
        "found": True,
        "versions": {"go": "go1.26"},
        "works": True,
        "build_ms": 12.3,
        "problem": None,
        "install": None,
    }
    assert "<pre>" in report._repr_html_()


def test_doctor_is_reachable_as_wasmkit_doctor():
    assert wasmkit.doctor is doctor
