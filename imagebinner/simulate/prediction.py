"""A deterministic DeepSTORM prediction folder (ZeroCostDL4Mic layout) made from a ground truth, for the demo.

File names: :mod:`imagebinner.io.predictions` (the one module for the prediction-folder layout).

``make_prediction_folder(out_dir, truth, movie_path, upsampling=8, seed=0)`` writes, for the movie ``<stem>.tif``:

* ``Localizations_<stem>_avg.csv`` (or ``_max.csv`` with ``local_average=False``): header
  ``frame,x [nm],y [nm],confidence [a.u]``, frames 1-based, x/y = hr index · ps_hr (spec section 2.5);
* ``Predicted_<stem>.tif``: the hr density summed over frames, float32, resolution tags 1e7/ps_hr per cm;
* ``Widefield_<stem>.tif``: the raw frames summed and upsampled with ``np.kron`` (u × u blocks), float32, same tags;
* ``Predicted_stacked_<stem>.tif`` (``write_stacked=True``): the per-frame hr density (float32, no resolution tags,
  as the predecessor's patched notebook writes it).

With ``exploded=True`` it writes what the notebook writes when run on the movie's exploded single frames
``<stem>_frame00001.tif``, ... (``Explode``; 1-based, at least 5 digits): the same four files per frame for the stem
``<stem>_frameNNNNN`` (frame 1 in every CSV; one-frame images), holding exactly the same predictions.

The "network output" is a Gaussian blob (σ = ``psf_sigma_hr`` hr px) per predicted emitter: the ground truth with
Gaussian jitter, minus a fraction of misses, plus false positives at random places with low confidences. Each blob is
scaled so that the notebook's post-processing (3×3 maximum above ``threshold · L2``; 3×3 centre of gravity and 3×3 sum
/ L2 with local averaging) finds it with its confidence; the CSV holds exactly what that post-processing gives for an
isolated blob (overlapping blobs in the stacked density can shift a re-localized position slightly).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.io import LocMeta, LocTable, check_outputs, open_movie, write_locs, write_tif
from imagebinner.io.movie import TifWriter
from imagebinner.io.predictions import exploded_stem, prediction_file_names

STACKED_LIMIT_BYTES = 2_000_000_000


def _blobs(
    rows: np.ndarray, cols: np.ndarray, conf: np.ndarray, hr_shape: tuple[int, int], sigma: float, l2: float,
    threshold: float, local_average: bool,
) -> dict[str, np.ndarray]:
    """Blob amplitudes and what the notebook's post-processing reports for each isolated blob."""
    pr = np.clip(np.rint(rows), 0, hr_shape[0] - 1).astype(np.int64)
    pc = np.clip(np.rint(cols), 0, hr_shape[1] - 1).astype(np.int64)
    off = np.arange(-1, 2)
    rr = pr[:, None, None] + off[None, :, None]
    cc = pc[:, None, None] + off[None, None, :]
    inside = (rr >= 0) & (rr < hr_shape[0]) & (cc >= 0) & (cc < hr_shape[1])
    g = np.exp(-((rr - rows[:, None, None]) ** 2 + (cc - cols[:, None, None]) ** 2) / (2 * sigma**2)) * inside
    g_peak = g[:, 1, 1]
    s3 = g.sum(axis=(1, 2))
    norm = s3 if local_average else g_peak
    # detection needs peak value > threshold * L2: raise too-low confidences just above that
    conf = np.maximum(conf, 1.05 * threshold * norm / g_peak)
    amplitude = conf * l2 / norm
    if local_average:
        out_r = pr + (g.sum(axis=2) @ off) / s3
        out_c = pc + (g.sum(axis=1) @ off) / s3
    else:
        out_r, out_c = pr.astype(float), pc.astype(float)
    return {"amplitude": amplitude, "confidence": conf, "row": out_r, "col": out_c}


def _render(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, amplitude: np.ndarray, sigma: float
) -> None:
    """Add Gaussian blobs (sampled at hr pixel centres, ±4σ) to ``image`` in place."""
    if len(rows) == 0:
        return
    radius = int(np.ceil(4 * sigma))
    off = np.arange(-radius, radius + 1)
    pr = np.rint(rows).astype(np.int64)
    pc = np.rint(cols).astype(np.int64)
    rr = pr[:, None, None] + off[None, :, None]
    cc = pc[:, None, None] + off[None, None, :]
    vals = amplitude[:, None, None] * np.exp(
        -((rr - rows[:, None, None]) ** 2 + (cc - cols[:, None, None]) ** 2) / (2 * sigma**2)
    )
    rr, cc, vals = np.broadcast_arrays(rr, cc, vals)
    ok = (rr >= 0) & (rr < image.shape[0]) & (cc >= 0) & (cc < image.shape[1])
    np.add.at(image, (rr[ok], cc[ok]), vals[ok])


