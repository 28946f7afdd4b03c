"""The teacher's view bias: how the shape it reads of a resting face changes as the head turns.

MediaPipe's landmarks under-read a turned head and put the rest into the shape. On the synthetic performers the
enrollment labels' pitch is 0.77 of the truth's, and a head tilted up reads as a jaw opened a quarter of the way,
a turned one as a frown or a one-sided smile (docs/BENCHMARKS.md, "twelfth step"). The person model learns those
labels, and the run-time refit fits the same teacher, so the bias reaches the ARKit values.

A guided enrollment shows it on its own: in its neutral and look steps (engine.prompts.HOLD_STILL) the performer
holds a resting face while the head turns. D(H) = Σ_f φ_f(H)·D_f is the least-squares fit of the labels' G there on
the pose features φ (pitch, yaw, their squares and their product, in radians; a ridge keeps a feature the clip
hardly moves near 0). The tracking loop removes D at each frame's pose from G (engine.tracking.refit): the pose and
the points stay where the teacher sees the face. Beyond the poses the fit saw, φ is held at their edge.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import prompts

FEATURES = ("pitch", "yaw", "pitch²", "yaw²", "pitch·yaw")
RIDGE = 1e-3          # per frame, in rad² (rad⁴ for the squares): a feature spread less than ~2° is fitted to ~0
MIN_FRAMES = 50       # resting frames a fit needs (a guided 30 s enrollment holds ~250)


def features(H: np.ndarray, limits: np.ndarray | None = None) -> np.ndarray:
    """φ [..., 5] of poses H [..., 6], the angles first clipped to `limits` [2 (min, max), 2 (pitch, yaw)]."""
    a = np.asarray(H, np.float64)[..., 1:3]
    if limits is not None:
        a = np.clip(a, limits[0], limits[1])
    pitch, yaw = a[..., 0], a[..., 1]
    return np.stack([pitch, yaw, pitch * pitch, yaw * yaw, pitch * yaw], -1)


def fit(G: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(D [5,468,3] cm, limits [2,2] rad) from resting frames G [N,468,3] and their poses H [N,6]."""
    G, H = np.asarray(G, np.float64), np.asarray(H, np.float64)
    phi = features(H)
    X = np.concatenate([np.ones((len(phi), 1)), phi], 1)          # the intercept is the resting face: not kept
    A = X.T @ X + RIDGE * len(X) * np.diag([0.0] + [1.0] * len(FEATURES))
    D = np.linalg.solve(A, X.T @ G.reshape(len(G), -1))[1:].reshape(len(FEATURES), *G.shape[1:])
    limits = np.stack([H[:, 1:3].min(0), H[:, 1:3].max(0)])
    return D, limits


def bias(D: np.ndarray, limits: np.ndarray, H: np.ndarray) -> np.ndarray:
    """D(H) [468,3]: what the teacher adds to a resting face at pose H [6]. Once a frame on the live path: plain
    floats and one product (~5 µs; `features` costs its numpy calls' overhead, ~30 µs)."""
    (p0, y0), (p1, y1) = limits.tolist()
    pitch, yaw = min(max(float(H[1]), p0), p1), min(max(float(H[2]), y0), y1)
    phi = np.array([pitch, yaw, pitch * pitch, yaw * yaw, pitch * yaw])
    return (phi @ D.reshape(len(phi), -1)).reshape(D.shape[1:])


def from_enrollment(folder: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """fit() on an enrollment's resting frames (RUN/enrollment: prompt.npy, G.npy, H.npy, engine.enroll), or None
    when it has fewer than MIN_FRAMES (not a guided clip, or an older run)."""
    folder = Path(folder)
    if not (folder / "prompt.npy").is_file():
        return None
    still = np.isin(prompts.keys_of(np.load(folder / "prompt.npy", allow_pickle=False)), prompts.HOLD_STILL)
    if still.sum() < MIN_FRAMES:
        return None
    G, H = (np.load(folder / f"{k}.npy", allow_pickle=False) for k in ("G", "H"))
    return fit(G[still], H[still])
