"""Geometry of a prediction review: camera and hr pixel sizes, upsampling, image shapes, field area, the L2 factor.

Deep-STORM hr images (``Predicted_``, ``Widefield_``, ``Predicted_stacked_``) are ``upsampling`` times the camera
image in each direction, with pixel size ``camera pixel size / upsampling``. Whatever is not given is derived from
what is known: the ``upsampling`` setting, else hr image size / camera image size, else camera / hr pixel size.
"""

from __future__ import annotations

import dataclasses
import warnings

Shape = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The resolved sizes of one review (None where unknown)."""

    hr_shape: Shape | None
    image_shape: Shape | None
    pixel_size_hr: float | None
    camera_pixel_size: float | None
    upsampling: int | None

    @property
    def field_area_um2(self) -> float | None:
        """The field of view in µm²: from the hr images when known, else from the camera image."""
        if self.hr_shape is not None and self.pixel_size_hr is not None:
            return self.hr_shape[0] * self.hr_shape[1] * self.pixel_size_hr**2 / 1e6
        if self.image_shape is not None and self.camera_pixel_size is not None:
            return self.image_shape[0] * self.image_shape[1] * self.camera_pixel_size**2 / 1e6
        return None


def derive_upsampling(
    upsampling: int | None,
    hr_shape: Shape | None,
    image_shape: Shape | None,
    camera_pixel_size: float | None,
    pixel_size_hr: float | None,
) -> int | None:
    """The given ``upsampling``, else hr image size / camera image size (an integer, equal in both directions),
    else camera pixel size / hr pixel size (rounded), else None."""
    if upsampling is not None:
        return int(upsampling)
    if hr_shape is not None and image_shape is not None:
        ratio = (hr_shape[0] / image_shape[0], hr_shape[1] / image_shape[1])
        if ratio[0] == ratio[1] and float(ratio[0]).is_integer():
            return int(ratio[0])
    if camera_pixel_size is not None and pixel_size_hr is not None:
        return int(round(camera_pixel_size / pixel_size_hr))
    return None


def truth_pixel_size(
    movie_pixel_size: float | None, pixel_size_hr: float | None, upsampling: int | None
) -> float | None:
    """The camera pixel size known before the ground truth is read (for Picasso files without one in their YAML):
    the movie's, else hr pixel size × upsampling."""
    if movie_pixel_size:
        return movie_pixel_size
    if pixel_size_hr is not None and upsampling is not None:
        return pixel_size_hr * upsampling
    return None


def resolve_geometry(
    *,
    hr_shape: Shape | None,
    pixel_size_hr: float | None,
    movie_shape: Shape | None,
    movie_pixel_size: float | None,
    truth_shape: Shape | None = None,
    truth_pixel_size: float | None = None,
    pixel_size: float | None = None,
    upsampling: int | None = None,
    where: str = "",
) -> Geometry:
    """Every size of the review from what the files and settings give.

    The upsampling comes from the setting, else from the movie (its image size, then its pixel size), else from the
    camera image and pixel size known with the ground truth; the camera pixel size is the ``pixel_size`` setting,
    else the movie's, else the ground truth's, else hr pixel size × upsampling; the hr pixel size the images' tags,
    else camera pixel size / upsampling. Warns (naming ``where``) when the hr images are not ``upsampling`` times the
    camera image.
    """
    u = derive_upsampling(upsampling, hr_shape, movie_shape, movie_pixel_size, pixel_size_hr)
    image_shape = movie_shape if movie_shape is not None else truth_shape
    camera_ps = pixel_size or movie_pixel_size or truth_pixel_size
    if u is None:
        u = derive_upsampling(None, hr_shape, image_shape, camera_ps, pixel_size_hr)
    if camera_ps is None and pixel_size_hr is not None and u is not None:
        camera_ps = pixel_size_hr * u
    if pixel_size_hr is None and camera_ps is not None and u is not None:
        pixel_size_hr = camera_ps / u
    if hr_shape is not None and image_shape is not None and u is not None:
        if (hr_shape[0], hr_shape[1]) != (image_shape[0] * u, image_shape[1] * u):
            warnings.warn(
                f"{where}: hr images are {hr_shape[0]}x{hr_shape[1]}, the camera image "
                f"{image_shape[0]}x{image_shape[1]} at upsampling {u}"
            )
    return Geometry(
        hr_shape=None if hr_shape is None else (int(hr_shape[0]), int(hr_shape[1])),
        image_shape=None if image_shape is None else (int(image_shape[0]), int(image_shape[1])),
        pixel_size_hr=pixel_size_hr,
        camera_pixel_size=camera_ps,
        upsampling=u,
    )


def resolve_l2(setting: float | None, metadata_l2: float | None, upsampling: int | None) -> tuple[float, str]:
    """The L2 weighting factor of the re-localization and where it comes from: the setting, else the model's
    ``model_metadata.mat`` ("Normalization factor"), else the notebook's default automatic normalization for the
    upsampling (``100 / sqrt(7 · 64 / (u² · 20.28))`` ≈ 21.28·u; ×8 when the upsampling is unknown)."""
    from imagebinner.tools.relocalize import resolve_l2 as default_for

    if setting is not None:
        return float(setting), "l2_weighting_factor setting"
    if metadata_l2 is not None:
        return float(metadata_l2), "model_metadata.mat"
    return default_for(None, upsampling)
