"""The landmark teacher: MediaPipe's face detector and 468-point landmarker, run in torch.

The .tflite files come from the installed mediapipe 0.10.14 wheel (located, never imported) and
are converted by engine.tflite_torch. Nets are nn.Modules (exportable, batchable); the
pre/post-processing around them (crops, anchors, NMS) is numpy.

The torch-free parts (crops, anchors, decoding, NMS) live in engine.detection, shared with the runtime.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from engine.detection import Crop, Detection, detections, detector_input, letterbox, ssd_anchors
from engine.errors import UserError
from engine.tflite_torch import TFLiteModule

LANDMARK_SIZE = 192


# ---------------------------------------------------------------------------------------- models
def model_path(rel: str) -> Path:
    spec = importlib.util.find_spec("mediapipe")
    root = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if root is None or not (root / rel).is_file():
        raise UserError(f"mediapipe model {rel} not found: install mediapipe==0.10.14 "
                        "(pip install --no-deps mediapipe==0.10.14; newer wheels ship no models)")
    return root / rel


@functools.lru_cache(maxsize=None)
def _converted(rel: str) -> TFLiteModule:
    return TFLiteModule(model_path(rel)).eval()


def _tflite(rel: str) -> TFLiteModule:
    # a private copy per wrapper, so .to(device) on one teacher never moves another's weights
    return copy.deepcopy(_converted(rel))


# ------------------------------------------------------------------------------------ landmarker
class FaceLandmarker(nn.Module):
    """face_landmark.tflite. Input [B,3,192,192] RGB in [0,1] (verified against MediaPipe's runtime).
    Returns landmarks [B,468,3] in pixels of the 192 input (x right, y down, z depth on the same
    scale, smaller = closer) and presence [B] in 0..1 (sigmoid of the face flag)."""

    def __init__(self):
        super().__init__()
        self.net = _tflite("modules/face_landmark/face_landmark.tflite")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lm, flag = self.net(x)
        return lm.reshape(x.shape[0], 468, 3), torch.sigmoid(flag.reshape(x.shape[0]))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-level NCHW features: 96², 48², 24², 12², 6², 3² (landmark branch)."""
        return self.net.features(x)

    def forward_with_features(self, x: torch.Tensor):
        """One pass -> (landmarks [B,468,3], presence [B], features list) for I2ZNet's teacher stream."""
        ids = self.net.output_ids + self.net.feature_ids
        env = self.net.run(x, ids)
        lm, flag = (env[i] for i in self.net.output_ids)
        b = x.shape[0]
        return lm.reshape(b, 468, 3), torch.sigmoid(flag.reshape(b)), [env[i] for i in self.net.feature_ids]


class FaceDetector(nn.Module):
    """BlazeFace short range. forward: [B,3,128,128] RGB in [-1,1] -> (regressors [B,896,16],
    score logits [B,896]); detect(frame) does letterbox, decode and weighted NMS in numpy."""

    def __init__(self, min_score: float = 0.5, iou_thr: float = 0.3):
        super().__init__()
        self.net = _tflite("modules/face_detection/face_detection_short_range.tflite")
        self.min_score, self.iou_thr = min_score, iou_thr
        self.register_buffer("anchors", torch.from_numpy(ssd_anchors()), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, cls = self.net(x)
        return reg, cls.reshape(x.shape[0], -1)

    letterbox = staticmethod(letterbox)

    def preprocess(self, frame_rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(detector_input(frame_rgb)).to(self.anchors.device)

    def decode(self, reg: np.ndarray, logits: np.ndarray):
        """One image: raw [896,16], [896] -> boxes [N,4], keypoints [N,6,2] in 128-input pixels, scores."""
        from engine.detection import decode

        return decode(reg, logits, self.anchors.cpu().numpy(), self.min_score)

    @torch.no_grad()
    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        reg, logits = self(self.preprocess(frame_rgb))
        return detections(frame_rgb.shape, reg[0].cpu().numpy(), logits[0].cpu().numpy(),
                          self.anchors.cpu().numpy(), self.min_score, self.iou_thr)


# ---------------------------------------------------------------------------------------- facade
class Teacher:
    """Numpy-in/numpy-out teacher for labelling; `landmarker` is the torch path for training."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.detector = FaceDetector().to(self.device)
        self.landmarker = FaceLandmarker().to(self.device)

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        return self.detector.detect(frame_rgb)

    @torch.no_grad()
    def landmarks(self, crop_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """Square uint8 crop of any size -> (landmarks [468,3] in that crop's pixels, presence)."""
        n = crop_rgb.shape[0]
        if crop_rgb.shape[1] != n:
            raise ValueError(f"crop must be square, got {crop_rgb.shape[:2]}")
        if n != LANDMARK_SIZE:
            interp = cv2.INTER_AREA if n > LANDMARK_SIZE else cv2.INTER_LINEAR
            crop_rgb = cv2.resize(crop_rgb, (LANDMARK_SIZE,) * 2, interpolation=interp)
        x = torch.from_numpy(crop_rgb).permute(2, 0, 1)[None].float().div(255).to(self.device)
        lm, presence = self.landmarker(x)
        lm = lm[0].cpu().numpy().astype(np.float64)
        k = n / LANDMARK_SIZE  # cv2.resize maps pixel centres: x_n + .5 = k (x_192 + .5)
        lm[:, :2] = (lm[:, :2] + 0.5) * k - 0.5
        lm[:, 2] *= k
        return lm, float(presence[0])

    def landmarks_batch(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable torch path: [B,3,192,192] in [0,1] -> ([B,468,3] in 192 pixels, [B])."""
        return self.landmarker(crops)

    def frame_landmarks(self, frame_rgb: np.ndarray, crop: Crop) -> tuple[np.ndarray, float]:
        """Landmarks [468,3] in frame pixels (z scaled to frame pixels) for a crop of the frame."""
        lm, presence = self.landmarks(crop.apply(frame_rgb, LANDMARK_SIZE))
        out = lm.copy()
        out[:, :2] = crop.to_frame(lm, LANDMARK_SIZE)
        out[:, 2] *= crop.size / LANDMARK_SIZE
        return out, presence


class TeacherModel:
    """The teacher as a crop model of the one tracking loop (engine.tracking): landmarks on the 256² crop
    (resized to 192² inside), then H and G by pose.fit. Enrollment labels with it; `eval ... teacher` scores it."""

    name = "teacher"
    crop_size = 256      # I2ZNet's input size: enrollment keeps the crop the teacher saw

    def __init__(self, teacher: Teacher | None = None):
        from engine import canonical

        self.teacher = teacher or Teacher()
        self.backend = f"torch {torch.__version__} ({self.teacher.device.type})"
        self._X = canonical.load()[0].astype(np.float64)

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        return self.teacher.detect(frame_rgb)

    def __call__(self, crop_rgb: np.ndarray):
        from engine import pose
        from engine.tracking import CropOutput

        landmarks, presence = self.teacher.landmarks(crop_rgb)
        H, G = pose.fit(self._X, landmarks)
        return CropOutput(points=landmarks[:, :2], presence=presence, G=G, H=H, landmarks=landmarks)
