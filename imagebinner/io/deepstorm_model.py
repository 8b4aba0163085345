"""Read a trained ZeroCostDL4Mic Deep-STORM model folder: ``model_metadata.mat`` and the weights, no TensorFlow.

A model folder holds ``model_metadata.mat`` (``mean_test``, ``std_test``, ``upsampling_factor``,
``Normalization factor`` = the L2 weighting factor) and the weights of the notebook's ``buildModel``: seven
``conv_bn_relu`` blocks (3×3 conv without bias, BatchNormalization, ReLU; 32, 64, 128, 512, 128, 64, 32 filters)
and a 1×1 conv without bias to one channel. Three weight layouts are read (h5py and zipfile only):

* ``best.weights.keras`` (current notebook): a Keras 3 zip; ``model.weights.h5`` stores each layer's variables
  under ``layers/<snake_case class name>[_<n>]/vars/<i>`` (``conv2d``, ``conv2d_1``, ..., ``batch_normalization``,
  ...; kernel = 0; BN gamma, beta, moving mean, moving variance = 0..3); ``config.json`` gives the epsilon;
* ``weights_best.hdf5`` (notebook v1.13, Keras 2): a whole-model HDF5 (weights under ``model_weights``, layer
  names in its ``layer_names`` attribute, ``<layer>/<layer>/kernel:0``, ...; epsilon in ``model_config``) or a
  weights-only HDF5 (the same groups at the root; epsilon = Keras' default 1e-3).

Errors are one line naming the file and what is wrong (layer order, shapes, missing entries).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np

from imagebinner.errors import FormatError

METADATA_NAME = "model_metadata.mat"
#: weight files in the order they are looked for (current notebook first)
WEIGHT_NAMES = ("best.weights.keras", "weights_best.hdf5")
#: filters of the seven conv_bn_relu blocks of the notebook's buildModel
FILTERS = (32, 64, 128, 512, 128, 64, 32)
BN_EPSILON_DEFAULT = 1e-3
_BN_PARTS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclasses.dataclass(frozen=True)
class ConvBlock:
    """One ``conv_bn_relu`` block: Keras kernel ``(3, 3, in, out)`` and the batch-norm statistics."""

    kernel: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    moving_mean: np.ndarray
    moving_variance: np.ndarray
    epsilon: float

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """The conv folded with its batch norm (float64): ``W' = W·γ/√(var+ε)``, ``b' = β − mean·γ/√(var+ε)``."""
        scale = self.gamma.astype(np.float64) / np.sqrt(self.moving_variance.astype(np.float64) + self.epsilon)
        weight = self.kernel.astype(np.float64) * scale
        bias = self.beta.astype(np.float64) - self.moving_mean.astype(np.float64) * scale
        return weight, bias


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """``model_metadata.mat`` as the notebook writes it."""

    mean_test: float
    std_test: float
    upsampling: int
    l2_weighting_factor: float
    path: Path


@dataclasses.dataclass(frozen=True)
class DeepStormModel:
    """A trained model: metadata, the seven blocks, the 1×1 prediction kernel ``(1, 1, 32, 1)``, where it came from."""

    metadata: ModelMetadata
    blocks: tuple[ConvBlock, ...]
    prediction_kernel: np.ndarray
    weights_path: Path
    layout: str  # "keras3", "keras2-model" or "keras2-weights"


def _scalar(mat: dict, key: str, path: Path) -> float:
    if key not in mat:
        raise FormatError(f"no '{key}' entry (not a Deep-STORM model_metadata.mat)", path)
    value = np.asarray(mat[key])
    if value.size != 1 or value.dtype.kind not in "iuf" or not np.isfinite(value).all():
        raise FormatError(f"'{key}' is not one finite number (got shape {value.shape}, {value.dtype})", path)
    return float(value.reshape(-1)[0])


def read_metadata(path: str | Path) -> ModelMetadata:
    """Read ``model_metadata.mat`` (scipy.io.loadmat): mean/std of the test set, upsampling, L2 factor."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FormatError("model metadata not found (the notebook writes model_metadata.mat when training)", path)
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError ... on damaged files
        raise FormatError(f"cannot read as a MATLAB file ({type(exc).__name__}: {exc})".split("\n")[0], path) from None
    mean, std = _scalar(mat, "mean_test", path), _scalar(mat, "std_test", path)
    up, l2 = _scalar(mat, "upsampling_factor", path), _scalar(mat, "Normalization factor", path)
    if not std > 0:
        raise FormatError(f"'std_test' must be positive, got {std}", path)
    if not (up >= 1 and float(up).is_integer()):
        raise FormatError(f"'upsampling_factor' must be a positive integer, got {up}", path)
    if not l2 > 0:
        raise FormatError(f"'Normalization factor' must be positive, got {l2}", path)
    return ModelMetadata(mean, std, int(up), l2, path)