def make_prediction_folder(
    out_dir: str | Path,
    truth: LocTable,
    movie_path: str | Path,
    upsampling: int = 8,
    seed: int = 0,
    *,
    stem: str | None = None,
    jitter_nm: float = 20.0,
    miss_fraction: float = 0.1,
    false_positive_fraction: float = 0.05,
    confidence_range: tuple[float, float] = (0.8, 2.5),
    false_positive_confidence_range: tuple[float, float] = (0.5, 0.9),
    local_average: bool = True,
    threshold: float = 0.1,
    l2_weighting_factor: float = 100.0,
    psf_sigma_hr: float = 1.0,
    write_stacked: bool = True,
    overwrite: bool = False,
    exploded: bool = False,
) -> dict[str, Path] | dict[str, list[Path]]:
    """Write a ZeroCostDL4Mic-layout prediction folder for ``movie_path`` from the ground truth ``truth``.

    Returns the written paths by role (``localizations``, ``predicted``, ``widefield``, ``stacked``); with
    ``exploded`` a list per role, one path per frame (the layout of a prediction of the exploded frames). The camera
    pixel size comes from the movie's metadata, else ``truth.meta.pixel_size``. Same seed → identical predictions
    (exploded or not).
    """
    if not (isinstance(upsampling, (int, np.integer)) and 1 <= upsampling <= 64):
        raise ParameterError(f"upsampling must be an integer in 1..64, got {upsampling}")
    if not 0 <= miss_fraction <= 1 or false_positive_fraction < 0 or jitter_nm < 0:
        raise ParameterError("miss_fraction must be in [0, 1]; false_positive_fraction and jitter_nm >= 0")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    with open_movie(movie_path) as movie:
        n_frames, shape = movie.n_frames, movie.shape
        ps = movie.pixel_size or truth.meta.pixel_size
        if ps is None:
            raise ParameterError("camera pixel size unknown: neither the movie nor the ground truth records it", movie_path)
        stem = stem or Path(movie_path).stem
        names = prediction_file_names(stem, local_average)
        paths = {role: out_dir / name for role, name in names.items()}
        if not write_stacked:
            del paths["stacked"]
        if exploded:
            per_frame = [prediction_file_names(exploded_stem(stem, k, n_frames), local_average)
                         for k in range(n_frames)]
            paths = {role: [out_dir / names[role] for names in per_frame] for role in paths}
        u = int(upsampling)
        ps_hr = ps / u
        hr_shape = (shape[0] * u, shape[1] * u)
        if write_stacked and n_frames * hr_shape[0] * hr_shape[1] * 4 > STACKED_LIMIT_BYTES:
            raise ParameterError(
                f"the stacked density would take {n_frames * hr_shape[0] * hr_shape[1] * 4 / 1e9:.1f} GB: "
                "use write_stacked=False",
                out_dir,
            )
        check_outputs([p for v in paths.values() for p in (v if exploded else [v])], [movie_path], overwrite)

        # -- the "network's" predictions ---------------------------------------------------------------------
        field_w, field_h = shape[1] * ps, shape[0] * ps
        inside = (truth.frame < n_frames) & (truth.x >= 0) & (truth.x < field_w) & (truth.y >= 0) & (truth.y < field_h)
        frame, x, y = truth.frame[inside], truth.x[inside], truth.y[inside]
        found = rng.random(len(frame)) >= miss_fraction
        frame, x, y = frame[found], x[found], y[found]
        x = np.clip(x + rng.normal(0.0, jitter_nm, len(x)), 0, field_w - 1e-6)
        y = np.clip(y + rng.normal(0.0, jitter_nm, len(y)), 0, field_h - 1e-6)
        conf = rng.uniform(*confidence_range, len(x))
        n_fp = int(round(false_positive_fraction * int(inside.sum())))
        frame = np.r_[frame, rng.integers(0, n_frames, n_fp)]
        x = np.r_[x, rng.uniform(0, field_w, n_fp)]
        y = np.r_[y, rng.uniform(0, field_h, n_fp)]
        conf = np.r_[conf, rng.uniform(*false_positive_confidence_range, n_fp)]
        order = np.argsort(frame, kind="stable")
        frame, x, y, conf = frame[order], x[order], y[order], conf[order]
        # hr index coordinates: hr pixel k is centred at k * ps_hr
        rows = np.clip(y / ps_hr, 0, hr_shape[0] - 1)
        cols = np.clip(x / ps_hr, 0, hr_shape[1] - 1)
        blobs = _blobs(rows, cols, conf, hr_shape, psf_sigma_hr, l2_weighting_factor, threshold, local_average)
        meta = LocMeta(
            pixel_size=float(ps),
            image_shape=tuple(shape),
            n_frames=n_frames,
            source_format="deepstorm-prediction",
            conversion=f"simulated DeepSTORM prediction (seed {seed}, upsampling {u})",
        )
        pred = LocTable(
            {
                "frame": frame,
                "x": (blobs["col"] * ps_hr).astype(np.float32).astype(np.float64),
                "y": (blobs["row"] * ps_hr).astype(np.float32).astype(np.float64),
                "confidence": blobs["confidence"].astype(np.float32).astype(np.float64),
            },
            meta,
            presorted=True,
        )

        if exploded:
            _write_exploded(paths, pred, movie, rows, cols, blobs["amplitude"], hr_shape, u, ps_hr, psf_sigma_hr,
                            overwrite)
            return paths

        # -- images ----------------------------------------------------------------------------------------
        predicted = np.zeros(hr_shape)
        _render(predicted, rows, cols, blobs["amplitude"], psf_sigma_hr)
        widefield = np.zeros(shape)
        for fr in movie.frames():
            widefield += fr
        widefield = np.kron(widefield, np.ones((u, u)))

        write_locs(pred, paths["localizations"], format="deepstorm-prediction", overwrite=overwrite)
        write_tif(paths["predicted"], predicted, pixel_size=ps_hr, dtype="float32", overwrite=overwrite)
        write_tif(paths["widefield"], widefield, pixel_size=ps_hr, dtype="float32", overwrite=overwrite)
        if write_stacked:
            offsets = np.searchsorted(frame, np.arange(n_frames + 1))

            def pages() -> Iterator[np.ndarray]:
                for k in range(n_frames):
                    s, e = offsets[k], offsets[k + 1]
                    img = np.zeros(hr_shape, np.float32)
                    _render(img, rows[s:e], cols[s:e], blobs["amplitude"][s:e].astype(np.float32), psf_sigma_hr)
                    yield img

            with TifWriter(paths["stacked"], pixel_size=None, dtype="float32", overwrite=overwrite) as writer:
                writer.write_stream(pages(), n_frames)
    return paths


