"""Procedural expression fields on the 468-vertex topology: G = canonical + Σ_e a_e · field_e.

Each field is a displacement [468, 3] in cm in the canonical head frame (x right, y down, z away from the
camera) with a smooth Gaussian falloff around anchor vertices, so activations in [0, 1] blend linearly.
"Left" is the subject's left (image right, +x), as in ARKit's names.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from engine import canonical, pose

NAMES = ("jaw_open", "smile_left", "smile_right", "blink_left", "blink_right", "brow_raise", "brow_frown", "pucker")

# MediaPipe vertex numbers of the anchors (index facts of the 468 topology).
MOUTH_CORNER = {"left": 291, "right": 61}
UPPER_LID = {"left": (386, 385, 387, 384, 388, 398, 466), "right": (159, 158, 160, 157, 161, 173, 246)}
LOWER_LID = {"left": 374, "right": 145}
EYE_CORNERS = {"left": (362, 263), "right": (133, 33)}
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
INNER_BROWS = (107, 66, 336, 296)
LIP_INNER_UPPER, LIP_INNER_LOWER, LIP_CENTRE = 13, 14, (0, 17, 13, 14)


def _falloff(shape: np.ndarray, anchors, sigma: float) -> np.ndarray:
    """[468] weight: max over anchor vertices of a Gaussian of the 3D distance (cm)."""
    d = np.linalg.norm(shape[:, None] - shape[list(anchors)][None], axis=-1).min(1)
    return np.exp(-0.5 * (d / sigma) ** 2)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _jaw_open(S: np.ndarray) -> np.ndarray:
    # Lower face rotates about a hinge behind and above the mouth; the weight ramps from the upper inner lip
    # (still) to the lower inner lip (fully on the jaw), so the mouth opening grows between them.
    w = _smoothstep((S[:, 1] - S[LIP_INNER_UPPER, 1]) / (S[LIP_INNER_LOWER, 1] - S[LIP_INNER_UPPER, 1]))
    pivot = np.array([0.0, S[LIP_INNER_UPPER, 1] - 3.0, 8.0])
    R = pose.rotation_matrix(np.array([np.radians(15.0), 0.0, 0.0]))
    moved = (S - pivot) @ R.T + pivot
    return (moved - S) * w[:, None]


def _smile(S: np.ndarray, side: str) -> np.ndarray:
    sign = 1.0 if side == "left" else -1.0
    w = _falloff(S, [MOUTH_CORNER[side]], 1.3)
    return w[:, None] * np.array([0.55 * sign, -0.55, 0.35])


def _blink(S: np.ndarray, side: str) -> np.ndarray:
    # Upper lid vertices drop to the lower lid; the lid crease above follows with the Gaussian falloff.
    # The lid travels furthest at the eye's middle and not at all at its corners (a parabola across the eye).
    lid = list(UPPER_LID[side])
    opening = S[LOWER_LID[side], 1] - S[lid[0], 1]
    a, b = S[list(EYE_CORNERS[side]), 0]
    across = 1.0 - ((S[:, 0] - (a + b) / 2) / (abs(a - b) / 2)) ** 2
    above = S[:, 1] <= S[lid, 1].max() + 0.05
    w = _falloff(S, lid, 0.45) * above * np.clip(across, 0.0, 1.0)
    return w[:, None] * np.array([0.0, opening * 0.95, 0.0])


def _brow_raise(S: np.ndarray) -> np.ndarray:
    return _falloff(S, BROWS, 1.2)[:, None] * np.array([0.0, -0.8, 0.0])


def _brow_frown(S: np.ndarray) -> np.ndarray:
    w = _falloff(S, INNER_BROWS, 1.0)
    return w[:, None] * np.stack([-0.35 * np.sign(S[:, 0]), np.full(len(S), 0.45), np.zeros(len(S))], -1)


def _pucker(S: np.ndarray) -> np.ndarray:
    w = _falloff(S, LIP_CENTRE, 1.4)
    centre = S[list(LIP_CENTRE)].mean(0)
    return w[:, None] * np.stack([-0.4 * (S[:, 0] - centre[0]), np.zeros(len(S)), np.full(len(S), -0.8)], -1)


@lru_cache(maxsize=1)
def basis() -> np.ndarray:
    """[E, 468, 3] displacement fields (cm) in the order of NAMES."""
    S = canonical.load()[0].astype(np.float64)
    fields = [_jaw_open(S), _smile(S, "left"), _smile(S, "right"), _blink(S, "left"), _blink(S, "right"),
              _brow_raise(S), _brow_frown(S), _pucker(S)]
    return np.stack(fields).astype(np.float32)


def apply(activations: np.ndarray) -> np.ndarray:
    """Activations [..., E] in [0, 1] → vertices G [..., 468, 3] in the canonical frame."""
    return canonical.load()[0] + np.tensordot(activations, basis(), axes=([-1], [0])).astype(np.float32)
