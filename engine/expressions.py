"""Expression fields on the 468-vertex topology: G = canonical + Σ_e a_e · field_e.

Each field is a displacement [468, 3] in cm in the canonical head frame (x right, y down, z away from the
camera), so activations in [0, 1] blend linearly. "Left" is the subject's left (image right, +x), as in ARKit's
names. Two sources:
  procedural  (`basis`) smooth Gaussian falloffs around anchor vertices; no data needed.
  ICT-FaceKit (`ict_basis`) the ICT Face Model's scanned ARKit-style blendshapes (MIT), carried onto the 468
              vertices: what a real face does with its cheeks, lids and lips when it smiles, blinks or puckers.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from engine import canonical, pose
from engine.errors import UserError
from engine.topology import IBUG51

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


# ICT-FaceKit: its shapes making each of NAMES (summed), the vertex of each iBUG-68 point 17..67 on its neutral
# mesh (vertex_indices.json's idx_to_landmark_verts: index facts of its topology), and its face part's vertices.
ICT_SHAPES = {"jaw_open": ("jawOpen",), "smile_left": ("mouthSmile_L",), "smile_right": ("mouthSmile_R",),
              "blink_left": ("eyeBlink_L",), "blink_right": ("eyeBlink_R",),
              "brow_raise": ("browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"),
              "brow_frown": ("browDown_L", "browDown_R"), "pucker": ("mouthPucker",)}
ICT_IBUG51 = (268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147,
              4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081, 0,
              4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966)
ICT_FACE = 9409
ICT_NEIGHBOURS, ICT_FIT_ROUNDS = 4, 3


def _load_ict(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, deltas [N,V,3], neutral [V,3]) of an ICT-FaceKit delta file, checked; UserError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names, deltas, neutral = [str(n) for n in z["names"]], z["deltas"], z["neutral"]
    except (OSError, KeyError, ValueError) as err:
        raise UserError(f"{path}: not an ICT-FaceKit delta file (names, deltas, neutral) ({err})") from None
    missing = sorted({n for shapes in ICT_SHAPES.values() for n in shapes} - set(names))
    if neutral.ndim != 2 or neutral.shape[0] < ICT_FACE or neutral.shape[1] != 3 \
            or deltas.shape != (len(names), *neutral.shape) or missing:
        raise UserError(f"{path}: need deltas [N,V,3] and neutral [V,3] on the ICT topology (V ≥ {ICT_FACE}) with "
                        f"the shapes {', '.join(missing) or 'named'}; got {deltas.shape} and {neutral.shape}")
    if not (np.isfinite(deltas).all() and np.isfinite(neutral).all()):
        raise UserError(f"{path}: non-finite vertices")
    return names, deltas, neutral


@lru_cache(maxsize=2)
def ict_basis(path: str) -> np.ndarray:
    """[E, 468, 3] fields (cm) in the order of NAMES from an ICT-FaceKit delta file (npz: names, deltas [N,V,3]
    minus neutral [V,3]). Its face part is brought onto our canonical mesh (y up, z towards the camera → ours) by the
    similarity that matches the 51 inner iBUG points, refined by rounds of nearest vertices (ICP, about 0.3 cm
    rms); each of our vertices then takes the mean of its nearest face vertices' deltas, weighted by 1/distance."""
    names, deltas, neutral = _load_ict(Path(path))
    flip = np.array([1.0, -1.0, -1.0])
    face = neutral[:ICT_FACE].astype(np.float64) * flip
    X = canonical.load()[0].astype(np.float64)
    ours51 = np.stack([X[p].mean(0) for p in IBUG51])
    s, R, t = pose.procrustes(face[list(ICT_IBUG51)], ours51)

    def squared_distances() -> np.ndarray:            # [468, face vertices] under the current (s, R, t)
        return ((X[:, None] - (s * face @ R.T + t)[None]) ** 2).sum(-1)

    for _ in range(ICT_FIT_ROUNDS):
        s, R, t = pose.procrustes(face[np.argmin(squared_distances(), 1)], X)
    d2 = squared_distances()
    k = np.argsort(d2, 1)[:, :ICT_NEIGHBOURS]
    w = 1.0 / (np.sqrt(np.take_along_axis(d2, k, 1)) + 1e-3)
    w /= w.sum(1, keepdims=True)
    fields = []
    for name in NAMES:
        delta = sum(deltas[names.index(shape), :ICT_FACE].astype(np.float64) for shape in ICT_SHAPES[name])
        fields.append(((s * (delta * flip) @ R.T)[k] * w[..., None]).sum(1))
    return np.stack(fields).astype(np.float32)


def apply(activations: np.ndarray, fields: np.ndarray | None = None) -> np.ndarray:
    """Activations [..., E] in [0, 1] → vertices G [..., 468, 3] in the canonical frame; `fields` [E,468,3] default
    to the procedural `basis()`."""
    fields = basis() if fields is None else fields
    return canonical.load()[0] + np.tensordot(activations, fields, axes=([-1], [0])).astype(np.float32)
