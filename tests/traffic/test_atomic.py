"""Files written whole or not at all."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from tests.traffic import helpers
from wasmkit.traffic import _atomic


@pytest.fixture
def read_only(tmp_path):
    d = helpers.unwritable_dir(tmp_path)
    yield d
    helpers.release_dir(d)


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_the_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with _atomic.AtomicFile(target, "w") as fo:
        fo.write("new")
        assert target.read_text() == "old"
        assert len(_leftovers(tmp_path)) == 1
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), _atomic.AtomicFile(target, "w") as fo:
        fo.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_an_interrupt_leaves_no_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(KeyboardInterrupt), _atomic.AtomicFile(target, "w") as fo:
        fo.write("half")
        raise KeyboardInterrupt
    assert not target.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("after", [0, 10, 100_000])
def test_a_full_disk_names_the_target(tmp_path, monkeypatch, after):
    full = helpers.FullDisk(after)
    monkeypatch.setattr(_atomic.os, "fdopen", full)
    target = tmp_path / "out.json"
    with pytest.raises(OSError) as info:
        _atomic.write_text(target, "x" * 200_000)
    err = info.value
    assert err.errno == errno.ENOSPC and err.filename == str(target)
    assert _atomic.describe(err) == f"{target}: No space left on device"
    assert not target.exists() and _leftovers(tmp_path) == []


def test_dev_full_is_written_in_place_and_fails_with_its_name():
    with pytest.raises(OSError) as info:
        _atomic.write_text("/dev/full", "x" * 10)
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # still the device


def test_an_unwritable_directory_names_the_target(read_only):
    target = read_only / "out.json"
    with pytest.raises(OSError) as info:
        _atomic.write_text(target, "x")
    assert info.value.filename == str(target)
    assert info.value.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    with pytest.raises(OSError) as checked:
        _atomic.check_writable(target)
    assert checked.value.filename == str(target)


def test_check_writable(tmp_path):
    _atomic.check_writable(tmp_path / "new.json")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(IsADirectoryError):
        _atomic.check_writable(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        _atomic.check_writable(tmp_path / "missing" / "x.json")
    assert info.value.filename == str(tmp_path / "missing" / "x.json")
    _atomic.check_writable("/dev/null")


def test_a_symlink_and_the_mode_are_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    _atomic.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        _atomic.write_text(tmp_path / "n.json", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "n.json").stat().st_mode) == 0o640
