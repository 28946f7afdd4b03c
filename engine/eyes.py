"""Eye crops for the iris landmarker and what its output says: eyelid aperture and gaze (torch-free).

The iris landmarker (MediaPipe's iris_landmark.tflite: engine.iris in torch, `iris.onnx` in a performer package)
sees one 64² RGB crop of one eye and returns 71 eye-region points (eyelids, then rings around the eye and the brow)
and 5 iris points (centre, then four on the iris edge), in that crop's pixels with a depth.

The crop rule is MediaPipe's (iris_landmark_landmarks_to_roi): centred on the midpoint of the eye's two corners
(mesh vertices 33/133 for the subject's right eye, 362/263 for the left), square, 2.3 × the corner distance, and
rotated so that the corner line is horizontal (MediaPipe rotates by the same corner vector; unlike the face crop of
engine.detection, which stays axis-aligned, a rolled head would otherwise show the net a slanted eye it was not
trained on). The model was trained on one eye's layout: the subject's right eye goes in as it is, the left eye
mirrored left-right, so in both crops the outer corner is on the left (contour point 0) and the inner corner on the
right (point 8). Both eyes run as one batch [2, 64, 64, 3] in EYES order.

Coordinates are pixel-index coordinates, as engine.detection's (u = k·(x − x0) for the axis-aligned case).

What we read from the 71 points (indices as MediaPipe's UpdateFaceLandmarks maps them onto the mesh):
  0..8   lower lid from the outer corner (33 / 263) to the inner corner (133 / 362)
  9..15  upper lid from the outer end to the inner end (corners excluded)
  aperture = mean distance across the lid pairs LID_PAIRS (lower 3, 4, 5 ↔ upper 11, 12, 13; mesh 144/160,
             145/159, 153/158) divided by the eye width (corner 0 to corner 8): ~0.3 open, ~0.05 closed
  gaze     = the iris centre's offset from the corners' midpoint in eye widths, along the corner line (dx > 0
             towards the nose) and across it (dy > 0 down), turned into angles of an eyeball whose radius is
             1 / WIDTH_OVER_RADIUS of the eye width: yaw = ±asin(k·dx), pitch = asin(k·dy), in radians, in the
             convention of H's angles and app.senders (yaw > 0 turns the eye towards the subject's right, pitch > 0
             looks down). The offsets are in the head's frame only as far as the eye crop is: a turned head adds
             parallax (the iris lies ~1 cm in front of the corners), and the resting offset differs per person:
             export.expressions subtracts the calibrated neutral gaze.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

EYE_SIZE = 64                 # the iris landmarker's input side
EYE_SCALE = 2.3               # crop side / corner distance (MediaPipe's iris ROI rule)
EYES = ("right", "left")      # batch order: the subject's right eye as it is, then the left eye mirrored
CORNERS = {"right": (33, 133), "left": (362, 263)}   # mesh vertices (image-left corner, image-right corner)
FLIPPED = {"right": False, "left": True}
CONTOUR_POINTS, IRIS_POINTS = 71, 5
OUTER, INNER = 0, 8           # contour indices of the eye corners (in both crops, after the mirror)
LID_PAIRS = ((3, 11), (4, 12), (5, 13))   # (lower, upper) contour indices across the eye's middle
EYELID = tuple(range(16))     # the eyelid loop: lower 0..8 then upper 9..15
WIDTH_OVER_RADIUS = 2.4       # eye width (≈ 29 mm corner to corner) / eyeball radius (≈ 12 mm)


def eye_matrix(points: np.ndarray, eye: str, size: int = EYE_SIZE) -> np.ndarray:
    """2x3 frame→crop affine for one eye (`eye` in EYES) from the 468 tracked points [468, ≥2] in frame pixels:
    rotate the corner line to horizontal, scale EYE_SCALE × corner distance to `size`, mirror the left eye."""
    a, b = (np.asarray(points[i][:2], np.float64) for i in CORNERS[eye])
    d = b - a
    dist = max(float(np.hypot(*d)), 1e-6)
    c, s = d / dist
    k = size / (EYE_SCALE * dist)
    centre = (a + b) / 2
    R = k * np.array([[c, s], [-s, c]])          # rotation by −θ, scaled
    M = np.hstack([R, (size / 2 - R @ centre)[:, None]])
    if FLIPPED[eye]:                             # u → (size − 1) − u: the mirrored image in pixel-index coordinates
        M = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([M, [0.0, 0.0, 1.0]])
    return M


def eye_inputs(frame: np.ndarray, points: np.ndarray, size: int = EYE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [2, size, size, 3] eye crops in EYES order, frame→crop affines [2, 2, 3]) for a frame (RGB uint8) and
    its 468 tracked points in frame pixels."""
    matrices = np.stack([eye_matrix(points, eye, size) for eye in EYES])
    batch = np.stack([cv2.warpAffine(frame, M, (size, size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE) for M in matrices])
    return batch, matrices


def _to_frame(M: np.ndarray, uv: np.ndarray) -> np.ndarray:
    A, t = M[:, :2], M[:, 2]
    return (np.asarray(uv, np.float64)[..., :2] - t) @ np.linalg.inv(A).T


def eye_state(contour: np.ndarray, iris: np.ndarray, eye: str) -> dict:
    """Aperture and gaze of one eye from the model's output in its crop: contour [71, ≥2], iris [5, ≥2]."""
    contour, iris = np.asarray(contour, np.float64)[:, :2], np.asarray(iris, np.float64)[:, :2]
    axis = contour[INNER] - contour[OUTER]
    width = max(float(np.hypot(*axis)), 1e-6)
    along = axis / width                                  # towards the nose
    across = np.array([-along[1], along[0]])              # 90° on from `along` in y-down pixels: down
    aperture = float(np.mean([np.dot(contour[lo] - contour[up], across) for lo, up in LID_PAIRS])) / width
    offset = iris[0] - (contour[OUTER] + contour[INNER]) / 2
    dx, dy = float(np.dot(offset, along)) / width, float(np.dot(offset, across)) / width
    return {"aperture": aperture, "gaze": gaze_angles(dx, dy, eye), "offset": (dx, dy)}


def gaze_angles(dx: float, dy: float, eye: str) -> tuple[float, float]:
    """(yaw, pitch) in radians for an iris offset (dx towards the nose, dy down; eye widths) of `eye`: yaw > 0
    turns towards the subject's right, which is towards the nose for the left eye and away from it for the right."""
    inward = float(np.arcsin(np.clip(WIDTH_OVER_RADIUS * dx, -1.0, 1.0)))
    pitch = float(np.arcsin(np.clip(WIDTH_OVER_RADIUS * dy, -1.0, 1.0)))
    return (inward if eye == "left" else -inward), pitch


def eye_results(contours: np.ndarray, iris: np.ndarray, matrices: np.ndarray) -> dict:
    """The iris landmarker's batch output (contours [2, 71, 3], iris [2, 5, 3] in crop pixels, EYES order) →
    {"left": {...}, "right": {...}}, each: aperture (lid opening / eye width), gaze (yaw, pitch) in radians,
    offset (dx, dy) in eye widths, contour [71, 2] and iris [5, 2] in frame pixels (iris[0] is the centre)."""
    out = {}
    for k, eye in enumerate(EYES):
        state = eye_state(contours[k], iris[k], eye)
        state["contour"] = _to_frame(matrices[k], contours[k]).astype(np.float32)
        state["iris"] = _to_frame(matrices[k], iris[k]).astype(np.float32)
        out[eye] = state
    return out


def track_eyes(frame: np.ndarray, points: np.ndarray,
               run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> dict:
    """Crop both eyes, run the landmarker once on the batch (`run`: uint8 [2,64,64,3] → (contours, iris)) and read
    the result: what the runtime's PackageModel.eyes and the torch engine.iris.IrisTracker both do."""
    batch, matrices = eye_inputs(frame, points)
    contours, iris = run(batch)
    return eye_results(np.asarray(contours).reshape(2, CONTOUR_POINTS, 3),
                       np.asarray(iris).reshape(2, IRIS_POINTS, 3), matrices)
