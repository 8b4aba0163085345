"""Atomic, no-clobber outputs."""

import os
import stat

import pytest

from imagebinner.errors import OutputExistsError
from imagebinner.io import atomic_group, atomic_path


def test_atomic_path_success_and_permissions(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("data")
        assert not target.exists()
    assert target.read_text() == "data"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite_unless_asked(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(OutputExistsError, match="out.txt"):
        with atomic_path(target):
            pass
    assert target.read_text() == "old"
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_group_is_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.csv"
    b.write_text("existing")
    with pytest.raises(OutputExistsError, match="b.csv"):
        with atomic_group([a, b]):
            pass
    assert not a.exists() and b.read_text() == "existing"
    with pytest.raises(ValueError):
        with atomic_group([a, tmp_path / "c.json"]) as (ta, tc):
            ta.write_text("1")
            raise ValueError("second file failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv"]
