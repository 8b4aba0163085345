"""Tiny Deep-STORM model folders from known weights, in the notebook's three weight layouts (tests, demo, benchmark).

* :func:`random_blocks`: the notebook's architecture with random weights and non-trivial batch-norm statistics;
* :func:`detector_blocks`: weights set by hand so the network finds isolated spots: at the camera-pixel level (after
  three 2×2 poolings of the ×8 upsampled frame) a centre-minus-neighbours kernel, then separable smoothing kernels
  on the way back up that put one density peak per spot, near the middle of its camera pixel;
* :func:`write_model_folder`: ``model_metadata.mat`` + ``best.weights.keras`` (Keras 3 zip), or
  ``weights_best.hdf5`` as Keras 2 writes it (whole model, or weights only), with h5py, zipfile and scipy only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.io.deepstorm_model import BN_EPSILON_DEFAULT, FILTERS, METADATA_NAME, ConvBlock

LAYOUTS = ("keras3", "keras2-model", "keras2-weights")
_BLOCK_NAMES = [f"CNNF{i}" for i in range(1, 8)]


def random_blocks(seed: int = 0, epsilon: float = BN_EPSILON_DEFAULT) -> tuple[tuple[ConvBlock, ...], np.ndarray]:
    """The seven blocks and the 1×1 kernel with random (He-scaled) weights and random batch-norm statistics."""
    rng = np.random.default_rng(seed)
    blocks, channels = [], 1
    for filters in FILTERS:
        kernel = rng.normal(0, np.sqrt(2.0 / (9 * channels)), (3, 3, channels, filters)).astype(np.float32)
        gamma = rng.uniform(0.5, 1.5, filters).astype(np.float32)
        beta = rng.normal(0, 0.2, filters).astype(np.float32)
        mean = rng.normal(0, 0.3, filters).astype(np.float32)
        var = rng.uniform(0.5, 2.0, filters).astype(np.float32)
        blocks.append(ConvBlock(kernel, gamma, beta, mean, var, epsilon))
        channels = filters
    prediction = rng.normal(0, np.sqrt(1.0 / channels), (1, 1, channels, 1)).astype(np.float32)
    return tuple(blocks), prediction


def _identity_bn(filters: int, beta0: float = 0.0, epsilon: float = BN_EPSILON_DEFAULT) -> tuple[np.ndarray, ...]:
    """Batch-norm statistics that scale by 1: gamma = 2, variance = 4 − ε (non-trivial, folded exactly)."""
    gamma = np.full(filters, 2.0, np.float32)
    beta = np.zeros(filters, np.float32)
    beta[0] = beta0
    mean = np.zeros(filters, np.float32)
    var = np.full(filters, 4.0 - epsilon, np.float32)
    return gamma, beta, mean, var


def detector_blocks(
    offset: float = 0.15, scale: float = 1.0, epsilon: float = BN_EPSILON_DEFAULT
) -> tuple[tuple[ConvBlock, ...], np.ndarray]:
    """A model "built from a known kernel": only channel 0 is used. Blocks 1–3 pass the frame through (identity
    kernels, max-pooling), block 4 (the camera-pixel grid at ×8) computes ``relu(p − mean of the 8 neighbours −
    offset)``, blocks 5–7 smooth with the separable kernels (0, 1, 1), (2, 1, 0), (2, 3, 1) (one density maximum
    per isolated response, 3 hr pixels into its 8 × 8 block), and the 1×1 kernel multiplies by ``scale``."""
    blocks, channels = [], 1
    identity = np.zeros((3, 3), np.float32)
    identity[1, 1] = 1.0
    dog = np.full((3, 3), -1.0 / 8.0, np.float32)
    dog[1, 1] = 1.0
    smooth = {5: (0, 1, 1), 6: (2, 1, 0), 7: (2, 3, 1)}
    for i, filters in enumerate(FILTERS, start=1):
        kernel = np.zeros((3, 3, channels, filters), np.float32)
        if i <= 3:
            kernel[:, :, 0, 0] = identity
        elif i == 4:
            kernel[:, :, 0, 0] = dog
        else:
            k = np.asarray(smooth[i], np.float32)
            kernel[:, :, 0, 0] = np.outer(k, k) / k.sum() ** 2
        beta0 = -offset if i == 4 else 0.0  # the batch norm scales by 1, then adds beta
        blocks.append(ConvBlock(kernel, *_identity_bn(filters, beta0, epsilon), epsilon))
        channels = filters
    prediction = np.zeros((1, 1, channels, 1), np.float32)
    prediction[0, 0, 0, 0] = scale
    return tuple(blocks), prediction


# -- writing ----------------------------------------------------------------------------------------------------
def write_metadata(path: str | Path, mean_test: float, std_test: float, upsampling: int, l2: float) -> Path:
    """``model_metadata.mat`` with the notebook's keys and types (mean/std float32, upsampling int, L2 float)."""
    from scipy.io import savemat

    mdict = {"mean_test": np.float32(mean_test), "std_test": np.float32(std_test),
             "upsampling_factor": int(upsampling), "Normalization factor": float(l2)}
    savemat(str(path), mdict)
    return Path(path)


