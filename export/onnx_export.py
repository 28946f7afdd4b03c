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

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine import dam as dam_module
from engine import i2znet, pose, view_bias
from engine.errors import UserError
from engine.run import LATENTS, WEIGHTS, Run, enrollment_prompts
from engine.teacher import FaceDetector
from engine.topology import topology
from export import graph_passes, ranges
from export.package import BASIS, GRAPHS, INT8_TRACKER, IRIS, TOPOLOGY, VIEW_KEYS, open_package, write_manifest

OPSET = 17
INT8_GEMMS = "/e_i/level_heads."   # the Gemms holding ~70 % of tracker.onnx's weights: E_I's p_l^z, p_l^h
INT8_MAX_PX = 0.25                 # keep the int8 tracker only while it moves no vertex further than this


CROP_SIZE = i2znet.TEACHER_SIZE    # the package's crop: warped straight to the size both streams read


class TrackerGraph(nn.Module):
    """uint8 [1,192,192,3] RGB crop → z [1,128], H [1,6], vertices [1,468,3] (crop px), G [1,468,3] (cm),
    landmarks [1,468,2] (teacher, crop px), presence [1].

    I2ZNet learns on 256² crops resized to 192² inside; the package's loop warps the same region straight to 192²,
    which spares the graph its resize and the loop a larger warp (docs/BENCHMARKS.md), so its pixel outputs are
    brought from 256-crop to 192-crop pixels here (pixel-index coordinates: u' = (u + ½)·k − ½)."""

    def __init__(self, e_i: i2znet.I2ZNet, dam: dam_module.DAM):
        super().__init__()
        self.e_i, self.dam = e_i, dam

    def forward(self, crop: torch.Tensor):
        out = self.e_i.track(crop.permute(0, 3, 1, 2))
        k = CROP_SIZE / i2znet.CROP_SIZE
        H = torch.cat([out.H[:, :1] * k, out.H[:, 1:4], (out.H[:, 4:6] + 0.5) * k - 0.5], 1)
        G = self.dam.decode_geometry(out.z)
        return out.z, H, pose.transform(G, H), G, (out.landmarks[..., :2] + 0.5) * k - 0.5, out.presence


def package_crops(crops: np.ndarray) -> np.ndarray:
    """Enrollment's 256² crops [N,256,256,3] at the package's crop size (area-averaged, as a warp that size sees)."""
    return np.stack([cv2.resize(np.asarray(c), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA) for c in crops])


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
    path = Run(run).colour / WEIGHTS          # C learned by adaptation (identity when absent)
    if path.is_file():
        from safetensors.torch import load_file

        try:
            C.load_state_dict(load_file(str(path)))
        except Exception as err:   # corrupt or mismatched file: say which
            raise UserError(f"{path}: corrupt colour correction ({str(err)[:120]})") from None
    return C.eval()


class _DepthwisePReLU(nn.Module):
    """The teacher's PReLU as x + (1 − α)·relu(−x), both products depthwise 1×1 convs: ONNX Runtime keeps these
    in its blocked conv layout, where a broadcast Mul (max(x, αx)) or GreaterOrEqual + Where forced a layout copy
    before and after every PReLU. Equal to αx for x < 0 within an ulp (parity is checked at export)."""

    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        a = alpha.detach().reshape(-1, 1, 1, 1)
        self.register_buffer("negate", -torch.ones_like(a))
        self.register_buffer("slope", (1 - a).clone())

    def forward(self, x):
        c = x.shape[1]
        return x + F.conv2d(F.relu(F.conv2d(x, self.negate, groups=c)), self.slope, groups=c)


class _FoldedLevelHead(nn.Module):
    """I2ZNet's LevelHead with each GroupNorm's affine folded into the Compressor's first (1×1) conv, and p_l^z,
    p_l^h as one Gemm: the same function in fewer, larger ops (24 elementwise passes and 4 Gemms fewer)."""

    def __init__(self, head: i2znet.LevelHead):
        super().__init__()
        self.eps = [n.eps for n in head.norms]
        gamma = torch.cat([n.weight for n in head.norms]).detach()
        beta = torch.cat([n.bias for n in head.norms]).detach()
        first = head.compressor[0]
        w = first.weight.detach()
        self.first = nn.Conv2d(w.shape[1], w.shape[0], 1)
        with torch.no_grad():
            self.first.weight.copy_(w * gamma[None, :, None, None])
            self.first.bias.copy_(first.bias.detach() + w[:, :, 0, 0] @ beta)
        self.rest = copy.deepcopy(head.compressor[1:])
        self.width = head.p_z.out_features
        self.p = nn.Linear(head.p_z.in_features, 2 * self.width)
        with torch.no_grad():
            self.p.weight.copy_(torch.cat([head.p_z.weight, head.p_h.weight]))
            self.p.bias.copy_(torch.cat([head.p_z.bias, head.p_h.bias]))

    def forward(self, maps):
        u = torch.cat([F.group_norm(m, 1, eps=e) for m, e in zip(maps, self.eps)], 1)
        p = F.relu(self.p(self.rest(self.first(u)).flatten(1)))
        return p[:, :self.width], p[:, self.width:]


