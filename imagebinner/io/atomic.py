"""Atomic, no-clobber output: write to a temporary file beside the target, then rename in one step."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from imagebinner.errors import ImageBinnerError, OutputExistsError
from imagebinner.io.picasso_yaml import sidecar_path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_permissions(path: str | Path) -> None:
    """Give a file or folder made by ``mkstemp``/``mkdtemp`` (0600/0700) the permissions a plain ``open``/``mkdir``
    would give: outputs must be readable like any other file."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def _make_temp(target: Path) -> Path:
    """An empty temporary file beside ``target`` with the permissions a plain ``open`` would give."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:  # name the output the user asked for, not the temporary file
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(target)) from None
    os.close(fd)
    plain_permissions(tmp)
    return Path(tmp)


def check_writable(paths: Sequence[str | Path], overwrite: bool) -> None:
    """Raise OutputExistsError naming the first target that exists, unless ``overwrite``.

    Call this for *all* outputs of a job before writing any of them, so nothing is written half-way.
    """
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise OutputExistsError("exists already (set overwrite to replace it)", p, params=["overwrite"])


@contextlib.contextmanager
def atomic_path(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``target``.

    On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    check_writable([target], overwrite)
    tmp_path = _make_temp(target)
    try:
        yield tmp_path
        if not overwrite and target.exists():
            raise OutputExistsError("appeared while writing; not replaced", target)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_group(
    targets: Sequence[str | Path], overwrite: bool = False, keep_names: bool = False
) -> Iterator[list[Path]]:
    """Like :func:`atomic_path` for several files that belong together (e.g. HDF5 + YAML, TIF + CSV + JSON).

    All targets are checked before anything is written; they are renamed into place only when every one was
    written without error. The yielded paths are temporary files beside the targets, or with ``keep_names`` the
    targets' own names inside a hidden staging folder beside them (for writers that derive sidecar names from the
    path they are given, e.g. a Picasso ``.hdf5`` and its ``.yaml``; also keeps many-file jobs out of sight). A
    writer may leave a ``keep_names`` path unwritten only by raising.
    """
    targets = [Path(t) for t in targets]
    check_writable(targets, overwrite)
    with contextlib.ExitStack() as stack:
        if keep_names:
            stages = {folder: stack.enter_context(_staging_folder(folder)) for folder in {t.parent for t in targets}}
            tmps = [stages[t.parent] / t.name for t in targets]
        else:
            tmps = [stack.enter_context(_tmp_for(t)) for t in targets]
        yield tmps
        for tmp, target in zip(tmps, targets):
            if not tmp.exists():
                raise ImageBinnerError("was not written (writer error); nothing replaced", target)
            if not overwrite and target.exists():
                raise OutputExistsError("appeared while writing; not replaced", target)
        for tmp, target in zip(tmps, targets):
            os.replace(tmp, target)


@contextlib.contextmanager
def _staging_folder(folder: Path) -> Iterator[Path]:
    """A hidden, empty folder inside ``folder`` (created when missing), removed with whatever is left in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".imagebinner-staging-", dir=folder))
    except OSError as exc:  # name the output folder the user asked for, not the staging folder
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(folder)) from None
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def _tmp_for(target: Path) -> Iterator[Path]:
    tmp_path = _make_temp(target)
    try:
        yield tmp_path
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sidecars(path: str | Path) -> list[Path]:
    """A file and the files that belong to it: the Picasso YAML of a ``.hdf5`` or ``.raw``."""
    path = Path(path)
    return [path, sidecar_path(path)] if path.suffix.lower() in (".hdf5", ".raw") else [path]


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # pragma: no cover - unreadable parent
        return path.absolute()


def protected_inputs(inputs: Sequence[str | Path | None]) -> set[Path]:
    """Resolved paths no job may write onto: its inputs and their sidecars (symlinks and ``..`` resolved)."""
    return {_resolved(q) for p in inputs if p is not None for q in sidecars(p)}


def check_outputs(targets: Sequence[str | Path], inputs: Sequence[str | Path | None], overwrite: bool) -> None:
    """The one pre-write check of every writer: no target named twice, none is an input of the job (or an
    input's sidecar, even with ``overwrite``), and none exists unless ``overwrite``. Raises before any write."""
    seen: set[Path] = set()
    for t in targets:
        r = _resolved(Path(t))
        if r in seen:
            raise OutputExistsError("named twice among the outputs of this job", t)
        seen.add(r)
    protected = protected_inputs(inputs)
    for t in targets:
        if _resolved(Path(t)) in protected:
            raise OutputExistsError("is an input of this job (or belongs to one); choose another output", t)
    check_writable(targets, overwrite)
