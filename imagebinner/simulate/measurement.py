"""A realistic, deterministic SMLM measurement: blinking emitters on filaments, camera frames and ground truth.

Model (all deterministic by ``seed``, NumPy ``default_rng``):

* **Structure**: ``n_filaments`` smooth random curves (a persistent random walk of the direction, steps of 10 nm)
  through the field of view; ``n_sites`` binding sites drawn uniformly along the parts inside the field (at least
  one pixel from the border), with a small jitter.
* **Blinking**: binding events (DNA-PAINT/STORM-like "on" periods) at random sites and start frames, durations
  geometric with mean ``mean_on_frames``; the number of events gives on average ``emitters_per_frame`` emitters
  per frame. Photons per emitter and frame are gamma-distributed with mean ``photons``.
* **Camera**: Gaussian PSF of width ``psf_sigma`` (nm) integrated exactly over each pixel (differences of erf),
  uniform ``background`` photons per pixel, Poisson shot noise, ``gain`` ADU per photon, camera ``offset`` (ADU) and
  Gaussian read noise (ADU); rounded and clipped to uint16.
* **Ground truth**: a canonical :class:`~imagebinner.io.LocTable` (0-based ``frame``; ``x``/``y`` in nm with the
  corner convention, so an emitter at ``x`` nm lies in camera column ``floor(x / pixel_size)``; ``photons``;
  ``sigma`` in nm) whose meta carry ``pixel_size``, ``image_shape`` and ``n_frames``.

Frames are rendered on demand, each from its own seeded stream, so ``frames()`` is a generator with bounded
memory and ``frame(k)`` gives the same pixels whether or not the frames before it were rendered.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.io import LocMeta, LocTable, TifWriter, check_writable

# stream ids mixed into the seed so structure, blinking and camera noise use independent random streams
_STRUCTURE, _BLINKING, _CAMERA = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class MeasurementSettings:
    """Parameters of :func:`simulate_measurement` (units in the field names' docs)."""

    n_frames: int = 200  # frames of the movie
    height: int = 64  # camera rows
    width: int = 64  # camera columns
    pixel_size: float = 107.0  # camera pixel size in nm
    emitters_per_frame: float = 15.0  # mean number of emitters on per frame
    n_filaments: int = 4  # smooth random curves carrying the binding sites
    n_sites: int = 400  # binding sites on the filaments
    mean_on_frames: float = 3.0  # mean duration of one binding event, frames
    photons: float = 2000.0  # mean photons per emitter and frame
    psf_sigma: float = 120.0  # Gaussian PSF standard deviation, nm
    background: float = 20.0  # background photons per pixel and frame
    gain: float = 1.0  # ADU per photon
    offset: float = 100.0  # camera offset, ADU
    read_noise: float = 2.0  # Gaussian read noise, ADU (standard deviation)
    seed: int = 0  # random seed: same seed, same measurement

    def validate(self) -> "MeasurementSettings":
        checks = [
            ("n_frames", self.n_frames >= 1),
            ("height", self.height >= 3),
            ("width", self.width >= 3),
            ("pixel_size", self.pixel_size > 0),
            ("emitters_per_frame", self.emitters_per_frame >= 0),
            ("n_filaments", self.n_filaments >= 1),
            ("n_sites", self.n_sites >= 1),
            ("mean_on_frames", self.mean_on_frames >= 1),
            ("photons", self.photons > 0),
            ("psf_sigma", self.psf_sigma > 0),
            ("background", self.background >= 0),
            ("gain", self.gain > 0),
            ("offset", 0 <= self.offset < 65535),
            ("read_noise", self.read_noise >= 0),
            ("seed", self.seed >= 0),
        ]
        for name, ok in checks:
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ParameterError(f"simulation setting {name} = {value!r} is out of range")
        for name in ("n_frames", "height", "width", "n_filaments", "n_sites", "seed"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ParameterError(f"simulation setting {name} must be an integer, got {getattr(self, name)!r}")
        return self


class Measurement:
    """A simulated movie (rendered lazily, frame by frame) with its ground-truth :class:`LocTable`."""

    def __init__(self, settings: MeasurementSettings, truth: LocTable, sites: np.ndarray):
        self.settings = settings
        self.truth = truth
        self.sites = sites  # (n_sites, 2) binding-site positions x, y in nm

    @property
    def n_frames(self) -> int:
        return self.settings.n_frames

    @property
    def shape(self) -> tuple[int, int]:
        return (self.settings.height, self.settings.width)

    @property
    def pixel_size(self) -> float:
        return float(self.settings.pixel_size)

    def __len__(self) -> int:
        return self.n_frames

    def expected_photons(self, k: int) -> np.ndarray:
        """Noise-free photons per pixel of frame ``k`` (background + PSFs integrated over the pixels)."""
        s = self.settings
        rows = self.truth.frame_rows(k)
        image = np.full(self.shape, float(s.background))
        if rows.stop > rows.start:
            x, y = self.truth.x[rows], self.truth.y[rows]
            photons, sigma = self.truth["photons"][rows], self.truth["sigma"][rows]
            px = _pixel_fractions(x, sigma, s.width, s.pixel_size)  # (n, width)
            py = _pixel_fractions(y, sigma, s.height, s.pixel_size)  # (n, height)
            image += py.T @ (photons[:, None] * px)
        return image

    def frame(self, k: int) -> np.ndarray:
        """Camera frame ``k`` (uint16 ADU); deterministic, independent of the frames rendered before."""
        if not 0 <= int(k) < self.n_frames:
            raise IndexError(f"frame {k} outside 0..{self.n_frames - 1}")
        s = self.settings
        rng = np.random.default_rng([s.seed, _CAMERA, int(k)])
        electrons = rng.poisson(self.expected_photons(k))
        adu = s.offset + s.gain * electrons + rng.normal(0.0, s.read_noise, self.shape)
        return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start..stop-1`` one at a time (a generator: bounded memory for any movie length)."""
        stop = self.n_frames if stop is None else min(int(stop), self.n_frames)
        for k in range(max(int(start), 0), stop):
            yield self.frame(k)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"Measurement({s.n_frames} frames of {s.height}x{s.width} px, {s.pixel_size} nm, "
            f"{len(self.truth)} localizations, seed={s.seed})"
        )


def _pixel_fractions(pos: np.ndarray, sigma: np.ndarray, n_pixels: int, pixel_size: float) -> np.ndarray:
    """Fraction of a 1-D Gaussian (centre ``pos`` nm, width ``sigma`` nm) falling in each pixel [j·ps, (j+1)·ps)."""
    from scipy.special import erf

    edges = np.arange(n_pixels + 1) * pixel_size
    cdf = 0.5 * (1.0 + erf((edges[None, :] - pos[:, None]) / (np.sqrt(2.0) * sigma[:, None])))
    return np.diff(cdf, axis=1)


def _filament_sites(settings: MeasurementSettings, rng: np.random.Generator) -> np.ndarray:
    """Binding sites (x, y nm) along smooth random curves crossing the field, at least one pixel from the border."""
    s = settings
    ps = float(s.pixel_size)
    width_nm, height_nm = s.width * ps, s.height * ps
    step = 10.0  # nm
    half_steps = int(math.ceil(math.hypot(width_nm, height_nm) / step))
    persistence = 0.012  # rad per step: radius of curvature of a few micrometres
    lo_x, hi_x, lo_y, hi_y = ps, width_nm - ps, ps, height_nm - ps
    curves = []
    for _ in range(s.n_filaments):
        start = rng.uniform([lo_x, lo_y], [hi_x, hi_y])
        heading = rng.uniform(0, 2 * np.pi)
        parts = []
        for direction in (0.0, np.pi):
            angles = heading + direction + np.cumsum(rng.normal(0.0, persistence, half_steps))
            steps = step * np.column_stack([np.cos(angles), np.sin(angles)])
            parts.append(start + np.cumsum(steps, axis=0))
        curve = np.concatenate([parts[1][::-1], start[None, :], parts[0]])
        inside = (curve[:, 0] >= lo_x) & (curve[:, 0] < hi_x) & (curve[:, 1] >= lo_y) & (curve[:, 1] < hi_y)
        curves.append(curve[inside])
    points = np.concatenate(curves)  # equally spaced points: uniform along the total inside length
    sites = points[rng.integers(0, len(points), s.n_sites)] + rng.normal(0.0, 5.0, (s.n_sites, 2))
    sites[:, 0] = np.clip(sites[:, 0], lo_x, np.nextafter(hi_x, 0))
    sites[:, 1] = np.clip(sites[:, 1], lo_y, np.nextafter(hi_y, 0))
    return sites


def _blinking(settings: MeasurementSettings, n_sites: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frame, site) of every emitter that is on, one row per frame of each binding event, unique and sorted."""
    s = settings
    # events also start before frame 0 (lead-in), so the first frames are as crowded as the rest; a start rate of
    # emitters_per_frame / mean_on_frames per frame gives emitters_per_frame emitters on per frame in steady state
    lead = int(math.ceil(5 * s.mean_on_frames))
    n_events = rng.poisson(s.emitters_per_frame * (s.n_frames + lead) / s.mean_on_frames)
    site = rng.integers(0, n_sites, n_events)
    start = rng.integers(-lead, s.n_frames, n_events)
    duration = rng.geometric(1.0 / s.mean_on_frames, n_events)
    first_row = np.repeat(np.cumsum(duration) - duration, duration)
    offsets = np.arange(int(duration.sum())) - first_row
    frames = np.repeat(start, duration) + offsets
    sites = np.repeat(site, duration)
    keep = (frames >= 0) & (frames < s.n_frames)
    key = np.unique(frames[keep].astype(np.int64) * n_sites + sites[keep])  # sorted by frame, then site
    return key // n_sites, key % n_sites


def simulate_measurement(
    n_frames: int = 200,
    height: int = 64,
    width: int = 64,
    pixel_size: float = 107.0,
    emitters_per_frame: float | None = 15.0,
    density: float | None = None,
    n_filaments: int = 4,
    n_sites: int = 400,
    mean_on_frames: float = 3.0,
    photons: float = 2000.0,
    psf_sigma: float = 120.0,
    background: float = 20.0,
    gain: float = 1.0,
    offset: float = 100.0,
    read_noise: float = 2.0,
    seed: int = 0,
) -> Measurement:
    """Simulate an SMLM measurement (see the module docstring for the model); frames are rendered lazily.

    ``density`` (emitters per µm² per frame), when given, replaces ``emitters_per_frame``. Same arguments and
    ``seed`` give identical truth and frames.
    """
    if density is not None:
        if not density >= 0:
            raise ParameterError(f"simulation setting density = {density!r} is out of range")
        emitters_per_frame = density * (height * pixel_size / 1000.0) * (width * pixel_size / 1000.0)
    settings = MeasurementSettings(
        n_frames=n_frames,
        height=height,
        width=width,
        pixel_size=float(pixel_size),
        emitters_per_frame=float(emitters_per_frame if emitters_per_frame is not None else 15.0),
        n_filaments=n_filaments,
        n_sites=n_sites,
        mean_on_frames=float(mean_on_frames),
        photons=float(photons),
        psf_sigma=float(psf_sigma),
        background=float(background),
        gain=float(gain),
        offset=float(offset),
        read_noise=float(read_noise),
        seed=seed,
    ).validate()
    return simulate_from_settings(settings)


def simulate_from_settings(settings: MeasurementSettings) -> Measurement:
    """:func:`simulate_measurement` for a :class:`MeasurementSettings`."""
    s = settings.validate()
    sites = _filament_sites(s, np.random.default_rng([s.seed, _STRUCTURE]))
    rng = np.random.default_rng([s.seed, _BLINKING])
    frames, site = _blinking(s, len(sites), rng)
    shape_k = 4.0  # gamma shape: photon counts vary by ~50 % between emitters and frames
    photons = rng.gamma(shape_k, s.photons / shape_k, len(frames))
    truth = LocTable(
        {
            "frame": frames,
            "x": sites[site, 0],
            "y": sites[site, 1],
            "photons": photons,
            "sigma": np.full(len(frames), float(s.psf_sigma)),
        },
        LocMeta(
            pixel_size=float(s.pixel_size),
            image_shape=(int(s.height), int(s.width)),
            n_frames=int(s.n_frames),
            source_format="simulation",
            conversion="none: simulated ground truth in the canonical convention (0-based frames, nm, corner origin)",
        ),
        presorted=True,
    )
    return Measurement(s, truth, sites)


def write_measurement(
    measurement: Measurement,
    movie_path: str | Path,
    locs_path: str | Path,
    loc_format: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the movie as an ImageJ TIF (pixel size in the resolution tags) and the ground truth with
    :func:`imagebinner.io.write_locs` in ``loc_format`` (from the extension when None). Returns every written path.

    All outputs are checked before anything is written; if writing the localizations fails, the new movie is
    removed again.
    """
    from imagebinner.io import format_for_output, output_paths, write_locs

    movie_path, locs_path = Path(movie_path), Path(locs_path)
    fmt = format_for_output(locs_path, loc_format)
    loc_targets = [Path(p) for p in output_paths(locs_path, fmt)]
    if movie_path.resolve() in {p.resolve() for p in loc_targets}:
        raise ParameterError("movie and localization file must differ", movie_path)
    check_writable([movie_path, *loc_targets], overwrite)
    movie_existed = movie_path.exists()
    with TifWriter(movie_path, pixel_size=measurement.pixel_size, dtype="uint16", overwrite=overwrite) as writer:
        writer.write_stream(measurement.frames(), measurement.n_frames)
    try:
        written = write_locs(measurement.truth, locs_path, format=fmt, overwrite=overwrite)
    except BaseException:
        if not movie_existed:
            movie_path.unlink(missing_ok=True)
        raise
    return [movie_path, *[Path(p) for p in written]]