def find_weights(folder: str | Path) -> Path:
    """The weight file of a model folder (``best.weights.keras``, else ``weights_best.hdf5``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError("model folder not found (or not a folder)", folder)
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise FormatError(f"no weights in the model folder (expected {' or '.join(WEIGHT_NAMES)})", folder)


def read_model(folder: str | Path, weights: str | Path | None = None) -> DeepStormModel:
    """Read a model folder: metadata and weights (layout detected from the content), checked against buildModel."""
    folder = Path(folder)
    path = Path(weights) if weights is not None else find_weights(folder)
    metadata = read_metadata(folder / METADATA_NAME)
    layers, layout = _read_layers(path)
    blocks, prediction = _check_layers(layers, path)
    return DeepStormModel(metadata, blocks, prediction, path, layout)


# -- the layouts ------------------------------------------------------------------------------------------------
#: one weighted layer: (kind "conv" | "bn", name, arrays by part name, epsilon or None)
_Layer = tuple[str, str, dict[str, np.ndarray], float | None]


def _read_layers(path: Path) -> tuple[list[_Layer], str]:
    import zipfile

    if not path.is_file():
        raise FormatError("weights file not found", path)
    try:
        if zipfile.is_zipfile(path):
            return _read_keras3(path), "keras3"
        return _read_keras2(path)
    except FormatError:
        raise
    except Exception as exc:  # h5py/zipfile raise OSError, KeyError, ValueError ... on damaged files
        text = str(exc).split("\n")[0]
        raise FormatError(f"cannot read the weights ({type(exc).__name__}: {text})", path) from None


def _snake(name: str) -> str:
    """Keras' ``to_snake_case`` of a class name (``Conv2D`` -> ``conv2d``, ``BatchNormalization`` -> ...)."""
    out = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", out).lower()


def _kind(class_name: str) -> str | None:
    if class_name in ("Conv2D", "Convolution2D"):
        return "conv"
    if class_name == "BatchNormalization":
        return "bn"
    return None


def _read_keras3(path: Path) -> list[_Layer]:
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "model.weights.h5" not in names:
            raise FormatError("a zip without model.weights.h5: not a Keras 3 .keras file", path)
        config = json.loads(archive.read("config.json")) if "config.json" in names else None
        blob = io.BytesIO(archive.read("model.weights.h5"))
    layer_configs = _config_layers(config)
    with h5py.File(blob, "r") as h5:
        roots = [r for r in ("layers", "_layer_checkpoint_dependencies") if r in h5]  # the latter: Keras 2.13
        if not roots:
            raise FormatError("model.weights.h5 has no 'layers' group", path)
        group = h5[roots[0]]
        if layer_configs is None:  # no config: the groups' own names, in Keras' container order
            entries = _keras3_entries_without_config(group)
        else:
            used: dict[str, int] = {}
            entries = []
            for class_name, name, cfg in layer_configs:  # Keras' _get_unique_name: conv2d, conv2d_1, ...
                base = _snake(class_name)
                used[base] = used.get(base, -1) + 1
                entries.append((class_name, name, cfg, base if used[base] == 0 else f"{base}_{used[base]}"))
        layers: list[_Layer] = []
        for class_name, name, cfg, key in entries:
            kind = _kind(class_name)
            vars_path = f"{key}/vars"
            n_vars = len(group[vars_path]) if vars_path in group else 0
            if kind is None:
                if n_vars:
                    raise FormatError(f"unexpected layer with weights: {name} ({class_name})", path)
                continue
            if kind == "conv":
                if n_vars != 1:
                    raise FormatError(f"layer {name}: expected 1 variable (kernel, no bias), found {n_vars}", path)
                layers.append(("conv", name, {"kernel": np.asarray(group[vars_path]["0"])}, None))
            else:
                if n_vars != 4:
                    raise FormatError(f"layer {name}: expected 4 batch-norm variables, found {n_vars}", path)
                arrays = {part: np.asarray(group[vars_path][str(i)]) for i, part in enumerate(_BN_PARTS)}
                layers.append(("bn", name, arrays, float((cfg or {}).get("epsilon", BN_EPSILON_DEFAULT))))
    return layers