def _write_exploded(
    paths: dict[str, list[Path]], pred: LocTable, movie, rows: np.ndarray, cols: np.ndarray, amplitude: np.ndarray,
    hr_shape: tuple[int, int], u: int, ps_hr: float, sigma: float, overwrite: bool,
) -> None:
    """The per-frame files of a prediction of exploded frames: frame 1 in every CSV, one-frame images."""
    offsets = pred.frame_offsets
    for k, raw in enumerate(movie.frames()):
        s, e = int(offsets[k]), int(offsets[k + 1])
        rows_k = pred.take(slice(s, e))
        single = rows_k.with_columns(frame=np.zeros(len(rows_k), np.int64)).with_meta(n_frames=1)
        write_locs(single, paths["localizations"][k], format="deepstorm-prediction", overwrite=overwrite)
        predicted = np.zeros(hr_shape)
        _render(predicted, rows[s:e], cols[s:e], amplitude[s:e], sigma)
        write_tif(paths["predicted"][k], predicted, pixel_size=ps_hr, dtype="float32", overwrite=overwrite)
        widefield = np.kron(raw.astype(np.float64), np.ones((u, u)))
        write_tif(paths["widefield"][k], widefield, pixel_size=ps_hr, dtype="float32", overwrite=overwrite)
        if "stacked" in paths:
            page = np.zeros(hr_shape, np.float32)
            _render(page, rows[s:e], cols[s:e], amplitude[s:e].astype(np.float32), sigma)
            with TifWriter(paths["stacked"][k], pixel_size=None, dtype="float32", overwrite=overwrite) as writer:
                writer.write_stream(iter([page]), 1)
