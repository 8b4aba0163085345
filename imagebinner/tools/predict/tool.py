"""The Predict tool: run a trained ZeroCostDL4Mic Deep-STORM model on whole movies, like the notebook, no TensorFlow.

Per movie ``<stem>`` it writes the notebook's files (``batchFramePredictionLocalization``): ``Localizations_<stem>
_avg.csv`` (``_max.csv`` without local averaging; header ``frame,x [nm],y [nm],confidence [a.u]``, frames 1-based,
``x = column·ps_hr``, ``y = row·ps_hr``), ``Predicted_<stem>.tif`` (the densities summed over frames) and
``Widefield_<stem>.tif`` (the raw frames summed, ``np.kron``-upsampled), both float32 with the resolution tags in
pixels per cm (``1e7 / ps_hr``); and ``Predicted_stacked_<stem>.tif``: one float32 page per frame, that frame's
density (negatives → 0), for the review's re-localization. A copy of ``model_metadata.mat`` goes beside them so the
review finds the model's L2 factor and upsampling.

Frames are read lazily and run through the network ``batch_size`` at a time; the stacked TIF and the CSV are written
while the movie streams, so memory is bounded by the batch, not by the movie.
"""

from __future__ import annotations

import filecmp
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import param

from imagebinner.errors import ParameterError
from imagebinner.tools.base import Task
from imagebinner.tools.relocalize import MaximaSettings, find_maxima
from imagebinner.tools.settings import CameraSettings, OutputFolder

CSV_HEADER = ("frame", "x [nm]", "y [nm]", "confidence [a.u]")


def output_names(stem: str, local_average: bool) -> dict[str, str]:
    """The files written for one movie stem, by role (the notebook's names plus the stacked densities)."""
    from imagebinner.io.predictions import prediction_file_names

    return prediction_file_names(stem, local_average)