def _keras3_entries_without_config(group) -> list[tuple[str, str, dict, str]]:
    def order(key: str) -> tuple[str, int]:
        m = re.match(r"^(.*?)(?:_(\d+))?$", key)
        return (m[1], int(m[2]) if m[2] else 0)

    convs = sorted((k for k in group if order(k)[0] == "conv2d"), key=order)
    bns = sorted((k for k in group if order(k)[0] == "batch_normalization"), key=order)
    entries = []
    for i, conv in enumerate(convs):
        entries.append(("Conv2D", conv, {}, conv))
        if i < len(bns):
            entries.append(("BatchNormalization", bns[i], {}, bns[i]))
    return entries


def _config_layers(config: dict | None) -> list[tuple[str, str, dict]] | None:
    """(class name, layer name, layer config) of a Keras model config, in the model's layer order."""
    if not config:
        return None
    inner = config.get("config", config)
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        return None
    return [(str(l.get("class_name")), str(l.get("config", {}).get("name", l.get("name"))), l.get("config", {}))
            for l in layers]


def _attr_strings(value) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.asarray(value).reshape(-1)]


def _read_keras2(path: Path) -> tuple[list[_Layer], str]:
    import h5py

    with h5py.File(path, "r") as h5:
        if "model_weights" in h5:
            group, layout = h5["model_weights"], "keras2-model"
            raw = h5.attrs.get("model_config")
            config = json.loads(raw.decode("utf8") if isinstance(raw, bytes) else raw) if raw is not None else None
        elif "layer_names" in h5.attrs:
            group, layout, config = h5, "keras2-weights", None
        else:
            raise FormatError("an HDF5 file without Keras weights (no model_weights group, no layer_names)", path)
        eps = {name: cfg.get("epsilon", BN_EPSILON_DEFAULT) for cls, name, cfg in (_config_layers(config) or [])
               if cls == "BatchNormalization"}
        layers: list[_Layer] = []
        for name in _attr_strings(group.attrs["layer_names"]):
            weight_names = _attr_strings(group[name].attrs.get("weight_names", []))
            if not weight_names:
                continue
            parts = {re.sub(r":\d+$", "", w).split("/")[-1]: np.asarray(group[name][w]) for w in weight_names}
            if set(parts) == {"kernel"}:
                layers.append(("conv", name, parts, None))
            elif set(parts) == set(_BN_PARTS):
                layers.append(("bn", name, parts, float(eps.get(name, BN_EPSILON_DEFAULT))))
            else:
                raise FormatError(f"layer {name}: unexpected weights {sorted(parts)} (a conv with a bias?)", path)
    return layers, layout


# -- the architecture check ---------------------------------------------------------------------------------------
def _check_layers(layers: list[_Layer], path: Path) -> tuple[tuple[ConvBlock, ...], np.ndarray]:
    """The layers must be [conv, bn] × 7 + conv with the notebook's shapes; returns the blocks and the 1×1 kernel."""
    kinds = [k for k, *_ in layers]
    expected = ["conv", "bn"] * len(FILTERS) + ["conv"]
    if kinds != expected:
        raise FormatError(
            f"{len(layers)} weighted layers ({kinds.count('conv')} conv, {kinds.count('bn')} batch-norm) in the "
            f"wrong order or number: not the Deep-STORM model of the notebook (expected 7 conv + batch-norm blocks "
            "and a 1x1 conv)",
            path,
        )
    blocks = []
    channels = 1
    for i, filters in enumerate(FILTERS):
        (_, cname, conv, _), (_, bname, bn, eps) = layers[2 * i], layers[2 * i + 1]
        _shape(conv["kernel"], (3, 3, channels, filters), cname, "kernel", path)
        for part in _BN_PARTS:
            _shape(bn[part], (filters,), bname, part, path)
        if np.any(bn["moving_variance"] + eps <= 0):
            raise FormatError(f"layer {bname}: moving_variance + epsilon is not positive", path)
        blocks.append(ConvBlock(conv["kernel"], *(bn[p] for p in _BN_PARTS), float(eps)))
        channels = filters
    _, pname, pred, _ = layers[-1]
    _shape(pred["kernel"], (1, 1, channels, 1), pname, "kernel", path)
    return tuple(blocks), pred["kernel"]


def _shape(array: np.ndarray, expected: tuple[int, ...], layer: str, part: str, path: Path) -> None:
    if array.shape != expected:
        raise FormatError(
            f"layer {layer}: {part} has shape {array.shape}, expected {expected} (not the notebook's Deep-STORM model)",
            path,
        )
    if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
        raise FormatError(f"layer {layer}: {part} holds non-finite or non-float values", path)


__all__ = [
    "BN_EPSILON_DEFAULT",
    "ConvBlock",
    "DeepStormModel",
    "FILTERS",
    "METADATA_NAME",
    "ModelMetadata",
    "WEIGHT_NAMES",
    "find_weights",
    "read_metadata",
    "read_model",
]
