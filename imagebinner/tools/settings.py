"""Settings shared by several tools, declared once (one doc each): camera pixel size, Picasso convention, outputs."""

from __future__ import annotations

import param


class CameraSettings(param.Parameterized):
    """The camera pixel size and the Picasso half-pixel convention of the inputs."""

    pixel_size = param.Number(
        default=None,
        bounds=(0, None),
        inclusive_bounds=(False, True),
        allow_None=True,
        doc="Camera pixel size in nm; empty = from the files' metadata (TIF resolution tags, Picasso YAML). "
        "A value given here overrides the metadata (with a warning when they differ).",
    )
    half_pixel = param.Boolean(
        default=True,
        doc="Picasso files: Picasso pixel j is centred at coordinate j, so x_nm = (x_px + 0.5) * pixel size (and "
        "back), exactly. Off = like Picasso's own CSV export and the predecessor (no half-pixel shift).",
    )


class Overwrite(param.Parameterized):
    """Whether existing output files may be replaced."""

    overwrite = param.Boolean(
        default=False, doc="Replace existing output files (otherwise refuse and write nothing)."
    )


class OutputFolder(Overwrite):
    """A folder that receives a tool's files."""

    output_folder = param.String(default="", doc="Folder receiving the output files (created when missing).")


class OutputFile(Overwrite):
    """One output file (and its sidecars)."""

    output_path = param.String(default="", doc="File to write (a Picasso .hdf5 also gets its .yaml beside it).")
