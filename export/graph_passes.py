"""Rewrites of exported ONNX graphs that keep every value and let ONNX Runtime's CPU provider run the convolutional
trunk in its blocked (NCHWc) layout end to end.

ORT converts Conv/MaxPool/Add/Relu chains to NCHWc, but any op it cannot block (a Pad, a broadcast Mul) forces a
ReorderOutput before it and a ReorderInput after it: two full copies of the feature map. The tracker graph had 67
of them, mostly from the teacher's TFLite-style explicit padding. `optimise` (run by `facetrack export`):
  1. replaces NonZero of a constant mask by its value (ORT does not constant-fold NonZero);
  2. constant-folds with ORT's basic, provider-independent level (the exporter computes F.pad's pads at run time);
  3. folds each zero spatial Pad into the Conv that reads it (ONNX Conv takes asymmetric pads);
  4. turns each zero channel Pad (the teacher's residual widening) into a 1×1 Conv with [I; 0] weights: exact;
  5. drops the opset imports ORT adds for domains no node uses.
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
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]   # ORT lists all its domains; other tools need not
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"nonzero_folded": nonzero, "pads_into_conv": spatial, "channel_pads_as_conv": widened}


def quantise_gemms(model, prefix: str) -> int:
    """Each Gemm(A, W, b) whose name starts with `prefix` (transB = 1, W and b constant) → int8 weights, per output
    channel, symmetric; activations quantised per call (ONNX's DynamicQuantizeLinear → MatMulInteger → rescale).
    For the CPU provider: a batch-1 Gemm is a matrix-vector product, bound by reading W, and int8 reads 4× less.
    Returns how many were rewritten."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    done = 0
    for gemm in [n for n in graph.node if n.op_type == "Gemm" and n.name.startswith(prefix)]:
        attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        if attrs.get("transA", 0) or not attrs.get("transB", 0) or attrs.get("alpha", 1.0) != 1.0 \
                or attrs.get("beta", 1.0) != 1.0 or gemm.input[1] not in inits or len(gemm.input) < 3 \
                or gemm.input[2] not in inits:
            continue
        w = numpy_helper.to_array(inits[gemm.input[1]]).astype(np.float32)          # [N, K]
        scale = np.maximum(np.abs(w).max(1), 1e-12) / 127                          # per output channel
        wq = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8).T      # [K, N]
        base = gemm.name
        names = {k: f"{base}/int8_{k}" for k in ("w", "w_scale", "aq", "a_scale", "a_zero", "acc", "accf", "ab",
                                                  "scaled")}
        graph.initializer.extend([numpy_helper.from_array(wq, names["w"]),
                                  numpy_helper.from_array(scale.astype(np.float32), names["w_scale"])])
        new = [
            helper.make_node("DynamicQuantizeLinear", [gemm.input[0]], [names["aq"], names["a_scale"], names["a_zero"]],
                             name=f"{base}/int8_quantise"),
            helper.make_node("MatMulInteger", [names["aq"], names["w"], names["a_zero"]], [names["acc"]],
                             name=f"{base}/int8_matmul"),
            helper.make_node("Cast", [names["acc"]], [names["accf"]], to=TensorProto.FLOAT, name=f"{base}/int8_cast"),
            helper.make_node("Mul", [names["a_scale"], names["w_scale"]], [names["ab"]], name=f"{base}/int8_scales"),
            helper.make_node("Mul", [names["accf"], names["ab"]], [names["scaled"]], name=f"{base}/int8_rescale"),
            helper.make_node("Add", [names["scaled"], gemm.input[2]], [gemm.output[0]], name=f"{base}/int8_bias"),
        ]
        at = list(graph.node).index(gemm)
        graph.node.remove(gemm)
        for k, node in enumerate(new):
            graph.node.insert(at + k, node)
        done += 1
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return done


def int8_variant(src: Path, dst: Path, prefix: str) -> int:
    """Write `dst`: the graph at `src` with the Gemms under `prefix` in int8 (quantise_gemms)."""
    import onnx

    model = onnx.load(str(src))
    n = quantise_gemms(model, prefix)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return n
