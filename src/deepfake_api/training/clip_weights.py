"""One CLIP transformer block rebuilt in fp32 numpy from the served int8 ONNX encoder (issue 25).

What it is for: the "LayerNorm-only tuning" experiment trains the LayerNorm gains and biases of the
frozen CLIP ViT-B/16 image tower (detectors/encoder.py) while every other weight stays as served.
That needs the network as fp32 arrays outside onnxruntime: `block_weights` reads one transformer
block's weights out of the very file the service loads (`assets.path("clip")`), dequantised, and
`block_forward` is that block's forward pass in numpy. Nothing in the service uses this yet.

Facts verified on the file (sha256 2d2da5e2..., producer "onnx.quantize 0.1.0", opset 14):
- 12 pre-LN blocks of width 768; the residual stream after block k is `encoder.layer_output(k)`
  and block k reads block k-1's (block 0 reads pre_layrnorm's output).
- LayerNorms are fp32 initializers `vision_model.encoder.layers.{k}.layer_norm{1,2}.{weight,bias}`,
  computed as ReduceMean/Sub/Pow 2/ReduceMean/Add eps/Sqrt/Div with eps = 1e-5.
- Each of q/k/v/out_proj, fc1, fc2 is DynamicQuantizeLinear (activations to uint8, per tensor) ->
  MatMulInteger(x_q, W_q) -> Cast -> Mul(x_scale * W_scale) -> Add(named fp32 bias). The int8 weight
  initializers have generic names (`onnx::MatMul_{n}_quantized`, block 3: 1598-1600 q/k/v, 1614 out,
  1615 fc1, 1616 fc2), so they are found here by walking back from the Add that adds the named bias.
  They are stored (in, out) (768x768, fc1 768x3072, fc2 3072x768) with one scale and one zero point
  per output column (all zero points are 0: symmetric, codes -127..127); w = (q - zp) * scale.
- Attention: reshape to 12 heads of 64, q and k each multiplied by 0.35355338 (= 8**-0.5, so 1/8 on
  the scores), softmax over the 197 keys (axis -1), no mask; heads merged back in head-major order.
- MLP activation: x * sigmoid(1.702 x) (quick_gelu).

Measured agreement (`block_forward(ONNX state after k-1, block_weights(k))` against the ONNX's own
state after k, per-token cosine over the 768 dims, min / mean, and max abs diff; 4 smooth synthetic
224 px images as in the test, and 32 aligned face crops from the feature cache):
- fp32: block 3 0.9962 / 0.9975, 0.059 (faces 0.9951 / 0.9971, 0.082; |h| up to ~5);
  block 11 0.9983 / 0.99982, 0.089 (faces 0.9974 / 0.99976, 0.15; |h| up to ~84).
- `int8_activations=True`: block 3 0.99933 / 0.999998, 0.028 (faces 0.99912 / 0.999994, 0.029);
  block 11 0.99999 / 1.000000, 0.010 (faces 0.99990 / 0.999999, 0.024).
So the fp32 gap is the graph's dynamic uint8 rounding of activations (one scale for the whole
batch tensor, 256 levels; detectors/encoder.py runs one crop per graph run, so emulate it one
crop at a time); the fp32 path is the network those
int8 weights describe, which is what gradient tuning needs. Deliberate mistakes, fp32 min cosine
(block 3 / block 11, synthetic): heads split channel-minor 0.68 / 0.80, q_w transposed 0.57 / 0.80,
out_w transposed 0.59 / 0.67, no 1/8 scaling 0.39 / 0.33, q and k swapped 0.68 / 0.73, fc1 bias
dropped 0.71 / 0.95, v bias dropped 0.95 / 0.95, q bias dropped 0.88 / 0.92 (the k bias is a no-op
under softmax, as in any transformer). GELU instead of quick_gelu hides in the fp32 gap (min 0.995 /
0.996) but not with the rounding emulated: mean 0.99887 / 0.99978 against 0.999998 / 1.000000.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_LAYERS = 12
WIDTH = 768
HEADS = 12
HEAD_DIM = WIDTH // HEADS
MLP = 3072
LN_EPS = 1e-5
QUICK_GELU = 1.702

# (key, bias initializer under vision_model.encoder.layers.{k}., (in, out))
LINEARS = (
    ("q", "self_attn.q_proj", (WIDTH, WIDTH)),
    ("k", "self_attn.k_proj", (WIDTH, WIDTH)),
    ("v", "self_attn.v_proj", (WIDTH, WIDTH)),
    ("out", "self_attn.out_proj", (WIDTH, WIDTH)),
    ("fc1", "mlp.fc1", (WIDTH, MLP)),
    ("fc2", "mlp.fc2", (MLP, WIDTH)),
)
NORMS = (("ln1", "layer_norm1"), ("ln2", "layer_norm2"))
KEYS = (
    "ln1_w",
    "ln1_b",
    "q_w",
    "q_b",
    "k_w",
    "k_b",
    "v_w",
    "v_b",
    "out_w",
    "out_b",
    "ln2_w",
    "ln2_b",
    "fc1_w",
    "fc1_b",
    "fc2_w",
    "fc2_b",
)


class _Graph:
    """Initializers by name and every node by the tensor it produces."""

    def __init__(self, model_path: Path) -> None:
        import onnx
        from onnx import numpy_helper

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"CLIP encoder file missing: {path} (run `make assets`)")
        graph = onnx.load(str(path)).graph
        self.path = path
        self._to_array = numpy_helper.to_array
        self._inits = {t.name: t for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.bias_add = {
            name: node for node in graph.node if node.op_type == "Add" for name in node.input if name in self._inits
        }

    def array(self, name: str) -> np.ndarray:
        if name not in self._inits:
            raise ValueError(f"{self.path}: no initializer {name!r}")
        return np.asarray(self._to_array(self._inits[name]))

    def is_init(self, name: str) -> bool:
        return name in self._inits

    def linear(self, bias: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(int8 weight, scale, zero point) of the MatMulInteger whose output gets `bias` added:
        Add(bias, Mul(Cast(MatMulInteger(x_q, W_q, x_zp, W_zp)), Mul(x_scale, W_scale)))."""
        add = self.bias_add.get(bias)
        if add is None:
            raise ValueError(f"{self.path}: no Add node adds {bias!r}")
        (other,) = [name for name in add.input if name != bias]
        rescale = self.producer.get(other)
        if rescale is None or rescale.op_type != "Mul":
            raise ValueError(f"{self.path}: {bias!r} is not added to a rescaled MatMulInteger output")
        cast = scales = None
        for name in rescale.input:
            node = self.producer.get(name)
            if node is not None and node.op_type == "Cast":
                cast = node
            elif node is not None and node.op_type == "Mul":
                scales = node
        matmul = self.producer.get(cast.input[0]) if cast is not None else None
        if matmul is None or scales is None or matmul.op_type != "MatMulInteger" or len(matmul.input) != 4:
            raise ValueError(f"{self.path}: {bias!r} does not follow Cast(MatMulInteger) * scales")
        weight, weight_zp = matmul.input[1], matmul.input[3]
        weight_scales = [name for name in scales.input if self.is_init(name)]
        if len(weight_scales) != 1:
            raise ValueError(f"{self.path}: the rescale of {bias!r} has no single weight-scale initializer")
        return self.array(weight), self.array(weight_scales[0]), self.array(weight_zp)


