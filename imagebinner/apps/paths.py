"""The one confinement rule for every path a session touches: relative to the data root, resolved, inside the root."""

from __future__ import annotations

import os
from collections.abc import Callable
from fnmatch import fnmatch
from functools import cached_property
from pathlib import Path

import panel as pn
import param
from panel.util import fullpath
from panel.viewable import Viewer
from panel.widgets.file_selector import LocalFileProvider

from imagebinner.apps.jobs import notify
from imagebinner.errors import ImageBinnerError
from imagebinner.io import find_measurement_pairs as _find_measurement_pairs

#: environment variable naming a data folder the apps open on (measurement pairs, prediction folder, ...)
DATA_ENV = "IMAGEBINNER_DATA"
#: environment variable naming the data root: every path of a session must lie inside it (default: the working folder)
ROOT_ENV = "IMAGEBINNER_ROOT"
KINDS = ("file", "folder", "any")


def data_root() -> Path:
    """The data root: ``$IMAGEBINNER_ROOT`` if set, else the current folder (resolved)."""
    value = os.environ.get(ROOT_ENV, "").strip()
    return (Path(value).expanduser() if value else Path.cwd()).resolve()


def check_path(text: str | os.PathLike, what: str, kind: str = "file", must_exist: bool = True) -> Path:
    """THE confinement rule: ``text`` as a path relative to the data root (absolute paths as given), resolved
    (symlinks, ``..``), required to lie inside :func:`data_root`; with ``must_exist`` it must exist and be of
    ``kind`` ("file", "folder" or "any"). Returns the resolved path; raises :class:`ImageBinnerError` (one line)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    text = str(text or "").strip()
    if not text:
        raise ImageBinnerError(f"no {what} given")
    root = data_root()
    path = Path(text).expanduser()
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ImageBinnerError(f"{what} is outside the data folder {root}", text)
    if must_exist:
        if not resolved.exists():
            raise ImageBinnerError(f"{what} not found", text)
        if kind == "file" and not resolved.is_file():
            raise ImageBinnerError(f"{what} is not a file", text)
        if kind == "folder" and not resolved.is_dir():
            raise ImageBinnerError(f"{what} is not a folder", text)
    return resolved


def inside_root(path: str | os.PathLike, root: Path | None = None) -> bool:
    """Whether ``path`` (resolved: symlinks followed) lies inside ``root`` (default: the data root)."""
    root = (root or data_root()).resolve()
    try:
        return Path(path).resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def session_arg(name: str, kind: str = "any", must_exist: bool = False, check: bool = True) -> list[str]:
    """Values of a query parameter of the current page (``?movie=a.tif&movie=b.tif``); empty outside a server.

    The values are paths: each goes through :func:`check_path` (resolved strings are returned). If one is refused,
    the parameter is ignored as a whole (an error notification names it), so pairs built from several parameters
    never shift. ``check=False`` returns the raw strings (non-path parameters).
    """
    args = pn.state.session_args or {}
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in args.get(name, [])]
    if not check:
        return values
    try:
        return [str(check_path(v, f"query parameter {name}", kind=kind, must_exist=must_exist)) for v in values]
    except ImageBinnerError as exc:
        notify("error", f"{exc} (ignored)")
        return []


def data_folder() -> Path | None:
    """The folder named by ``$IMAGEBINNER_DATA`` (relative to the data root), or None; a folder outside the root
    or missing is refused with an error notification."""
    value = os.environ.get(DATA_ENV, "").strip()
    if not value:
        return None
    try:
        return check_path(value, f"data folder ${DATA_ENV}", kind="folder")
    except ImageBinnerError as exc:
        notify("error", str(exc))
        return None


def find_measurement_pairs(folder: str | os.PathLike, max_depth: int = 2) -> list[tuple[str, str]]:
    """Movie + localization pairs under ``folder`` (see :func:`imagebinner.io.find_measurement_pairs`), every path
    through :func:`check_path`: pairs reached through a symlink out of the root are left out (one warning)."""
    kept, refused = [], []
    for movie, locs in _find_measurement_pairs(check_path(folder, "data folder", kind="folder"), max_depth):
        try:
            kept.append((str(check_path(movie, "movie")), str(check_path(locs, "localization file"))))
        except ImageBinnerError as exc:
            refused.append(str(exc))
    if refused:
        notify("warning", f"{len(refused)} measurement(s) left out: {refused[0]}"
                          + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))
    return kept


# ---- the file browser: lists and accepts only what lies inside the root --------------------------------------------
def browse_root() -> Path:
    """Folder the file browsers cannot leave: the data root."""
    return data_root()


class _RootedProvider(LocalFileProvider):
    """Panel's local file provider, blind to everything outside the selector's root (symlinks followed)."""

    def __init__(self, selector: RootedFileSelector):
        self.selector = selector

    def isdir(self, path) -> bool:
        return inside_root(path, self.selector.root) and os.path.isdir(path)

    def ls(self, path, file_pattern: str = "[!.]*"):
        """Folders and files (matching ``file_pattern``) of ``path`` that resolve inside the root."""
        if not self.isdir(path):
            return [], []
        root, dirs, files = self.selector.root, [], []
        for name in os.listdir(path):
            entry = os.path.join(path, name)
            if not inside_root(entry, root):
                continue
            if os.path.isdir(entry):
                dirs.append(entry)
            elif os.path.isfile(entry) and fnmatch(name, file_pattern):
                files.append(entry)
        return sorted(dirs), sorted(files)


class RootedFileSelector(pn.widgets.FileSelector):
    """A ``FileSelector`` confined to ``root_directory`` by resolved paths, not by a string prefix: symlinks pointing
    out are not listed, a sibling ``/data2`` of the root ``/data`` is neither listed nor accepted as directory."""

    @property
    def root(self) -> Path:
        return Path(self.root_directory or self.directory).resolve()

    @property
    def _provider(self) -> LocalFileProvider:  # set by Panel's __init__; always the rooted one
        return self.__dict__["_rooted_provider"]

    @_provider.setter
    def _provider(self, _provider) -> None:
        self.__dict__["_rooted_provider"] = _RootedProvider(self)

    def _dir_change(self, event: param.parameterized.Event) -> None:
        if not inside_root(fullpath(event.new), self.root):
            self.directory = fullpath(event.old)  # refused: the box shows the previous folder again
            return
        super()._dir_change(event)

    def _update_value(self, event: param.parameterized.Event) -> None:
        super()._update_value(event)
        if any(not inside_root(v, self.root) for v in self.value):
            self.value = [v for v in self.value if inside_root(v, self.root)]


class PathPicker(Viewer):
    """Browse the server's files inside the data root (:class:`RootedFileSelector`) and hand the selected path
    (checked by :func:`check_path`) to a setter."""

    def __init__(self, targets: dict[str, Callable[[str], None]], root: Path | None = None, **params):
        super().__init__(**params)
        self.root = (root or browse_root()).resolve()
        if not self.root.is_relative_to(data_root()):
            self.root = data_root()
        self.buttons = [pn.widgets.Button(label=f"Use as {name}", on_click=lambda event, s=setter: self._use(s))
                        for name, setter in targets.items()]

    @cached_property
    def selector(self) -> RootedFileSelector:
        """The file browser, made when first shown (listing a folder and building the browser's widgets cost a
        tenth of a session's start, and most sessions never open it)."""
        start = os.environ.get(DATA_ENV, "").strip()
        start_dir = self.root
        if start and inside_root(data_root() / start, self.root) and (data_root() / start).is_dir():
            start_dir = (data_root() / start).resolve()
        return RootedFileSelector(directory=str(start_dir), root_directory=str(self.root), sizing_mode="stretch_width")

    def _use(self, setter: Callable[[str], None]) -> None:
        chosen = list(self.selector.value)
        if len(chosen) != 1:
            notify("warning", f"select exactly one path (selected: {len(chosen)})")
            return
        try:
            path = check_path(chosen[0], "selected path", kind="any")
            if not path.is_relative_to(self.root):
                raise ImageBinnerError(f"selected path is outside {self.root}", chosen[0])
        except ImageBinnerError as exc:
            notify("error", str(exc))
            return
        setter(str(path))

    def __panel__(self):
        from imagebinner.apps.widgets import lazy_card

        return lazy_card(lambda: (self.selector, pn.FlexBox(*self.buttons)), title="Browse server files",
                         sizing_mode="stretch_width")
