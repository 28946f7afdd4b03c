"""Rewrites of exported ONNX graphs that keep every value and let ONNX Runtime's CPU provider run the convolutional
trunk in its blocked (NCHWc) layout end to end.

ORT converts Conv/MaxPool/Add/Relu chains to NCHWc, but any op it cannot block (a Pad, a broadcast Mul) forces a
ReorderOutput before it and a ReorderInput after it: two full copies of the feature map. The tracker graph had 67
of them, mostly from the teacher's TFLite-style explicit padding. `optimise` (run by `facetrack export`):
  1. replaces NonZero of a constant mask by its value (ORT does not constant-fold NonZero);
  2. constant-folds with ORT's basic, provider-independent level (the exporter computes F.pad's pads at run time);
  3. folds each zero spatial Pad into the Conv that reads it (ONNX Conv takes asymmetric pads);
  4. turns each zero channel Pad (the teacher's residual widening) into a 1×1 Conv with [I; 0] weights: exact.
The exporter's parity check then compares the rewritten graph against torch.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def fold_nonzero(model) -> int:
    """NonZero(Constant) → Constant(indices). Returns how many were folded."""
    import onnx
    from onnx import numpy_helper

    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    folded = set()
    for node in model.graph.node:
        source = constants.get(node.input[0]) if node.op_type == "NonZero" else None
        if source is None or source.attribute[0].name != "value":
            continue
        value = np.stack(np.nonzero(numpy_helper.to_array(source.attribute[0].t))).astype(np.int64)
        node.op_type, node.domain = "Constant", ""
        del node.input[:]
        node.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(value)))
        folded.add(source.output[0])
    used = {i for n in model.graph.node for i in n.input}
    for name in folded - used:   # drop the mask constants nothing reads any more
        model.graph.node.remove(constants[name])
    return len(folded)


def constant_fold(path: Path) -> None:
    """Rewrite `path` in place with ONNX Runtime's basic optimisations (constant folding, redundant nodes): standard
    ONNX ops only, valid for every provider (TensorRT included)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "basic.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        Path(opts.optimized_model_filepath).replace(path)


def fold_pads(model) -> tuple[int, int]:
    """Zero Pads (constant pads input, NCHW) → Conv pads / identity 1×1 Conv. Returns (spatial, channel) counts."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    channels = {v.name: v.type.tensor_type.shape.dim[1].dim_value for v in (*inferred.value_info, *inferred.input)
                if len(v.type.tensor_type.shape.dim) == 4}
    readers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    spatial = widened = 0
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        pads = const(pad.input[1])
        value = const(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if pads is None or value is None or pads.size != 8 or mode != b"constant" or float(value) != 0:
            continue
        lo, hi = pads[:4], pads[4:]
        users = readers.get(pad.output[0], [])
        if not (lo[:2].any() or hi[:2].any()) and users and all(u.op_type == "Conv" for u in users):
            for conv in users:   # ONNX Conv pads: [top, left, bottom, right]
                old = next((a for a in conv.attribute if a.name == "pads"), None)
                base = list(old.ints) if old is not None else [0, 0, 0, 0]
                if old is not None:
                    conv.attribute.remove(old)
                conv.attribute.append(helper.make_attribute(
                    "pads", [base[0] + int(lo[2]), base[1] + int(lo[3]), base[2] + int(hi[2]), base[3] + int(hi[3])]))
                conv.input[0] = pad.input[0]
            graph.node.remove(pad)
            spatial += 1
        elif not (lo[[0, 2, 3]].any() or hi[[0, 2, 3]].any()) and lo[1] == 0 and channels.get(pad.input[0]):
            c, extra = channels[pad.input[0]], int(hi[1])
            eye = np.zeros((c + extra, c, 1, 1), np.float32)
            eye[np.arange(c), np.arange(c)] = 1
            name = pad.output[0] + "/widen"
            graph.initializer.append(numpy_helper.from_array(eye, name))
            conv = helper.make_node("Conv", [pad.input[0], name], [pad.output[0]], name=pad.name + "/widen")
            graph.node.insert(list(graph.node).index(pad), conv)
            graph.node.remove(pad)
            widened += 1
    return spatial, widened


def optimise(path: Path) -> dict:
    """All passes on the graph at `path`, in place. Returns what was rewritten (for the export report)."""
    import onnx

    model = onnx.load(str(path))
    nonzero = fold_nonzero(model)
    onnx.save(model, str(path))
    constant_fold(path)
    model = onnx.load(str(path))
    spatial, widened = fold_pads(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"nonzero_folded": nonzero, "pads_into_conv": spatial, "channel_pads_as_conv": widened}
