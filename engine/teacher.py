"""The landmark teacher: MediaPipe's face detector and 468-point landmarker, run in torch.

The .tflite files come from the installed mediapipe 0.10.14 wheel (located, never imported) and
are converted by engine.tflite_torch. Nets are nn.Modules (exportable, batchable); the
pre/post-processing around them (crops, anchors, NMS) is numpy.

Coordinates are pixel-index coordinates (as cv2.warpAffine samples them); frame<->crop maps are
the same affine MediaPipe uses, so our boxes/landmarks equal MediaPipe's normalised output x W.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from engine.errors import UserError
from engine.tflite_torch import TFLiteModule

LANDMARK_SIZE = 192
DETECTOR_SIZE = 128
CROP_SCALE = 1.5  # MediaPipe's ROI rule: 1.5 x the longest side of the box, square


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


# ----------------------------------------------------------------------------------------- crops
@dataclass(frozen=True)
class Crop:
    """Square, axis-aligned crop (no rotation, so head roll stays visible) in frame pixels."""
    cx: float
    cy: float
    size: float

    def matrix(self, out_size: int) -> np.ndarray:
        """2x3 frame->crop affine u = k (x - x0), in pixel-index coordinates, the same matrix
        MediaPipe's ImageToTensorCalculator warps with (its detector scores only match this way)."""
        k = out_size / self.size
        x0, y0 = self.cx - self.size / 2, self.cy - self.size / 2
        return np.array([[k, 0, -k * x0], [0, k, -k * y0]], np.float64)

    def to_crop(self, points: np.ndarray, out_size: int) -> np.ndarray:
        m = self.matrix(out_size)
        return np.asarray(points)[..., :2] * m[0, 0] + m[:, 2]

    def to_frame(self, points: np.ndarray, out_size: int) -> np.ndarray:
        m = self.matrix(out_size)
        return (np.asarray(points)[..., :2] - m[:, 2]) / m[0, 0]

    def apply(self, frame: np.ndarray, out_size: int) -> np.ndarray:
        return cv2.warpAffine(frame, self.matrix(out_size), (out_size, out_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _square(x0: float, y0: float, x1: float, y1: float) -> Crop:
    return Crop((x0 + x1) / 2, (y0 + y1) / 2, CROP_SCALE * max(x1 - x0, y1 - y0))


def crop_from_landmarks(points_xy: np.ndarray) -> Crop:
    """MediaPipe's landmarks->ROI rule without rotation: bbox centre, 1.5 x longest side."""
    p = np.asarray(points_xy)[:, :2]
    return _square(*p.min(0), *p.max(0))


def crop_from_detection(det: "Detection") -> Crop:
    """MediaPipe's detection->ROI rule (face_detection_front_detection_to_roi) without rotation:
    box centre, 1.5 x longest side. BlazeFace's box is tighter than the landmark bbox, so this crop
    is smaller than crop_from_landmarks'; the landmark model is accurate on both (see tests)."""
    return _square(*det.box)


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


# -------------------------------------------------------------------------------------- detector
@dataclass
class Detection:
    box: np.ndarray        # x0, y0, x1, y1 in frame pixels
    keypoints: np.ndarray  # [6,2] frame pixels: right eye, left eye, nose, mouth, right ear, left ear
    score: float


def ssd_anchors() -> np.ndarray:
    """[896,2] anchor centres in [0,1] for BlazeFace short range. MediaPipe's SsdAnchors options
    (4 layers, strides 8,16,16,16, aspect 1 + interpolated scale, fixed size) reduce to 2 anchors per
    cell on the 16x16 grid and 3x2 = 6 per cell on the 8x8 grid (layers of equal stride merge)."""
    out = []
    for grid, per_cell in ((16, 2), (8, 6)):
        c = (np.arange(grid) + 0.5) / grid
        cy, cx = np.meshgrid(c, c, indexing="ij")
        out.append(np.repeat(np.stack([cx.ravel(), cy.ravel()], 1), per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a [4] against boxes b [N,4] (x0,y0,x1,y1)."""
    w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, iou_thr: float = 0.3):
    """MediaPipe's WEIGHTED NMS: each kept detection is the score-weighted mean of the candidates
    overlapping the best remaining one (IoU > thr); its score is the best one's."""
    order = np.argsort(-scores)
    out = []
    while order.size:
        overlap = _iou(boxes[order[0]], boxes[order]) > iou_thr
        group = order[overlap]
        w = scores[group][:, None]
        out.append(((boxes[group] * w).sum(0) / w.sum(),
                    (kps[group] * w[:, :, None]).sum(0) / w.sum(), float(scores[order[0]])))
        order = order[~overlap]
    return out


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

    @staticmethod
    def letterbox(frame_shape: tuple[int, ...]) -> np.ndarray:
        """2x3 frame->128 affine keeping aspect, centred, padded (MediaPipe's keep_aspect_ratio)."""
        h, w = frame_shape[:2]
        return Crop(w / 2, h / 2, max(w, h)).matrix(DETECTOR_SIZE)

    def preprocess(self, frame_rgb: np.ndarray) -> torch.Tensor:
        img = cv2.warpAffine(frame_rgb, self.letterbox(frame_rgb.shape), (DETECTOR_SIZE,) * 2,
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        return x.to(self.anchors.device)

    def decode(self, reg: np.ndarray, logits: np.ndarray):
        """One image: raw [896,16], [896] -> boxes [N,4], keypoints [N,6,2] in 128-input pixels, scores."""
        scores = 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
        keep = scores >= self.min_score
        reg, scores, anc = reg[keep].astype(np.float64), scores[keep], self.anchors.cpu().numpy()[keep]
        # offsets are in 128-pixel units relative to the anchor centre (anchor w = h = 1)
        c = reg[:, :2] / DETECTOR_SIZE + anc
        half = reg[:, 2:4] / DETECTOR_SIZE / 2
        boxes = np.concatenate([c - half, c + half], 1) * DETECTOR_SIZE
        kps = (reg[:, 4:16].reshape(-1, 6, 2) / DETECTOR_SIZE + anc[:, None]) * DETECTOR_SIZE
        return boxes, kps, scores

    @torch.no_grad()
    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        reg, logits = self(self.preprocess(frame_rgb))
        boxes, kps, scores = self.decode(reg[0].cpu().numpy(), logits[0].cpu().numpy())
        m = self.letterbox(frame_rgb.shape)
        k, t = m[0, 0], m[:, 2]
        dets = [Detection(((b.reshape(2, 2) - t) / k).ravel(), (p - t) / k, s)
                for b, p, s in weighted_nms(boxes, kps, scores, self.iou_thr)]
        return sorted(dets, key=lambda d: -d.score)


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
