"""The teacher's landmarks fused with the image's own motion (torch-free, the live path's).

Adaptation's L_MOTC asks the mesh to move as the pixels move between consecutive frames; at run time the same
evidence steadies the per-frame fit: where the previous frame's landmarks went is measured by Lucas-Kanade optical
flow between the two crops, and each landmark the teacher gives this frame is averaged with that prediction,

    ŷ_t = (y_t + w·(ŷ_{t−1} + flow)) / (1 + w),

before the refit (engine.tracking.refit). The teacher's per-frame noise is independent from frame to frame and the
flow's is much smaller, so with flow as good as exact the noise variance falls to 1/(1 + 2w), while a real motion
goes through the flow on the same frame: no lag, unlike a filter on the output. Where flow and teacher disagree by
more than a gate (flow lost on a fast or occluded point) the teacher's point is taken as it is, and the teacher
pulls any flow drift back at 1/(1 + w) a frame.

Flow is measured on every FLOW_STRIDE-th landmark, on the crop at half size, and carried to the others from their
nearest measured neighbours on the mean face: as steady as all 468 points at full size (docs/BENCHMARKS.md), for
about a fifth of LK's time. The stage costs ~0.3 ms a frame on a 2-core laptop-class CPU.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from engine import canonical
from engine.detection import Crop

FLOW_STRIDE = 6            # measure every 6th of the 468 landmarks
FLOW_NEIGHBOURS = 4        # the others take the 1/distance-weighted flow of this many measured ones
FLOW_SCALE = 0.5           # LK runs on the crop at half size (its cost is mostly per pixel, then per point)
FLOW_WINDOW = 7            # LK window, px of that half-size image of a 192² crop (scaled with the crop)
FLOW_LEVELS = 0            # no pyramid: LK follows ~half its window a frame (~7 px of a 192² crop); past the gate
                           # the teacher's point is taken
FLOW_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)
FLOW_GATE = 1.5 / 192      # disagreement (share of the crop) above which the teacher's point is taken as it is
FLOW_CROP = 192


@functools.cache
def _spread() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(measured landmark indices [M], weights W [468, M], W with rows summing to 1) that carry flow to every
    landmark: each row holds the 1/distance weights of its FLOW_NEIGHBOURS nearest measured points on the mean face
    (a measured point weighs its own flow ~1000×); a row drops a point the flow lost by renormalising W."""
    measured = np.arange(0, 468, FLOW_STRIDE)
    X = canonical.load()[0][:, :2].astype(np.float64)
    d = np.linalg.norm(X[:, None] - X[measured][None], axis=-1)
    near = np.argsort(d, 1)[:, :FLOW_NEIGHBOURS]
    W = np.zeros_like(d)
    np.put_along_axis(W, near, 1.0 / np.maximum(np.take_along_axis(d, near, 1), 1e-3), 1)
    return measured, W, W / W.sum(1, keepdims=True)


def crop_to_crop(a: Crop, b: Crop, size: int) -> np.ndarray:
    """2×3 affine from crop a's pixels to crop b's (both `size`²). A crop's linear part is k·Q (a scaled rotation), so
    its inverse is the transpose over k²."""
    ma, mb = a.matrix(size), b.matrix(size)
    linear = mb[:, :2] @ ma[:, :2].T * (a.size / size) ** 2
    return np.column_stack([linear, mb[:, 2] - linear @ ma[:, 2]])


class LandmarkFlow:
    """ŷ_t for one face over a clip. Each frame: `follow` the crop (optical flow from the previous frame; before the
    model runs, so it does not wait on it), then `fuse` the model's landmarks, and `keep` the frame's final answer as
    the one the next frame follows; `reset` when the face is lost or detected anew. `weight` is w above (0: off)."""

    def __init__(self, weight: float, crop_size: int):
        self.weight = float(weight)
        self.size = int(crop_size)
        self._small = max(8, round(crop_size * FLOW_SCALE))
        self._scale = self._small / crop_size
        self._window = (max(3, round(FLOW_WINDOW * crop_size / FLOW_CROP)),) * 2
        self._gate2 = (FLOW_GATE * crop_size) ** 2
        self._previous = self._now = self._pending = None

    def reset(self) -> None:
        self._previous = self._now = self._pending = None

    def keep(self) -> None:
        self._previous, self._pending = self._pending, None

    def follow(self, image_rgb: np.ndarray, crop: Crop) -> None:
        """Where the previous frame's ŷ lies on this crop (`image_rgb`, the crop's pixels), by optical flow."""
        if self.weight <= 0:
            return
        small = cv2.resize(image_rgb, (self._small, self._small), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        self._now = (gray, crop, None if self._previous is None else self._predicted(gray, crop))

    def fuse(self, landmarks: np.ndarray) -> np.ndarray:
        """ŷ_t [468, 2] in the followed crop's pixels from the model's landmarks y_t [468, 2+] on it."""
        y = np.asarray(landmarks, np.float64)[:, :2]
        if self._now is None:
            return y
        gray, crop, predicted = self._now
        fused = y
        if predicted is not None:
            use = (((predicted - y) ** 2).sum(1) < self._gate2)[:, None]     # NaN (no flow near) compares False
            fused = np.where(use, (y + self.weight * predicted) / (1.0 + self.weight), y)
        self._pending = (gray, crop, fused)
        return fused

    def _predicted(self, gray: np.ndarray, crop: Crop) -> np.ndarray:
        before, crop_before, last = self._previous
        measured, W, spread = _spread()
        k = self._scale
        lk = lambda points: ((points[measured] + 0.5) * k - 0.5).astype(np.float32)    # crop px → LK image px
        start = guess = lk(last)
        # The crop moved (the dead band let go): LK starts each point where the previous frame's was, seen through
        # this crop, so no image is warped (the move is a few pixels and under a degree: the window does not mind).
        if crop_before != crop:
            M = crop_to_crop(crop_before, crop, self.size)
            last = last @ M[:, :2].T + M[:, 2]
            guess = lk(last)
        moved, found, _ = cv2.calcOpticalFlowPyrLK(before, gray, start, guess.copy(), winSize=self._window,
                                                   maxLevel=FLOW_LEVELS, criteria=FLOW_CRITERIA,
                                                   flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        if not found.all():                          # lost points carry nothing; a row with none left is NaN
            W = W * found.T
            with np.errstate(invalid="ignore", divide="ignore"):
                spread = W / W.sum(1, keepdims=True)
        return last + spread @ ((moved - guess) / k)
