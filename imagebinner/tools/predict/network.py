"""The Deep-STORM network as an ONNX graph built from the weights (batch norm folded), run with onnxruntime.

Graph (NCHW, float32): normalized camera frames ``(batch, 1, M, N)`` → nearest-neighbour upsampling by ``u`` (ONNX
``Resize``, asymmetric/floor: exactly ``np.kron`` with a ``u × u`` block of ones) → seven ``conv 3×3 (+ folded BN)
→ ReLU`` blocks with 2×2 max-pooling after the first three and 2×2 nearest upsampling before the last three → 1×1
conv → ReLU (the notebook's ``predicted_density[predicted_density < 0] = 0``). Output ``density``: ``(batch, 1, uM,
uN)``.

The frame normalization (``project_01`` then ``normalize_im`` with the metadata's mean and std) is
:func:`normalize_frames`, in numpy, in the notebook's dtypes.
"""

from __future__ import annotations

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.io.deepstorm_model import DeepStormModel

OPSET = 17
#: the network's input must be a multiple of this (three 2×2 max-poolings, then three 2× upsamplings)
SIZE_MULTIPLE = 8
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def normalize_frames(frames: np.ndarray, mean: float, std: float) -> tuple[np.ndarray, int]:
    """``normalize_im(project_01(frame), mean, std)`` per frame, as float32 ``(n, M, N)``; the number of constant
    frames (for which ``project_01`` divides 0 by 0: the notebook gets NaN; here they become ``(0 − mean)/std``)."""
    frames = np.asarray(frames)
    lo = frames.min(axis=(1, 2), keepdims=True).astype(np.float64)
    hi = frames.max(axis=(1, 2), keepdims=True).astype(np.float64)
    span = hi - lo
    flat = span == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        projected = ((frames - lo) / np.where(flat, 1.0, span)).astype(np.float32)
    return (projected - np.float32(mean)) / np.float32(std), int(np.count_nonzero(flat))


def check_frame_size(shape: tuple[int, int], upsampling: int, where) -> None:
    """The network needs ``u·M`` and ``u·N`` divisible by 8 (else its output is smaller than its input: the
    notebook fails too)."""
    m, n = shape
    if (upsampling * m) % SIZE_MULTIPLE or (upsampling * n) % SIZE_MULTIPLE:
        step = SIZE_MULTIPLE // np.gcd(SIZE_MULTIPLE, upsampling)
        raise ParameterError(
            f"frames of {n} x {m} px give a {upsampling * n} x {upsampling * m} network input at upsampling "
            f"{upsampling}, not divisible by {SIZE_MULTIPLE} (three 2x2 poolings): crop width and height to "
            f"multiples of {step} px",
            where,
        )


def build_onnx(model: DeepStormModel):
    """The ONNX ``ModelProto`` of ``model`` (dynamic batch and image size; upsampling from the metadata)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    u = float(model.metadata.upsampling)

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    const("up_scales", np.array([1.0, 1.0, u, u], np.float32))
    const("x2_scales", np.array([1.0, 1.0, 2.0, 2.0], np.float32))

    def resize(src: str, scales: str, out: str) -> str:
        nodes.append(helper.make_node("Resize", [src, "", scales], [out], mode="nearest",
                                      coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        return out

    x = resize("frames", "up_scales", "upsampled")
    for i, block in enumerate(model.blocks, start=1):
        if i in (5, 6, 7):
            x = resize(x, "x2_scales", f"up{i}")
        weight, bias = block.folded()
        w = const(f"W{i}", weight.transpose(3, 2, 0, 1).astype(np.float32))
        b = const(f"B{i}", bias.astype(np.float32))
        nodes.append(helper.make_node("Conv", [x, w, b], [f"conv{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
        x = f"relu{i}"
        if i in (1, 2, 3):
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"pool{i}"
    wp = const("W_pred", model.prediction_kernel.transpose(3, 2, 0, 1).astype(np.float32))
    nodes.append(helper.make_node("Conv", [x, wp], ["prediction"], kernel_shape=[1, 1]))
    nodes.append(helper.make_node("Relu", ["prediction"], ["density"]))
    graph = helper.make_graph(
        nodes,
        "deepstorm",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [helper.make_tensor_value_info("density", TensorProto.FLOAT, ["batch", 1, "hr_height", "hr_width"])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="imagebinner")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def available_providers() -> list[str]:
    """onnxruntime's execution providers on this machine."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def make_session(model: DeepStormModel, device: str = "auto"):
    """An onnxruntime session of the model's graph: ``device`` "cpu", "cuda" (an error when onnxruntime has no
    CUDA provider here), or "auto" (CUDA when available, else CPU). Returns ``(session, provider used)``."""
    import onnxruntime

    available = available_providers()
    if device == "cuda" and PROVIDERS["cuda"] not in available:
        raise ParameterError(
            "device is 'cuda' but onnxruntime has no CUDA provider here (install the gpu extra: onnxruntime-gpu)",
            params=["device"],
        )
    use_cuda = device == "cuda" or (device == "auto" and PROVIDERS["cuda"] in available)
    providers = [PROVIDERS["cuda"], PROVIDERS["cpu"]] if use_cuda else [PROVIDERS["cpu"]]
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        build_onnx(model).SerializeToString(), sess_options=options, providers=providers
    )
    return session, session.get_providers()[0]


def run_network(session, normalized: np.ndarray) -> np.ndarray:
    """Densities ``(n, uM, uN)`` float32 of normalized frames ``(n, M, N)`` (negatives already 0)."""
    out = session.run(["density"], {"frames": np.ascontiguousarray(normalized[:, None], dtype=np.float32)})[0]
    return out[:, 0]
