"""Run a TFLite flatbuffer graph as a torch.nn.Module.

Only the float ops the MediaPipe face models use are supported; anything else raises a
clear error. Activations are kept in NCHW (TFLite is NHWC), so weights are permuted once at
load time and layout-sensitive ops (PAD, RESHAPE, CONCATENATION) translate their axes.
The module traces to ONNX with static shapes (a plain Python loop over the ops).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import tflite
from tflite.BuiltinOperator import BuiltinOperator
from tflite.TensorType import TensorType

_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
_NP_TYPES = {TensorType.FLOAT32: np.float32, TensorType.FLOAT16: np.float16,
             TensorType.INT32: np.int32, TensorType.INT64: np.int64}
_NHWC_TO_NCHW = (0, 3, 1, 2)  # axis i of NCHW comes from axis _NHWC_TO_NCHW[i] of NHWC


class UnsupportedOp(NotImplementedError):
    pass


def _activation(x: torch.Tensor, code: int) -> torch.Tensor:
    # tflite ActivationFunctionType: 0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6
    if code == 0:
        return x
    if code == 1:
        return F.relu(x)
    if code == 2:
        return x.clamp(-1.0, 1.0)
    if code == 3:
        return x.clamp(0.0, 6.0)
    raise UnsupportedOp(f"fused activation {code}")


def _same_pad(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding: total split with the extra pixel at the end (bottom/right)."""
    k_eff = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def _spatial_pad(padding: int, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
                 d: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """F.pad order (left, right, top, bottom); padding 0 = SAME, 1 = VALID."""
    if padding == 1:
        return (0, 0, 0, 0)
    top, bottom = _same_pad(hw[0], k[0], s[0], d[0])
    left, right = _same_pad(hw[1], k[1], s[1], d[1])
    return (left, right, top, bottom)


def _nchw_const(a: np.ndarray) -> np.ndarray:
    """Bring an NHWC-broadcastable constant (e.g. PReLU alpha [1,1,C]) into NCHW broadcast form."""
    a4 = a.reshape((1,) * (4 - a.ndim) + a.shape)
    return np.ascontiguousarray(a4.transpose(_NHWC_TO_NCHW))


class _Conv(nn.Module):
    """CONV_2D / DEPTHWISE_CONV_2D with explicit (possibly asymmetric) SAME padding."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None, stride, dilation, pad, groups, act):
        super().__init__()
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if b is None else nn.Parameter(b, requires_grad=False)
        self.stride, self.dilation, self.groups, self.act = stride, dilation, groups, act
        # Symmetric padding goes into the conv itself (cheaper); asymmetric needs F.pad.
        l, r, t, btm = pad
        self.sym = (t, l) if (l == r and t == btm) else None
        self.pad = pad

    def forward(self, x):
        if self.sym is None:
            x = F.pad(x, self.pad)
            padding = 0
        else:
            padding = self.sym
        y = F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return _activation(y, self.act)


class _PReLU(nn.Module):
    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.alpha = nn.Parameter(alpha, requires_grad=False)

    def forward(self, x):
        return torch.where(x >= 0, x, x * self.alpha)


class _MaxPool(nn.Module):
    def __init__(self, k, s, pad, act):
        super().__init__()
        self.k, self.s, self.pad, self.act = k, s, pad, act

    def forward(self, x):
        if any(self.pad):  # TF ignores padded cells in max pooling: pad with -inf
            x = F.pad(x, self.pad, value=float("-inf"))
        return _activation(F.max_pool2d(x, self.k, self.s), self.act)


class _Pad(nn.Module):
    def __init__(self, pads_nhwc: np.ndarray, ndim: int):
        super().__init__()
        pads = pads_nhwc.reshape(ndim, 2)
        if ndim == 4:
            pads = pads[list(_NHWC_TO_NCHW)]
        # F.pad wants (last_lo, last_hi, second_last_lo, ...)
        self.pad = tuple(int(v) for row in pads[::-1] for v in row)

    def forward(self, x):
        return F.pad(x, self.pad)


class _Add(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.act = act

    def forward(self, a, b):
        return _activation(a + b, self.act)


class _Relu(nn.Module):
    def __init__(self, hi: float | None):
        super().__init__()
        self.hi = hi

    def forward(self, x):
        return F.relu(x) if self.hi is None else x.clamp(0.0, self.hi)


class _Reshape(nn.Module):
    def __init__(self, shape, in_ndim: int):
        super().__init__()
        self.shape = [int(v) for v in shape]
        self.from_nchw = in_ndim == 4

    def forward(self, x):
        if self.from_nchw:  # the element order tflite reshapes is NHWC's
            x = x.permute(0, 2, 3, 1)
        return x.reshape([x.shape[0]] + self.shape[1:])  # keep the batch dimension free


class _Concat(nn.Module):
    def __init__(self, axis: int, ndim: int, act):
        super().__init__()
        axis = axis % ndim
        self.axis = _NHWC_TO_NCHW.index(axis) if ndim == 4 else axis
        self.act = act

    def forward(self, *xs):
        return _activation(torch.cat(xs, self.axis), self.act)


class TFLiteModule(nn.Module):
    """Executes subgraph 0 of a .tflite file. Inputs/outputs of rank 4 are NCHW float32.

    forward(x) -> tuple of graph outputs (rank-4 ones in NCHW).
    features(x) -> list of NCHW feature maps, one per spatial level (see `feature_ids`).
    """

    def __init__(self, path: str | Path, feature_output: int = 0):
        super().__init__()
        buf = Path(path).read_bytes()
        model = tflite.Model.GetRootAsModel(buf, 0)
        g = model.Subgraphs(0)
        shapes = [tuple(int(v) for v in g.Tensors(i).ShapeAsNumpy()) for i in range(g.TensorsLength())]
        self.tensor_names = [g.Tensors(i).Name().decode() for i in range(g.TensorsLength())]
        consts: dict[int, np.ndarray] = {}
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            data = model.Buffers(t.Buffer()).DataAsNumpy()
            if isinstance(data, np.ndarray) and data.size:
                if t.Type() not in _NP_TYPES:
                    raise UnsupportedOp(f"tensor {self.tensor_names[i]}: type {t.Type()} (quantized models unsupported)")
                consts[i] = data.view(_NP_TYPES[t.Type()]).reshape(shapes[i])

        self.input_ids = [int(v) for v in g.InputsAsNumpy()]
        self.output_ids = [int(v) for v in g.OutputsAsNumpy()]
        self.steps: list[tuple[list[int], int]] = []  # (input tensor ids, output tensor id)
        self.layers = nn.ModuleList()
        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            oc = model.OperatorCodes(op.OpcodeIndex())
            name = _OP_NAMES.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?")
            ins = [int(v) for v in op.InputsAsNumpy()]
            out = int(op.OutputsAsNumpy()[0])
            if name == "DEQUANTIZE" and ins[0] in consts:  # fp16 weights: fold to float32 now
                consts[out] = consts[ins[0]].astype(np.float32)
                continue
            layer, act_ins = self._build(name, op, ins, shapes, consts)
            self.layers.append(layer)
            self.steps.append((act_ins, out))
        self.shapes = shapes
        self.feature_ids = self._pick_features(self.output_ids[feature_output])

    @staticmethod
    def _options(op, cls):
        opts = cls()
        opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        return opts

    def _build(self, name, op, ins, shapes, consts):
        T = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            depthwise = name == "DEPTHWISE_CONV_2D"
            o = self._options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
            w = consts[ins[1]]
            b = consts[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
            cin = shapes[ins[0]][3]
            if depthwise:  # [1,KH,KW,C*M] -> [C*M,1,KH,KW]
                w_t, groups = w.transpose(3, 0, 1, 2), cin
            else:  # [O,KH,KW,I] -> [O,I,KH,KW]
                w_t, groups = w.transpose(0, 3, 1, 2), cin // w.shape[3]
            s, d = (o.StrideH(), o.StrideW()), (o.DilationHFactor(), o.DilationWFactor())
            pad = _spatial_pad(o.Padding(), shapes[ins[0]][1:3], w_t.shape[2:], s, d)
            return _Conv(T(w_t), None if b is None else T(b), s, d, pad, groups,
                         o.FusedActivationFunction()), [ins[0]]
        if name == "PRELU":
            return _PReLU(T(_nchw_const(consts[ins[1]]))), [ins[0]]
        if name == "MAX_POOL_2D":
            o = self._options(op, tflite.Pool2DOptions)
            k, s = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
            pad = _spatial_pad(o.Padding(), shapes[ins[0]][1:3], k, s)
            return _MaxPool(k, s, pad, o.FusedActivationFunction()), [ins[0]]
        if name == "PAD":
            return _Pad(consts[ins[1]], len(shapes[ins[0]])), [ins[0]]
        if name == "ADD":
            if any(i in consts for i in ins):
                raise UnsupportedOp("ADD with a constant operand")
            o = self._options(op, tflite.AddOptions)
            return _Add(o.FusedActivationFunction()), ins
        if name in ("RELU", "RELU6"):
            return _Relu(None if name == "RELU" else 6.0), [ins[0]]
        if name == "RESHAPE":
            out_shape = shapes[int(op.OutputsAsNumpy()[0])]
            return _Reshape(out_shape, len(shapes[ins[0]])), [ins[0]]
        if name == "CONCATENATION":
            o = self._options(op, tflite.ConcatenationOptions)
            return _Concat(o.Axis(), len(shapes[ins[0]]), o.FusedActivationFunction()), ins
        raise UnsupportedOp(f"tflite op {name} is not supported by engine.tflite_torch")

    def _pick_features(self, out_id: int) -> list[int]:
        """Last rank-4 tensor at each spatial size (>1x1) on the path to output `out_id`."""
        producer = {out: (k, ins) for k, (ins, out) in enumerate(self.steps)}
        needed, stack = set(), [out_id]
        while stack:
            t = stack.pop()
            if t in needed or t not in producer:
                continue
            needed.add(t)
            stack.extend(producer[t][1])
        last: dict[tuple[int, int], int] = {}
        for _, out in self.steps:
            shp = self.shapes[out]
            if out in needed and len(shp) == 4 and shp[1] * shp[2] > 1:
                last[shp[1:3]] = out
        return list(last.values())  # dicts keep first-insertion order: large to small

    def run(self, x: torch.Tensor, keep: list[int]) -> dict[int, torch.Tensor]:
        """Execute the graph on NCHW input x; return the tensors with ids in `keep`."""
        env = {self.input_ids[0]: x}
        for layer, (ins, out) in zip(self.layers, self.steps):
            env[out] = layer(*[env[i] for i in ins])
        return {i: env[i] for i in keep}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env = self.run(x, self.output_ids)
        return tuple(env[i] for i in self.output_ids)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        env = self.run(x, self.feature_ids)
        return [env[i] for i in self.feature_ids]
