"""The teacher's landmarks fused with the image's own motion (torch-free, the live path's).

Adaptation's L_MOTC asks the mesh to move as the pixels move between consecutive frames; at run time the same
evidence steadies the per-frame fit: where the previous frame's landmarks went is measured by pyramidal
Lucas-Kanade optical flow between the two crops, and each landmark the teacher gives this frame is averaged with
that prediction,

    ŷ_t = (y_t + w·(ŷ_{t−1} + flow)) / (1 + w),

before the refit (engine.tracking.refit). The teacher's per-frame noise is independent from frame to frame and the
flow's is much smaller, so with flow as good as exact the noise variance falls to 1/(1 + 2w), while a real motion
goes through the flow on the same frame: no lag, unlike a filter on the output. Where flow and teacher disagree by
more than a gate (flow lost on a fast or occluded point) the teacher's point is taken as it is, and the teacher
pulls any flow drift back at 1/(1 + w) a frame.

Flow is measured on every FLOW_STRIDE-th landmark only (a third of the cost, the same steadiness: docs/BENCHMARKS.md)
and carried to the others from their nearest measured neighbours on the mean face.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from engine import canonical
from engine.detection import Crop

FLOW_STRIDE = 3            # measure every 3rd of the 468 landmarks
FLOW_NEIGHBOURS = 4        # the others take the 1/distance-weighted flow of this many measured ones
FLOW_WINDOW = 9            # LK window, px of a 192² crop (scaled with the crop)
FLOW_LEVELS = 1            # one pyramid level above the crop: ~8 px of motion a frame within the crop
FLOW_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)
FLOW_GATE = 1.5 / 192      # disagreement (share of the crop) above which the teacher's point is taken as it is
FLOW_CROP = 192


@functools.cache
def _spread() -> tuple[np.ndarray, np.ndarray]:
    """(measured landmark indices [M], row-normalisable weights [468, M]) carrying flow to every landmark."""
    measured = np.arange(0, 468, FLOW_STRIDE)
    X = canonical.load()[0][:, :2].astype(np.float64)
    d = np.linalg.norm(X[:, None] - X[measured][None], axis=-1)
    near = np.argsort(d, 1)[:, :FLOW_NEIGHBOURS]
    W = np.zeros_like(d)
    rows = np.arange(len(X))[:, None]
    W[rows, near] = 1.0 / np.maximum(d[rows, near], 1e-3)      # a measured point weighs its own flow ~1000×
    return measured, W


def crop_to_crop(a: Crop, b: Crop, size: int) -> np.ndarray:
    """2×3 affine from crop a's pixels to crop b's (both `size`²)."""
    A = np.vstack([a.matrix(size), [0.0, 0.0, 1.0]])
    B = np.vstack([b.matrix(size), [0.0, 0.0, 1.0]])
    return (B @ np.linalg.inv(A))[:2]


class LandmarkFlow:
    """ŷ_t for one face over a clip: `fuse` each frame's landmarks, `keep` the frame's final answer as the one the next
    frame is predicted from, `reset` when the face is lost or detected anew. `weight` is w above (0: off)."""

    def __init__(self, weight: float, crop_size: int):
        self.weight = float(weight)
        self.size = int(crop_size)
        k = crop_size / FLOW_CROP
        self._window = (max(3, round(FLOW_WINDOW * k)),) * 2
        self._gate = FLOW_GATE * crop_size
        self._previous = self._pending = None

    def reset(self) -> None:
        self._previous = self._pending = None

    def keep(self) -> None:
        self._previous, self._pending = self._pending, None

    def fuse(self, image_rgb: np.ndarray, crop: Crop, landmarks: np.ndarray) -> np.ndarray:
        """ŷ_t [468, 2] in this crop's pixels from the teacher's landmarks y_t [468, 2+] on `image_rgb` (the crop)."""
        y = np.asarray(landmarks, np.float64)[:, :2]
        if self.weight <= 0:
            return y
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        fused = y if self._previous is None else self._fused(gray, crop, y)
        self._pending = (gray, crop, fused)
        return fused

    def _fused(self, gray: np.ndarray, crop: Crop, y: np.ndarray) -> np.ndarray:
        before, crop_before, last = self._previous
        if crop_before != crop:                      # the crop moved: see the previous frame through this one
            M = crop_to_crop(crop_before, crop, self.size)
            before = cv2.warpAffine(before, M, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            last = last @ M[:, :2].T + M[:, 2]
        measured, W = _spread()
        start = last[measured].astype(np.float32)[:, None]
        moved, found, _ = cv2.calcOpticalFlowPyrLK(before, gray, start, None, winSize=self._window,
                                                   maxLevel=FLOW_LEVELS, criteria=FLOW_CRITERIA)
        found = found[:, 0] == 1
        W = W[:, found]
        total = W.sum(1)
        flow = (W @ (moved[found, 0] - start[found, 0])) / np.maximum(total, 1e-12)[:, None]
        predicted = last + flow
        use = (total > 0) & (np.linalg.norm(predicted - y, axis=1) < self._gate)
        fused = y.copy()
        fused[use] = (y[use] + self.weight * predicted[use]) / (1.0 + self.weight)
        return fused
