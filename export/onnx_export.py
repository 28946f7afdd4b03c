"""`facetrack export RUN --out PACKAGE`: the trained (and adapted) E_I, D and C as ONNX graphs (needs torch).

The tracker graph is the paper's test phase (Fig. 5) in one feed-forward pass: crop → E_I → (z, H) → D's
geometry → vertices posed in crop pixels, with the frozen teacher's landmarks and face flag alongside. The texture
graph is D's texture branch followed by the colour correction C, so the studio decodes C(T) on demand.
After writing, the exporter runs both graphs in ONNX Runtime on enrollment crops and records the largest
difference from torch in the manifest.
"""
from __future__ import annotations

import copy
import json
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine import dam as dam_module
from engine import i2znet, pose
from engine.errors import UserError
from engine.teacher import FaceDetector
from engine.topology import topology
from export.package import GRAPHS, TOPOLOGY, open_package, write_manifest

OPSET = 17
COLOUR_DIR = "colour"   # RUN/colour/model.safetensors: C learned by adaptation (identity when absent)


class TrackerGraph(nn.Module):
    """uint8 [1,256,256,3] RGB crop → z [1,128], H [1,6], vertices [1,468,3] (crop px), G [1,468,3] (cm),
    landmarks [1,468,2] (teacher, crop px), presence [1]."""

    def __init__(self, e_i: i2znet.I2ZNet, dam: dam_module.DAM):
        super().__init__()
        self.e_i, self.dam = e_i, dam

    def forward(self, crop: torch.Tensor):
        x = crop.permute(0, 3, 1, 2)
        out = self.e_i.track(x)
        G = self.dam.decode_geometry(out.z)
        return out.z, out.H, pose.transform(G, out.H), G, out.landmarks[..., :2], out.presence


class TextureGraph(nn.Module):
    """z [1,128], v [1,3] → (C(T), T), each uint8 [1,S,S,3]: the studio shows either."""

    def __init__(self, dam: dam_module.DAM, colour: dam_module.ColourCorrection):
        super().__init__()
        self.dam, self.colour = dam, colour

    def forward(self, z: torch.Tensor, v: torch.Tensor):
        T = self.dam.decode_texture(z, v)
        return _to_uint8(self.colour(T)), _to_uint8(T)


def _to_uint8(T: torch.Tensor) -> torch.Tensor:
    return (T.clamp(0, 1).permute(0, 2, 3, 1) * 255 + 0.5).floor().to(torch.uint8)


def load_colour(run: Path) -> dam_module.ColourCorrection:
    C = dam_module.ColourCorrection()
    path = run / COLOUR_DIR / "model.safetensors"
    if path.is_file():
        from safetensors.torch import load_file

        try:
            C.load_state_dict(load_file(str(path)))
        except Exception as err:   # corrupt or mismatched file: say which
            raise UserError(f"{path}: corrupt colour correction ({str(err)[:120]})") from None
    return C.eval()


class _MaxPReLU(nn.Module):
    """The teacher's PReLU as max(x, αx): bit-identical to torch.where(x >= 0, x, αx) when every α ≤ 1 (else
    x + (α−1)·min(x, 0)). Cheap ops ONNX Runtime keeps in its blocked conv layout, instead of GreaterOrEqual +
    Mul + Where (~30 % of tracker.onnx on CPU; ORT's own PRelu kernel was barely faster than the Where)."""

    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.alpha = nn.Parameter(alpha.detach().clone(), requires_grad=False)
        self.all_below_one = bool((alpha <= 1).all())

    def forward(self, x):
        if self.all_below_one:
            return torch.maximum(x, x * self.alpha)
        return x + (self.alpha - 1) * torch.clamp(x, max=0)   # any α: still cheap ops, ≤ 1 ulp from αx


def _onnx_friendly(module: nn.Module) -> nn.Module:
    """A copy of `module` with the tflite PReLUs swapped for _MaxPReLU (parity is checked against the original
    module, so every export verifies the swap)."""
    from engine.tflite_torch import _PReLU

    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, _PReLU):
                setattr(parent, name, _MaxPReLU(child.alpha))
    return module


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    with warnings.catch_warnings():   # tracer notes about fixed shapes: the graphs are batch-1 by design
        warnings.simplefilter("ignore")
        torch.onnx.export(_onnx_friendly(module), args, str(path), input_names=inputs, output_names=outputs,
                          opset_version=OPSET, dynamo=False)


