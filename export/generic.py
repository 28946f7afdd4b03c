"""`python -m export.generic --out DIR`: the generic package, which tracks any face without a personal model.

It is the package format of export.package with manifest `"kind": "generic"`: MediaPipe's own face detector,
468-point landmarker and iris landmarker (the .tflite files of the installed mediapipe wheel, converted by
engine.tflite_torch as the teacher is), exported to ONNX, with the mesh topology. No tracker or texture graph: the
runtime (export.runtime.GenericModel) fits the head pose H and the canonical-frame shape G to the landmarks with
engine.pose.fit, as the teacher does in enrollment.

    landmarks.onnx  uint8 [1,192,192,3] RGB crop → landmarks [1,468,3] (crop px, z on the same scale), presence [1]

The crop is the landmarker's own 192² input, so the tracking loop warps the frame straight to it: no resize in the
graph or in numpy (a 256² crop resized inside the graph cost more: docs/results/generic_package.md). After
writing, each graph runs in ONNX Runtime on face crops (skimage's astronaut photo and frames of the sample
package's synthetic clip) and the largest difference from torch is recorded in the manifest.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.teacher import LANDMARK_SIZE, FaceDetector, FaceLandmarker
from engine.topology import topology
from export.onnx_export import IRIS_INFO, OPSET, _export, export_iris, iris_batch
from export.package import (
    GENERIC_GRAPH_NAMES,
    IRIS,
    SAMPLE_PACKAGE,
    TOPOLOGY,
    open_package,
    write_manifest,
)

LANDMARKS = "landmarks.onnx"
SOURCES = {"detector.onnx": "mediapipe 0.10.14 modules/face_detection/face_detection_short_range.tflite",
           LANDMARKS: "mediapipe 0.10.14 modules/face_landmark/face_landmark.tflite",
           IRIS: IRIS_INFO["source"]}


class LandmarksGraph(nn.Module):
    """uint8 [1,S,S,3] RGB crop → landmarks [1,468,3] in crop pixels, presence [1]. S = 192 feeds the net as it is;
    another S is resized (bilinear) inside the graph and the points scaled back, pixel centres kept."""

    def __init__(self, size: int = LANDMARK_SIZE):
        super().__init__()
        self.size, self.net = size, FaceLandmarker()

    def forward(self, crop: torch.Tensor):
        x = crop.float().permute(0, 3, 1, 2) / 255.0
        if self.size != LANDMARK_SIZE:
            x = nn.functional.interpolate(x, size=(LANDMARK_SIZE, LANDMARK_SIZE), mode="bilinear",
                                          align_corners=False)
        landmarks, presence = self.net(x)
        if self.size != LANDMARK_SIZE:
            k = self.size / LANDMARK_SIZE
            landmarks = torch.cat([(landmarks[..., :2] + 0.5) * k - 0.5, landmarks[..., 2:] * k], -1)
        return landmarks, presence


def parity_crops(size: int = LANDMARK_SIZE, clip: Path | None = None, frames: int = 4) -> list[np.ndarray]:
    """Face crops [size,size,3] uint8 for the parity checks: the astronaut photo (public domain, in skimage) and
    its mirror image, then `frames` frames of the sample package's synthetic clip, each framed by the teacher's
    detector as the tracking loop frames a first detection."""
    from skimage import data

    from engine import video
    from engine.detection import crop_from_detection
    from engine.tracking import largest

    detector = FaceDetector().eval()
    astronaut = np.ascontiguousarray(data.astronaut()[..., :3])
    images = [astronaut, np.ascontiguousarray(astronaut[:, ::-1])]
    clip = clip or SAMPLE_PACKAGE / "synthetic.mp4"
    if clip.is_file():
        for i, frame in enumerate(video.frames(clip)):
            if i >= 10 * frames:
                break
            if i % 10 == 0:
                images.append(frame)
    crops = []
    for image in images:
        faces = detector.detect(image)
        if faces:
            crops.append(crop_from_detection(largest(faces)).apply(image, size))
    if not crops:
        raise RuntimeError("no face found for the parity check (skimage's astronaut photo)")
    return crops


@torch.no_grad()
def check_parity(out: Path, landmarks: nn.Module, detector: nn.Module, crops: list[np.ndarray]) -> dict:
    """Largest |ORT − torch| over the crops: landmarks (crop px), presence, detector outputs."""
    import onnxruntime as ort

    from engine.detection import detector_input

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    lm = ort.InferenceSession(str(out / LANDMARKS), opts, providers=["CPUExecutionProvider"])
    det = ort.InferenceSession(str(out / "detector.onnx"), opts, providers=["CPUExecutionProvider"])
    worst = {"landmarks_px": 0.0, "presence": 0.0, "detector": 0.0}
    for crop in crops:
        ours = lm.run(None, {"crop": crop[None]})
        theirs = landmarks(torch.from_numpy(crop[None]))
        for key, o, t in zip(("landmarks_px", "presence"), ours, theirs):
            worst[key] = max(worst[key], float(np.abs(o - t.numpy()).max()))
        image = detector_input(crop)
        for o, t in zip(det.run(None, {"image": image}), detector(torch.from_numpy(image))):
            worst["detector"] = max(worst["detector"], float(np.abs(o - t.numpy()).max()))
    return worst


@torch.no_grad()
def build(out: str | Path, size: int = LANDMARK_SIZE) -> dict:
    """Write the generic package into `out` and verify it (open_package). Returns its manifest."""
    import onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    landmarks, detector = LandmarksGraph(size).eval(), FaceDetector().eval()
    rewrites = {LANDMARKS: _export(landmarks, (torch.zeros(1, size, size, 3, dtype=torch.uint8),), out / LANDMARKS,
                                   ["crop"], ["landmarks", "presence"]),
                "detector.onnx": _export(detector, (torch.zeros(1, 3, 128, 128),), out / "detector.onnx",
                                         ["image"], ["regressors", "logits"])}
    topo = topology()
    np.savez(out / TOPOLOGY, triangles=topo.triangles, uv=topo.uv, holes=topo.holes)
    crops = parity_crops(size)
    parity = check_parity(out, landmarks, detector, crops)
    eyes = [iris_batch(crop, landmarks(torch.from_numpy(crop[None]))[0][0].numpy()) for crop in crops]
    rewrites[IRIS], parity["iris"] = export_iris(out, eyes)
    manifest = write_manifest(out, {
        "kind": "generic",
        "input": {"crop_size": size, "dtype": "uint8", "layout": "NHWC", "colour": "RGB"},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET,
                     "python": platform.python_version()},
        "sources": SOURCES,
        "parity": parity,
        "graph_rewrites": rewrites,
        "iris": IRIS_INFO,
        "files": [*(f"{g}.onnx" for g in GENERIC_GRAPH_NAMES), IRIS, TOPOLOGY],
    })
    open_package(out)   # what we wrote must verify
    return manifest


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m export.generic", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="package folder to write (export/generic_package)")
    p.add_argument("--crop-size", type=int, default=LANDMARK_SIZE, help=argparse.SUPPRESS)   # measurements only
    a = p.parse_args(argv)
    torch.set_num_threads(1)          # deterministic and polite on a shared CPU; the graphs are small
    manifest = build(a.out, a.crop_size)
    print(json.dumps({"out": str(a.out), "parity": manifest["parity"], "files": sorted(manifest["files"])}))
    return manifest


if __name__ == "__main__":
    main()