class Predict(Task, MaximaSettings, CameraSettings, OutputFolder):
    """Run a trained ZeroCostDL4Mic Deep-STORM model on movies: the notebook's localizations, summed prediction and
    widefield images, plus the per-frame densities (Predicted_stacked_<stem>.tif)."""

    inputs = ("model_folder", "movies")
    settings = ("threshold", "neighborhood_size", "local_average", "max_frames", "batch_size", "pixel_size", "device")
    outputs = ("output_folder", "overwrite")
    actions = {"request_run": "run"}

    model_folder = param.String(
        default="",
        doc="The notebook's model folder: model_metadata.mat and best.weights.keras (Keras 3) or weights_best.hdf5 "
        "(Keras 2: whole model or weights only).",
    )
    movies = param.List(default=[], item_type=str, doc="Test movies (TIF, or Picasso .raw with its .yaml).")
    threshold = param.Number(
        default=0.1,
        bounds=(0.0, None),
        softbounds=(0.0, 1.0),
        doc="Notebook 'threshold': a local maximum of the density is a localization if its value > this × L2 "
        "(the model's 'Normalization factor').",
    )
    max_frames = param.Integer(
        default=None,
        bounds=(1, None),
        allow_None=True,
        doc="Predict only the first this many frames of each movie (a quick try of the settings); empty: all frames.",
    )
    batch_size = param.Integer(
        default=4, bounds=(1, 4096), doc="Frames run through the network at once (memory grows with it)."
    )
    device = param.Selector(
        default="auto",
        objects=["auto", "cpu", "cuda"],
        doc="onnxruntime execution provider: auto = CUDA when onnxruntime-gpu finds a GPU, else CPU.",
    )
    request_run = param.Event(label="Predict", doc="Run the model on the movies (run()).")

    written = param.List(default=[], constant=True, doc="Files written by the last run.")
    summary = param.Dict(default={}, constant=True, doc="Per movie: frames, localizations, sizes; model and device.")

    def run(self) -> list[Path]:
        """Predict every movie; all outputs are checked first and appear together at the end (atomic)."""
        from imagebinner.io import atomic_group, check_outputs
        from imagebinner.io.deepstorm_model import read_model

        if not self.model_folder:
            raise ParameterError("no model folder given: set model_folder", params=["model_folder"])
        if not self.movies:
            raise ParameterError("no movie given: set movies", params=["movies"])
        if not self.output_folder:
            raise ParameterError("no output folder given: set output_folder", params=["output_folder"])
        model = read_model(self.model_folder)
        plans = self._plans(model)
        try:
            out = Path(self.output_folder)
            targets = [p for plan in plans for p in plan["targets"].values()]
            metadata_copy = self._metadata_copy(model.metadata.path, out)
            check_outputs(targets + ([metadata_copy] if metadata_copy else []),
                          [model.metadata.path, model.weights_path, *self.movies], self.overwrite)
            from imagebinner.tools.predict.network import make_session

            session, provider = make_session(model, self.device)
            n_total = sum(plan["n_frames"] for plan in plans)
            with self._job(n_total, f"predicting {len(plans)} movie(s) on {provider}"):
                summaries = []
                group = targets + ([metadata_copy] if metadata_copy else [])
                with atomic_group(group, self.overwrite) as staged:
                    stage = dict(zip(group, staged))
                    for plan in plans:
                        summaries.append(self._predict_movie(plan, model, session, stage))
                    if metadata_copy:
                        shutil.copyfile(model.metadata.path, stage[metadata_copy])
        finally:
            for plan in plans:
                plan["movie"].close()
        summary = {
            "model_folder": str(self.model_folder),
            "weights": str(model.weights_path),
            "layout": model.layout,
            "upsampling": model.metadata.upsampling,
            "l2_weighting_factor": model.metadata.l2_weighting_factor,
            "mean_test": model.metadata.mean_test,
            "std_test": model.metadata.std_test,
            "provider": provider,
            "settings": self.settings_record(),
            "movies": summaries,
        }
        n_locs = sum(s["localizations"] for s in summaries)
        self._update(written=[str(t) for t in group], summary=summary,
                     status=f"{n_locs} localizations in {n_total} frames of {len(plans)} movie(s) ({provider})")
        return list(group)

    # -- planning -----------------------------------------------------------------------------------------------
    def _plans(self, model) -> list[dict]:
        """Open every movie and check it (frame size, pixel size) before any work: one line per problem."""
        from imagebinner.io import open_movie
        from imagebinner.tools.predict.network import check_frame_size

        plans: list[dict] = []
        try:
            stems: dict[str, Path] = {}
            for path in map(Path, self.movies):
                movie = open_movie(path, pixel_size=self.pixel_size)
                n_frames = movie.n_frames if self.max_frames is None else min(movie.n_frames, self.max_frames)
                plans.append({"movie": movie, "path": path, "n_frames": n_frames})
                if path.stem in stems:
                    raise ParameterError(f"two movies with the stem {path.stem!r} ({stems[path.stem]}): their "
                                         "outputs would collide", path)
                stems[path.stem] = path
                check_frame_size(movie.shape, model.metadata.upsampling, path)
                if movie.pixel_size is None:
                    raise ParameterError("pixel size unknown (no resolution tags in the movie): set pixel_size",
                                         path, params=["pixel_size"])
                names = output_names(path.stem, self.local_average)
                plans[-1]["targets"] = {role: Path(self.output_folder) / name for role, name in names.items()}
        except BaseException:
            for plan in plans:
                plan["movie"].close()
            raise
        return plans

    def _metadata_copy(self, source: Path, out: Path) -> Path | None:
        """``model_metadata.mat`` beside the predictions, unless that very file (or an identical one) is there."""
        target = out / source.name
        if target.exists() and (target.resolve() == source.resolve() or filecmp.cmp(target, source, shallow=False)):
            return None
        return target

    # -- one movie ------------------------------------------------------------------------------------------------
    def _predict_movie(self, plan: dict, model, session, stage: dict) -> dict:
        import csv

        from imagebinner.io import TifWriter

        movie, targets = plan["movie"], plan["targets"]
        u = model.metadata.upsampling
        ps_hr = float(movie.pixel_size) / u
        m, n = movie.shape
        state = {"prediction": np.zeros((m * u, n * u), np.float32), "widefield": np.zeros((m, n), np.float32),
                 "n_locs": 0, "constant": 0}
        with open(stage[targets["localizations"]], "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_HEADER)
            densities = self._densities(movie, plan["n_frames"], model, session, state, writer, ps_hr)
            with TifWriter(stage[targets["stacked"]], pixel_size=ps_hr, dtype="float32", overwrite=True) as tif:
                tif.write_stream(densities, plan["n_frames"])
        widefield = np.kron(state["widefield"], np.ones((u, u))).astype(np.float32)
        for role, image in (("predicted", state["prediction"]), ("widefield", widefield)):
            with TifWriter(stage[targets[role]], pixel_size=ps_hr, dtype="float32", overwrite=True) as tif:
                tif.write_array(image[None])
        return {"movie": str(plan["path"]), "frames": plan["n_frames"], "movie_frames": movie.n_frames, "image_shape": [m, n],
                "hr_shape": [m * u, n * u], "pixel_size": float(movie.pixel_size), "pixel_size_hr": ps_hr,
                "localizations": state["n_locs"], "constant_frames": state["constant"],
                "written": [str(t) for t in targets.values()]}

    def _densities(self, movie, n_frames: int, model, session, state: dict, writer, ps_hr: float) -> Iterator[np.ndarray]:
        """Each frame's density, batch by batch; on the way: the CSV rows, the summed prediction and widefield."""
        from imagebinner.tools.predict.network import normalize_frames, run_network

        meta = model.metadata
        l2 = meta.l2_weighting_factor
        ps32 = np.float32(ps_hr)
        for start in range(0, n_frames, self.batch_size):
            stop = min(start + self.batch_size, n_frames)
            raw = np.stack(list(movie.frames(start, stop)))
            for frame in raw:  # Widefield += Images[k] (float32), frame by frame as the notebook does
                state["widefield"] += frame
            normalized, n_constant = normalize_frames(raw, meta.mean_test, meta.std_test)
            state["constant"] += n_constant
            density = run_network(session, normalized)
            state["prediction"] += density.sum(axis=0)
            for k, page in enumerate(density):
                rows, cols, conf = find_maxima(page, self.threshold, l2, self.local_average, self.neighborhood_size)
                # the notebook's layer works in float32: indices (+ offsets) · ps_hr, confidence / L2
                xs = (cols.astype(np.float32) * ps32).tolist()
                ys = (rows.astype(np.float32) * ps32).tolist()
                cs = conf.astype(np.float32).tolist()
                writer.writerows(zip([start + k + 1] * len(xs), xs, ys, cs))
                state["n_locs"] += len(xs)
                yield page
                self._advance()


__all__ = ["CSV_HEADER", "Predict", "output_names"]