def _fold_nonzero(path: Path) -> None:
    """Replace NonZero of a constant (the exporter's form of indexing with a fixed boolean mask, e.g. I2ZNet's
    heatmap regions) by its value: ONNX Runtime does not constant-fold NonZero and would recompute it per frame."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
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
    if folded:   # drop the mask constants nothing reads any more
        used = {i for n in model.graph.node for i in n.input}
        for n in [constants[name] for name in folded - used]:
            model.graph.node.remove(n)
        onnx.save(model, str(path))


@torch.no_grad()
def export_package(run: str | Path, out: str | Path) -> dict:
    run, out = Path(run), Path(out)
    if not (run / "enrollment" / "crops.npy").is_file():
        raise UserError(f"{run}: no enrollment found (run `facetrack build` or the steps before export)")
    dam = dam_module.load(run / "dam")
    e_i = i2znet.load(run / "i2z")
    colour = load_colour(run)
    out.mkdir(parents=True, exist_ok=True)
    tracker, texture = TrackerGraph(e_i, dam).eval(), TextureGraph(dam, colour).eval()
    crops = np.load(run / "enrollment" / "crops.npy", mmap_mode="r")
    sample = torch.from_numpy(np.array(crops[:1]))   # a writable copy of the memory map
    _export(tracker, (sample,), out / "tracker.onnx", ["crop"], ["z", "H", "vertices", "G", "landmarks", "presence"])
    _fold_nonzero(out / "tracker.onnx")
    z0, H0 = tracker(sample)[:2]
    _export(texture, (z0, pose.view_vector(H0)), out / "texture.onnx", ["z", "v"], ["texture", "texture_raw"])
    _export(FaceDetector().eval(), (torch.zeros(1, 3, 128, 128),), out / "detector.onnx", ["image"],
            ["regressors", "logits"])
    topo = topology()
    np.savez(out / TOPOLOGY, triangles=topo.triangles, uv=topo.uv, holes=topo.holes)
    parity = check_parity(out, tracker, texture, crops)
    import onnx

    manifest = write_manifest(out, {
        "input": {"crop_size": i2znet.CROP_SIZE, "dtype": "uint8", "layout": "NHWC", "colour": "RGB"},
        "texture": {"size": int(dam.config["texture_size"])},
        "colour_correction": {"matrix": colour.matrix.tolist(), "bias": colour.conv.bias.tolist()},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET,
                     "python": platform.python_version()},
        "source_run": str(run.resolve()),
        "parity": parity,
        "files": [*GRAPHS, TOPOLOGY],
    })
    open_package(out)   # what we wrote must verify
    return manifest


def check_parity(out: Path, tracker: nn.Module, texture: nn.Module, crops: np.ndarray, n: int = 4) -> dict:
    """Largest |ORT − torch| over a few enrollment crops: z, vertices (px), texture (/255)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    trk = ort.InferenceSession(str(out / "tracker.onnx"), opts, providers=["CPUExecutionProvider"])
    tex = ort.InferenceSession(str(out / "texture.onnx"), opts, providers=["CPUExecutionProvider"])
    worst = {"z": 0.0, "vertices_px": 0.0, "texture_255": 0.0}
    for i in np.linspace(0, len(crops) - 1, min(n, len(crops))).astype(int):
        crop = np.array(crops[i:i + 1])
        z, H, V = (t.numpy() for t in tracker(torch.from_numpy(crop))[:3])
        oz, oH, oV = trk.run(["z", "H", "vertices"], {"crop": crop})
        v = pose.view_vector(H).astype(np.float32)
        T = texture(torch.from_numpy(z), torch.from_numpy(v))[0].numpy().astype(int)
        oT = tex.run(["texture"], {"z": z, "v": v})[0].astype(int)
        worst["z"] = max(worst["z"], float(np.abs(oz - z).max()))
        worst["vertices_px"] = max(worst["vertices_px"], float(np.abs(oV - V).max()))
        worst["texture_255"] = max(worst["texture_255"], float(np.abs(oT - T).max()))
    return worst


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a performer package (ONNX graphs + topology + manifest)")
    p.add_argument("run_dir", metavar="RUN", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(run=lambda a: print(json.dumps(export_package(a.run_dir, a.out)["parity"])))
