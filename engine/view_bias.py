"""The teacher's view bias: how the shape it reads of a resting face changes as the head tilts.

MediaPipe's landmarks under-read a tilted head and put the rest into the shape. On the synthetic performers the
enrollment labels' pitch is 0.77 of the truth's, and a head tilted up reads as a jaw opened a quarter of the way
(docs/BENCHMARKS.md, "twelfth step"). The person model learns those labels, and the run-time refit fits the same
teacher, so the bias reaches the ARKit values.

A guided enrollment shows it on its own: in its neutral and look steps (engine.prompts.HOLD_STILL) the performer
holds a resting face while the head turns. D(H) = Σ_f φ_f(H)·D_f is the least-squares fit of the labels' G there on
the pose features φ (pitch and its square, in radians; a ridge keeps a feature the clip hardly moves near 0). The
tracking loop removes D at each frame's pose from G (engine.tracking.refit): the pose and the points stay where the
teacher sees the face. Beyond the pitches the fit saw, φ is held at their edge.
Yaw is left out: its bias is there too (with yaw and its square as well, the non-rigid error fell a further 8 %), but
it did not carry from the lab to new places: on two fresh clips of each synthetic performer smile R r fell from
0.44 to 0.05 with it, and stays at 0.42 without.
"""
from __future__ import annotations

import numpy as np

from engine import prompts
from engine.run import enrollment_prompts, load_enrollment

FEATURES = ("pitch", "pitch²")
RIDGE = 1e-3          # per frame, in rad² (rad⁴ for the square): a feature spread less than ~2° is fitted to ~0
MIN_FRAMES = 50       # resting frames a fit needs (a guided 30 s enrollment holds ~250)


def features(H: np.ndarray) -> np.ndarray:
    """φ [..., 2] of poses H [..., 6]."""
    pitch = np.asarray(H, np.float64)[..., 1]
    return np.stack([pitch, pitch * pitch], -1)


def fit(G: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(D [2,468,3] cm, limits [2] rad: the pitches seen) from resting frames G [N,468,3] and their poses H [N,6]."""
    G, H = np.asarray(G, np.float64), np.asarray(H, np.float64)
    phi = features(H)
    X = np.concatenate([np.ones((len(phi), 1)), phi], 1)          # the intercept is the resting face: not kept
    A = X.T @ X + RIDGE * len(X) * np.diag([0.0] + [1.0] * len(FEATURES))
    D = np.linalg.solve(A, X.T @ G.reshape(len(G), -1))[1:].reshape(len(FEATURES), *G.shape[1:])
    return D, np.array([H[:, 1].min(), H[:, 1].max()])


def bias(D: np.ndarray, limits: np.ndarray, H: np.ndarray) -> np.ndarray:
    """D(H) [468,3]: what the teacher adds to a resting face at pose H [6], its pitch held within `limits`. Once a
    frame on the live path: plain floats, not `features` (its numpy calls' overhead)."""
    pitch = min(max(float(H[1]), float(limits[0])), float(limits[1]))
    return pitch * D[0] + (pitch * pitch) * D[1]


def from_enrollment(run) -> tuple[np.ndarray, np.ndarray] | None:
    """fit() on a run's resting enrollment frames (engine.run.enrollment_prompts; its G and H), or None when it has
    fewer than MIN_FRAMES (not a guided clip, or an older run)."""
    asked = enrollment_prompts(run)
    still = np.zeros(0, bool) if asked is None else np.isin(asked, prompts.HOLD_STILL)
    if still.sum() < MIN_FRAMES:
        return None
    data = load_enrollment(run, ("G", "H"))
    return fit(data["G"][still], data["H"][still])