def _onnx_friendly(module: nn.Module) -> nn.Module:
    """A copy of `module` with equivalent ops ONNX Runtime runs faster: the tflite PReLUs become _DepthwisePReLU,
    I2ZNet's level heads _FoldedLevelHead. Parity is checked against the original module, so every export verifies
    the swaps."""
    from engine.tflite_torch import _PReLU

    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, _PReLU):
                setattr(parent, name, _DepthwisePReLU(child.alpha))
        if isinstance(parent, nn.ModuleList) and parent and isinstance(parent[0], i2znet.LevelHead):
            for i, head in enumerate(parent):
                parent[i] = _FoldedLevelHead(head)
    return module


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> dict:
    with warnings.catch_warnings():   # tracer notes about fixed shapes: the graphs are batch-1 by design
        warnings.simplefilter("ignore")
        torch.onnx.export(_onnx_friendly(module), args, str(path), input_names=inputs, output_names=outputs,
                          opset_version=OPSET, dynamo=False)
    return graph_passes.optimise(path)


@torch.no_grad()
def export_package(run: str | Path, out: str | Path) -> dict:
    run, out = Run(run), Path(out)
    if not (run.enrollment / "crops.npy").is_file():
        raise UserError(f"{run.path}: no enrollment found (run `facetrack build` or the steps before export)")
    dam = dam_module.load(run.dam)
    e_i = i2znet.load(run.i2z)
    colour = load_colour(run.path)
    out.mkdir(parents=True, exist_ok=True)
    tracker, texture = TrackerGraph(e_i, dam).eval(), TextureGraph(dam, colour).eval()
    enrolled = np.load(run.enrollment / "crops.npy", mmap_mode="r")
    crops = package_crops(enrolled[np.linspace(0, len(enrolled) - 1, min(16, len(enrolled))).astype(int)])
    sample = torch.from_numpy(crops[:1])
    rewrites = {"tracker.onnx": _export(tracker, (sample,), out / "tracker.onnx", ["crop"],
                                        ["z", "H", "vertices", "G", "landmarks", "presence"])}
    z0, H0 = tracker(sample)[:2]
    rewrites["texture.onnx"] = _export(texture, (z0, pose.view_vector(H0)), out / "texture.onnx", ["z", "v"],
                                       ["texture", "texture_raw"])
    detector = FaceDetector().eval()
    rewrites["detector.onnx"] = _export(detector, (torch.zeros(1, 3, 128, 128),), out / "detector.onnx", ["image"],
                                        ["regressors", "logits"])
    topo = topology()
    np.savez(out / TOPOLOGY, triangles=topo.triangles, uv=topo.uv, holes=topo.holes)
    directions, std = dam_module.expression_basis(dam, np.load(run.dam / LATENTS, allow_pickle=False))
    view = view_bias.from_enrollment(run)     # a guided enrollment's: removed from each frame's G
    np.savez(out / BASIS, directions=directions, std=std,
             **({} if view is None else dict(zip(VIEW_KEYS, (a.astype(np.float32) for a in view)))))
    parity = check_parity(out, tracker, texture, detector, crops)
    eyes = []   # the iris graph's parity inputs: both eyes of a few enrollment crops, placed by the tracker
    for i in np.linspace(0, len(crops) - 1, min(4, len(crops))).astype(int):
        crop = np.array(crops[i])
        eyes.append(iris_batch(crop, tracker(torch.from_numpy(crop[None]))[2][0, :, :2].numpy()))
    rewrites[IRIS], parity["iris"] = export_iris(out, eyes)
    int8 = _int8_tracker(out, crops)
    import onnx

    manifest = write_manifest(out, {
        "input": {"crop_size": CROP_SIZE, "dtype": "uint8", "layout": "NHWC", "colour": "RGB"},
        "texture": {"size": int(dam.config["texture_size"])},
        "colour_correction": {"matrix": colour.matrix.tolist(), "bias": colour.conv.bias.tolist()},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET,
                     "python": platform.python_version()},
        "source_run": str(run.path.resolve()),
        "parity": parity,
        "graph_rewrites": rewrites,
        "int8_tracker": int8,
        "iris": IRIS_INFO,
        "files": [*GRAPHS, TOPOLOGY, BASIS, IRIS, *([INT8_TRACKER] if "skipped" not in int8 else [])],
    })
    open_package(out)   # what we wrote must verify
    # the range the package reads on its own enrollment: where the studio's ARKit values reach 1 (export.ranges)
    prompted = enrollment_prompts(run)          # a guided enrollment's prompt per frame (engine.enroll)
    manifest["expression_ranges"] = ranges.calibrate(out, (package_crops(enrolled[i:i + 1])[0]
                                                           for i in range(len(enrolled))), prompted)
    return manifest


