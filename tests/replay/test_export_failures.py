"""Exports that fail leave nothing behind; a partial replay's say so."""

from __future__ import annotations

import dataclasses
import errno
import json

import pytest
from mitmproxy.io import FlowReader

from tests.replay.test_exports import EDIT, FLOW
from tests.traffic import helpers
from wasmkit.replay.run import replay
from wasmkit.traffic import _atomic

WRITERS = ["to_json", "to_flow", "to_har", "to_html"]


@pytest.fixture(scope="module")
def result():
    return replay(EDIT, FLOW)


@pytest.fixture
def read_only(tmp_path):
    d = helpers.unwritable_dir(tmp_path)
    yield d
    helpers.release_dir(d)


def _temporaries(d):
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("after", [0, 4096])
def test_a_full_disk_keeps_the_old_file(result, tmp_path, monkeypatch, writer, after):
    target = tmp_path / "export"
    target.write_text("the previous export")
    monkeypatch.setattr(_atomic.os, "fdopen", helpers.FullDisk(after))
    with pytest.raises(OSError) as info:
        getattr(result, writer)(target)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(target)  # never None
    assert _atomic.describe(info.value) == f"{target}: No space left on device"
    assert target.read_text() == "the previous export"
    assert _temporaries(tmp_path) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_dev_full_fails_with_its_name(result, writer):
    with pytest.raises(OSError) as info:
        getattr(result, writer)("/dev/full")
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"


@pytest.mark.parametrize("writer", WRITERS)
def test_an_unwritable_directory_fails_with_the_path(result, read_only, writer):
    target = read_only / "export"
    with pytest.raises(OSError) as info:
        getattr(result, writer)(target)
    assert info.value.filename == str(target)
    assert not target.exists()


def test_a_partial_replay_is_marked_in_every_export(result, tmp_path):
    part = dataclasses.replace(result, flows=result.flows[:5], interrupted=True)
    note = part.partial_note()
    assert note == (
        "partial replay: interrupted after 5 flows; the results hold only those"
    )
    part.to_json(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["interrupted"] is True and doc["partial"] is True
    assert doc["flows"] == 5 and doc["note"] == note
    assert [r["index"] for r in doc["records"]] == [0, 1, 2, 3, 4]
    part.to_har(tmp_path / "p.har")
    har = json.loads((tmp_path / "p.har").read_text())
    assert har["log"]["comment"] == note and len(har["log"]["entries"]) == 5
    part.to_flow(tmp_path / "p.flow")
    with open(tmp_path / "p.flow", "rb") as fo:
        flows = list(FlowReader(fo).stream())
    assert len(flows) == 5 and all(f.comment == note for f in flows)
    part.to_html(tmp_path / "p.html")
    assert "Partial replay: interrupted after 5 flows" in (
        tmp_path / "p.html"
    ).read_text(encoding="utf-8")
    assert "Partial replay" in part._repr_html_()
    from wasmkit.replay.report import render_summary

    assert render_summary(part).splitlines()[-1] == note


def test_a_complete_replay_exports_as_before(result, tmp_path):
    assert result.partial_note() is None
    result.to_json(tmp_path / "c.json")
    assert isinstance(json.loads((tmp_path / "c.json").read_text()), list)
    result.to_har(tmp_path / "c.har")
    assert "comment" not in json.loads((tmp_path / "c.har").read_text())["log"]