def _layer_list(blocks, prediction) -> list[tuple[str, str, dict, list[tuple[str, np.ndarray]]]]:
    """The notebook's model layers in order: (class name, layer name, config, [(weight name, array)])."""
    layers = [("InputLayer", "input_1", {}, [])]
    for i, (name, block) in enumerate(zip(_BLOCK_NAMES, blocks), start=1):
        if i in (5, 6, 7):
            layers.append(("UpSampling2D", f"CNNUpsample{i - 4}", {"size": [2, 2]}, []))
        layers.append(("Conv2D", f"conv-{name}", {"filters": block.kernel.shape[-1], "kernel_size": [3, 3],
                                                  "padding": "same", "use_bias": False},
                       [("kernel", block.kernel)]))
        layers.append(("BatchNormalization", f"BN-{name}", {"epsilon": block.epsilon},
                       [("gamma", block.gamma), ("beta", block.beta), ("moving_mean", block.moving_mean),
                        ("moving_variance", block.moving_variance)]))
        layers.append(("Activation", f"Relu-{name}", {"activation": "relu"}, []))
        if i in (1, 2, 3):
            layers.append(("MaxPooling2D", f"CNNPool{i}", {"pool_size": [2, 2]}, []))
    layers.append(("Conv2D", "Prediction", {"filters": 1, "kernel_size": [1, 1], "use_bias": False},
                   [("kernel", prediction)]))
    return layers


def _config(layers) -> dict:
    return {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": cls, "name": name, "config": {"name": name, **cfg}} for cls, name, cfg, _ in layers]}}


def _snake(class_name: str) -> str:
    from imagebinner.io.deepstorm_model import _snake as snake

    return snake(class_name)


def _write_keras3(path: Path, layers) -> None:
    import zipfile

    import h5py

    blob = io.BytesIO()
    with h5py.File(blob, "w") as h5:
        used: dict[str, int] = {}
        for cls, _name, _cfg, weights in layers:
            base = _snake(cls)
            used[base] = used.get(base, -1) + 1
            key = base if used[base] == 0 else f"{base}_{used[base]}"
            if weights:
                group = h5.create_group(f"layers/{key}/vars")
                for i, (_, array) in enumerate(weights):
                    group.create_dataset(str(i), data=array)
        h5.create_group("optimizer/vars").create_dataset("0", data=np.int64(100))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.8.0", "date_saved": "2026-01-01"}))
        archive.writestr("config.json", json.dumps(_config(layers)))
        archive.writestr("model.weights.h5", blob.getvalue())


def _write_keras2_group(group, layers) -> None:
    group.attrs["layer_names"] = np.array([name.encode() for _, name, _, _ in layers])
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.8.0"
    for _, name, _, weights in layers:
        g = group.create_group(name)
        names = [f"{name}/{w}:0" for w, _ in weights]
        g.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
        for n, (_, array) in zip(names, weights):
            g.create_dataset(n, data=array)


def _write_keras2(path: Path, layers, whole_model: bool) -> None:
    import h5py

    with h5py.File(path, "w") as h5:
        if whole_model:
            h5.attrs["model_config"] = json.dumps(_config(layers)).encode()
            h5.attrs["keras_version"] = b"2.8.0"
            h5.attrs["backend"] = b"tensorflow"
            _write_keras2_group(h5.create_group("model_weights"), layers)
            h5.create_group("optimizer_weights")
        else:
            _write_keras2_group(h5, layers)


def write_model_folder(
    folder: str | Path,
    blocks: tuple[ConvBlock, ...],
    prediction: np.ndarray,
    upsampling: int = 8,
    l2: float = 100.0,
    mean_test: float = 0.0,
    std_test: float = 1.0,
    layout: str = "keras3",
) -> Path:
    """Write a model folder as the notebook leaves it (``model_metadata.mat`` + the weight file of ``layout``:
    "keras3" → ``best.weights.keras``, "keras2-model"/"keras2-weights" → ``weights_best.hdf5``); returns the
    folder."""
    if layout not in LAYOUTS:
        raise ParameterError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_metadata(folder / METADATA_NAME, mean_test, std_test, upsampling, l2)
    layers = _layer_list(blocks, prediction)
    if layout == "keras3":
        _write_keras3(folder / "best.weights.keras", layers)
    else:
        _write_keras2(folder / "weights_best.hdf5", layers, whole_model=layout == "keras2-model")
    return folder


__all__ = ["LAYOUTS", "detector_blocks", "random_blocks", "write_metadata", "write_model_folder"]
