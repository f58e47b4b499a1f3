"""Go build tags and GOFLAGS through the Python API, the command line and the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import wasmkit
from wasmkit.build import build
from wasmkit.build.driver import split_flags, split_tags

TAGGED = Path(__file__).resolve().parents[1] / "data" / "filters" / "build_tags" / "go"


def _tag(artifact) -> bytes | None:
    plugin = wasmkit.load(artifact)
    result = plugin.run_http(wasmkit.request(), wasmkit.response())
    plugin.vm.close()
    assert result.error is None and result.request_after is not None
    return result.request_after.get(b"x-tag")


def test_tags_are_split_and_checked():
    assert split_tags("a,b c") == ("a", "b", "c")
    assert split_tags(["x", "y,x"]) == ("x", "y")
    assert split_tags("coraza.rule.multiphase_evaluation") == (
        "coraza.rule.multiphase_evaluation",
    )
    with pytest.raises(ValueError, match="not a Go build tag"):
        split_tags("a;rm -rf")
    assert split_flags("-tags=a -ldflags='-s -w'") == ("-tags=a", "-ldflags=-s -w")


def test_tags_for_other_languages_are_refused():
    with pytest.raises(ValueError, match="apply to Go and TinyGo"):
        build("(module)", "assemblyscript", tags="x")


@pytest.mark.toolchain("go")
def test_tags_reach_go_build_and_the_key():
    plain = build(TAGGED)
    tagged = build(TAGGED, tags="wasmkit_extra")
    assert tagged.key != plain.key
    assert _tag(plain) == b"off"
    assert _tag(tagged) == b"on"
    assert build(TAGGED, tags=["wasmkit_extra"]).cache_hit


@pytest.mark.toolchain("go")
def test_go_flags_and_the_users_goflags_are_kept(monkeypatch):
    by_flag = build(TAGGED, go_flags="-tags=wasmkit_extra")
    assert _tag(by_flag) == b"on"
    plain_key = build(TAGGED).key
    monkeypatch.setenv("GOFLAGS", "-tags=wasmkit_extra")
    by_env = build(TAGGED)
    assert by_env.key != plain_key  # $GOFLAGS is part of the key
    assert _tag(by_env) == b"on"


@pytest.mark.toolchain("go")
def test_tags_on_the_command_line(tmp_path):
    out = tmp_path / "tagged.wasm"
    built = subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", "build", str(TAGGED), "--tags",
         "wasmkit_extra", "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert _tag(out) == b"on"
    run = subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", "run", str(TAGGED), "--tags",
         "wasmkit_extra", "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    after = dict(map(tuple, json.loads(run.stdout)["request"]["headers"]["after"]))
    assert after["x-tag"] == "on"