def _int8_tracker(out: Path, crops: np.ndarray, n: int = 16) -> dict:
    """Write tracker_int8.onnx (E_I's level-head Gemms in int8) for ONNX Runtime's CPU provider, and measure how far
    it moves the outputs from tracker.onnx on enrollment crops. Past INT8_MAX_PX it is not kept: the CPU then runs
    the fp32 graph."""
    import onnxruntime as ort

    gemms = graph_passes.int8_variant(out / "tracker.onnx", out / INT8_TRACKER, INT8_GEMMS)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    fp32, int8 = (ort.InferenceSession(str(out / name), opts, providers=["CPUExecutionProvider"])
                  for name in ("tracker.onnx", INT8_TRACKER))
    dz, dv = [], []
    for i in np.linspace(0, len(crops) - 1, min(n, len(crops))).astype(int):
        feed = {"crop": np.array(crops[i:i + 1])}
        (z, V), (qz, qV) = (s.run(["z", "vertices"], feed) for s in (fp32, int8))
        dz.append(np.abs(qz - z).max())
        dv.append(np.linalg.norm((qV - V)[0, :, :2], axis=-1))
    report = {"gemms": gemms, "z": float(max(dz)), "vertices_px": float(np.max(dv)),
              "vertices_px_mean": float(np.mean(dv))}
    if not gemms or report["vertices_px"] > INT8_MAX_PX:
        (out / INT8_TRACKER).unlink()
        report["skipped"] = "no level-head Gemm" if not gemms else f"moves vertices > {INT8_MAX_PX} px"
    return report


def check_parity(out: Path, tracker: nn.Module, texture: nn.Module, detector: nn.Module, crops: np.ndarray,
                 n: int = 4) -> dict:
    """Largest |ORT − torch| over a few enrollment crops: z, vertices (px), texture (/255), detector outputs."""
    from engine.detection import detector_input
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    trk = ort.InferenceSession(str(out / "tracker.onnx"), opts, providers=["CPUExecutionProvider"])
    tex = ort.InferenceSession(str(out / "texture.onnx"), opts, providers=["CPUExecutionProvider"])
    det = ort.InferenceSession(str(out / "detector.onnx"), opts, providers=["CPUExecutionProvider"])
    worst = {"z": 0.0, "vertices_px": 0.0, "texture_255": 0.0, "detector": 0.0}
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
        image = detector_input(crop[0])
        ours = det.run(None, {"image": image})
        for o, t in zip(ours, detector(torch.from_numpy(image))):
            worst["detector"] = max(worst["detector"], float(np.abs(o - t.numpy()).max()))
    return worst


# ------------------------------------------------------------------------------------------- iris (optional graph)
IRIS_INFO = {"source": "mediapipe 0.10.14 modules/iris_landmark/iris_landmark.tflite",
             "input": "uint8 [2,64,64,3] RGB eye crops by engine.eyes (right eye, then left eye mirrored)",
             "outputs": "contours [2,71,3], iris [2,5,3] in crop pixels"}


def iris_batch(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The iris graph's input for one image (uint8 HxWx3) and its 468 points there: both eye crops [2,64,64,3]."""
    from engine.eyes import eye_inputs

    return eye_inputs(image, points)[0]


@torch.no_grad()
def export_iris(out: Path, batches: list[np.ndarray]) -> tuple[dict, float]:
    """Write OUT/iris.onnx (engine.iris.IrisGraph) and return (graph rewrites, parity): the largest |ORT − torch| in
    crop pixels over the contour and iris points of `batches` (eye crops [2,64,64,3] from iris_batch)."""
    import onnxruntime as ort

    from engine.iris import IrisGraph

    iris = IrisGraph().eval()
    rewrites = _export(iris, (IrisGraph.example(),), out / IRIS, ["eyes"], ["contours", "iris"])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(out / IRIS), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in batches:
        ours = session.run(None, {"eyes": np.ascontiguousarray(batch, np.uint8)})
        for o, t in zip(ours, iris(torch.from_numpy(np.ascontiguousarray(batch, np.uint8)))):
            worst = max(worst, float(np.abs(o - t.numpy()).max()))
    return rewrites, worst


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a performer package (ONNX graphs + topology + manifest)")
    p.add_argument("run_dir", metavar="RUN", type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(run=lambda a: print(json.dumps(export_package(a.run_dir, a.out)["parity"])))
