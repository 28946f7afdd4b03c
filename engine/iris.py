"""MediaPipe's iris landmarker (iris_landmark.tflite from the mediapipe 0.10.14 wheel) run in torch.

Converted by engine.tflite_torch like the face teacher (engine.teacher); the crop rule and the reading of its output
(eyelid aperture, gaze) are torch-free in engine.eyes, shared with the runtime that runs the exported `iris.onnx`.
Verified against MediaPipe's own TFLite runtime (tests/test_iris.py runs the .tflite in a MediaPipe graph).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engine.eyes import CONTOUR_POINTS, EYE_SIZE, EYES, IRIS_POINTS, track_eyes
from engine.teacher import _tflite

IRIS_TFLITE = "modules/iris_landmark/iris_landmark.tflite"


class IrisLandmarker(nn.Module):
    """iris_landmark.tflite. Input [B,3,64,64] RGB in [0,1] (an eye crop of engine.eyes). Returns the eye contour
    [B,71,3] (eyelids, then rings and brow) and the iris [B,5,3] (centre first), in pixels of the 64² input
    (x right, y down, z depth on the same scale)."""

    def __init__(self):
        super().__init__()
        self.net = _tflite(IRIS_TFLITE)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        contour, iris = self.net(x)
        b = x.shape[0]
        return contour.reshape(b, CONTOUR_POINTS, 3), iris.reshape(b, IRIS_POINTS, 3)


class IrisGraph(nn.Module):
    """The package's iris graph: uint8 [2,64,64,3] RGB eye crops (engine.eyes.EYES order, the left eye mirrored)
    → contours [2,71,3], iris [2,5,3] in crop pixels."""

    def __init__(self):
        super().__init__()
        self.landmarker = IrisLandmarker()

    def forward(self, eyes: torch.Tensor):
        return self.landmarker(eyes.permute(0, 3, 1, 2).float() / 255.0)

    @staticmethod
    def example() -> torch.Tensor:
        return torch.zeros(len(EYES), EYE_SIZE, EYE_SIZE, 3, dtype=torch.uint8)


class IrisTracker:
    """Torch development path: eyes(frame, points) → engine.eyes' dict, as the runtime's PackageModel.eyes."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.graph = IrisGraph().eval().to(self.device)

    @torch.no_grad()
    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        contours, iris = self.graph(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return contours.cpu().numpy(), iris.cpu().numpy()

    def eyes(self, frame: np.ndarray, points: np.ndarray) -> dict:
        return track_eyes(frame, points, self.run)
