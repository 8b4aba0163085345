"""Atomic, no-clobber output: write to a temporary file beside the target, then rename in one step."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from imagebinner.errors import OutputExistsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_temp(target: Path) -> Path:
    """An empty temporary file beside ``target`` with the permissions a plain ``open`` would give."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:  # name the output the user asked for, not the temporary file
        raise OSError(exc.errno, f"cannot write here ({exc.strerror})", str(target)) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs must be readable like any other file
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
def atomic_group(targets: Sequence[str | Path], overwrite: bool = False) -> Iterator[list[Path]]:
    """Like :func:`atomic_path` for several files that belong together (e.g. HDF5 + YAML, TIF + CSV + JSON).

    All targets are checked before anything is written; they are renamed into place only when every one was
    written without error.
    """
    targets = [Path(t) for t in targets]
    check_writable(targets, overwrite)
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(_tmp_for(t)) for t in targets]
        yield tmps
        for tmp, target in zip(tmps, targets):
            if not overwrite and target.exists():
                raise OutputExistsError("appeared while writing; not replaced", target)
        for tmp, target in zip(tmps, targets):
            os.replace(tmp, target)


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
    from imagebinner.io.picasso_yaml import sidecar_path

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