def _dequantise(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(q - zp) * scale with one scale/zero point per output column (or one for all)."""
    if q.shape != shape:
        raise ValueError(f"quantised weight has shape {q.shape}, expected {shape} (in, out)")
    for name, a in (("scale", scale), ("zero point", zero_point)):
        if a.shape not in ((), (1,), (shape[1],)):
            raise ValueError(f"weight {name} has shape {a.shape}, expected per output column ({shape[1]},)")
    w = (q.astype(np.float32) - zero_point.astype(np.float32)) * scale.astype(np.float32)
    return np.ascontiguousarray(w, dtype=np.float32)


def block_weights(model_path: Path, k: int) -> dict[str, np.ndarray]:
    """Block k's fp32 weights from the int8 ONNX encoder: LayerNorm gains/biases as stored,
    linear layers dequantised as (in, out) matrices (y = x @ W + b). Keys: `KEYS`."""
    if not isinstance(k, int) or not 0 <= k < N_LAYERS:
        raise ValueError(f"block index must lie in 0..{N_LAYERS - 1}, got {k!r}")
    graph = _Graph(model_path)
    prefix = f"vision_model.encoder.layers.{k}."
    out: dict[str, np.ndarray] = {}
    for key, name in NORMS:
        for part, suffix in (("w", "weight"), ("b", "bias")):
            a = graph.array(f"{prefix}{name}.{suffix}")
            if a.shape != (WIDTH,) or a.dtype != np.float32:
                raise ValueError(f"{prefix}{name}.{suffix} is {a.dtype} {a.shape}, expected float32 ({WIDTH},)")
            out[f"{key}_{part}"] = a
    for key, name, shape in LINEARS:
        bias = f"{prefix}{name}.bias"
        b = graph.array(bias)
        if b.shape != (shape[1],) or b.dtype != np.float32:
            raise ValueError(f"{bias} is {b.dtype} {b.shape}, expected float32 ({shape[1]},)")
        out[f"{key}_w"] = _dequantise(*graph.linear(bias), shape)
        out[f"{key}_b"] = b
    return {key: out[key] for key in KEYS}


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: np.ndarray = centred / np.sqrt(var + np.float32(LN_EPS)) * gain + bias
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(1.702 x), with sigmoid(z) = (1 + tanh(z / 2)) / 2 (no exp overflow)."""
    out: np.ndarray = x * (np.float32(0.5) + np.float32(0.5) * np.tanh(np.float32(QUICK_GELU / 2) * x))
    return out


def fake_quant_uint8(x: np.ndarray) -> np.ndarray:
    """What ONNX DynamicQuantizeLinear does to a linear layer's input, mapped back to float: one
    uint8 scale and zero point for the whole tensor (the whole batch), range widened to hold 0,
    round half to even."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    if hi == lo:
        return np.zeros_like(x)
    scale = np.float32((hi - lo) / 255.0)
    zero_point = np.float32(np.clip(np.round(-lo / scale), 0, 255))
    q = np.clip(np.round(x / scale) + zero_point, 0, 255)
    return ((q - zero_point) * scale).astype(np.float32)


def block_forward(h: np.ndarray, w: dict[str, np.ndarray], *, int8_activations: bool = False) -> np.ndarray:
    """One pre-LN CLIP encoder layer in float32: h + attn(LN1(h)), then + MLP(LN2(.)).

    h: N x T x 768 (T = 197: CLS + 196 patch tokens); 12 heads of 64, scores scaled by 1/8,
    softmax over the T keys, no mask; MLP fc1 -> quick_gelu -> fc2.

    `int8_activations` also rounds the input of every linear layer as the served graph does
    (`fake_quant_uint8`, one scale per tensor, so the result depends on what else is in the
    batch): the int8 graph's numbers, for checking and for quantisation-aware use. Off, it is the
    fp32 network those weights describe."""
    h = np.asarray(h, dtype=np.float32)
    if h.ndim != 3 or h.shape[-1] != WIDTH:
        raise ValueError(f"hidden state must be N x T x {WIDTH}, got {h.shape}")
    n, t, _ = h.shape

    def quant(x: np.ndarray) -> np.ndarray:
        return fake_quant_uint8(x) if int8_activations else x

    def heads(x: np.ndarray) -> np.ndarray:  # N x T x 768 -> N x 12 x T x 64, head-major channels
        return x.reshape(n, t, HEADS, HEAD_DIM).transpose(0, 2, 1, 3)

    x = quant(_layer_norm(h, w["ln1_w"], w["ln1_b"]))
    q = heads(x @ w["q_w"] + w["q_b"])
    k = heads(x @ w["k_w"] + w["k_b"])
    v = heads(x @ w["v_w"] + w["v_b"])
    attn = _softmax((q @ k.transpose(0, 1, 3, 2)) * np.float32(HEAD_DIM**-0.5))
    merged = quant((attn @ v).transpose(0, 2, 1, 3).reshape(n, t, WIDTH))
    h = h + (merged @ w["out_w"] + w["out_b"])

    x = quant(_layer_norm(h, w["ln2_w"], w["ln2_b"]))
    a = quant(_quick_gelu(x @ w["fc1_w"] + w["fc1_b"]))
    out: np.ndarray = h + (a @ w["fc2_w"] + w["fc2_b"])
    return out.astype(np.float32, copy=False)
