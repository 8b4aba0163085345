"""Written files on a page: their headline, download buttons (each file, and all of them as one zip, read when
clicked and checked against the data root again) and notes on what is not offered."""

from __future__ import annotations

import html
import io
import zipfile
from pathlib import Path

import panel as pn

from imagebinner.apps.jobs import notify
from imagebinner.apps.paths import check_path, data_root
from imagebinner.errors import ImageBinnerError

#: download buttons shown one per file; more files are counted and offered together as a zip
MAX_LISTED = 6
#: largest download sent through the page (a download travels as one websocket message, base64-encoded, and the
#: server's default message limit is 20 MB); larger files stay on the server, where the list names them
DOWNLOAD_LIMIT = 10 * 2**20


def shown_path(path: Path | str) -> str:
    """A path as shown on the page: relative to the data root when inside it."""
    root = data_root()
    path = Path(path)
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB" if n_bytes >= 2**20 else f"{max(n_bytes, 1) / 2**10:.0f} kB"


def status_html(status: str) -> str:
    """A status line, wrapped (never cut off)."""
    return f'<div style="white-space: pre-wrap; overflow-wrap: anywhere">{html.escape(status)}</div>' if status else ""


def _refused_download(error: Exception) -> None:
    """A download that cannot be served (moved, removed, replaced by a link out of the root): said on the page."""
    notify("error", f"download refused: {error}")


def file_bytes(path: Path) -> io.BytesIO:
    """The content of a written file, read when its download is clicked (checked against the root again)."""
    try:
        return io.BytesIO(check_path(str(path), "download").read_bytes())
    except (ImageBinnerError, OSError) as exc:
        _refused_download(exc)
        raise


def zip_bytes(paths: list[Path]) -> io.BytesIO:
    """A zip of the written files, built when its download is clicked (each checked against the root again)."""
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(check_path(str(path), "download"), arcname=path.name)
    except (ImageBinnerError, OSError) as exc:
        _refused_download(exc)
        raise
    buffer.seek(0)
    return buffer


def written_headline(paths: list) -> str:
    """The headline of the written files (count and folder)."""
    if not paths:
        return ""
    folders = sorted({shown_path(Path(p).parent) for p in paths})
    where = f" in `{folders[0]}`" if len(folders) == 1 else ""
    return f"**{len(paths)} file(s) written**{where}"


def download_buttons(paths: list, zip_stem: str) -> list[pn.widgets.FileDownload]:
    """Download buttons of the written files: one per file for the first :data:`MAX_LISTED`, then (several files)
    one zip of all, ``<zip_stem>-<n>-files.zip``; each built when clicked. Files above :data:`DOWNLOAD_LIMIT` get
    none."""
    paths = [Path(p) for p in paths]
    sizes = {p: p.stat().st_size if p.exists() else 0 for p in paths}
    buttons = [pn.widgets.FileDownload(callback=lambda p=p: file_bytes(p), filename=p.name,
                                       label=f"{p.name} ({size_text(sizes[p])})", sizing_mode="stretch_width")
               for p in paths[:MAX_LISTED] if sizes[p] <= DOWNLOAD_LIMIT]
    total = sum(sizes.values())
    if len(paths) > 1 and total <= DOWNLOAD_LIMIT:
        buttons.append(pn.widgets.FileDownload(
            callback=lambda: zip_bytes(paths), filename=f"{zip_stem}-{len(paths)}-files.zip",
            label=f"All {len(paths)} files as zip ({size_text(total)})", color="primary",
            sizing_mode="stretch_width"))
    return buttons


def written_files(paths: list, zip_stem: str) -> pn.Column:
    """The written files: headline, download buttons and notes on files listed only by count or too large to send
    (hidden when nothing was written)."""
    if not paths:
        return pn.Column(visible=False)
    paths = [Path(p) for p in paths]
    notes = []
    if len(paths) > MAX_LISTED:
        notes.append(f"{len(paths) - MAX_LISTED} more: " + ", ".join(p.name for p in paths[MAX_LISTED:][:3])
                     + (", ..." if len(paths) > MAX_LISTED + 3 else ""))
    large = [p for p in paths if p.exists() and p.stat().st_size > DOWNLOAD_LIMIT]
    if large:
        notes.append(f"{len(large)} file(s) above {size_text(DOWNLOAD_LIMIT)} stay on the server (too large to send "
                     "through the page): " + ", ".join(p.name for p in large[:3]))
    return pn.Column(pn.pane.Markdown(written_headline(paths), margin=(5, 10, 0, 10)),
                     pn.FlexBox(*download_buttons(paths, zip_stem)),
                     *[pn.pane.HTML(status_html(note)) for note in notes], sizing_mode="stretch_width")
