"""One Euro smoothing of the tracked mesh G and pose H (engine.metrics.OneEuro), on by default in the studio.

The filter's beta multiplies a speed, so each quantity gets parameters in its own units: G in cm/s, the pose
angles in rad/s, scale f and translation in px/s. The values keep still faces still (low cutoff) while a
quick head turn raises the cutoff to a few Hz, so it does not lag visibly.
"""
from __future__ import annotations

import numpy as np

from engine.metrics import OneEuro

# (min_cutoff Hz, beta) per quantity
PARAMS = {"G": (1.5, 0.5), "angles": (1.0, 1.0), "scale_shift": (1.0, 0.02)}


class PoseSmoother:
    def __init__(self, params: dict | None = None):
        p = {**PARAMS, **(params or {})}
        self._G, self._angles, self._shift = (OneEuro(*p[k]) for k in ("G", "angles", "scale_shift"))

    def reset(self) -> None:
        """Forget the past (the face was lost: the next face must not be blended with the old one)."""
        for f in (self._G, self._angles, self._shift):
            f.reset()

    def __call__(self, G: np.ndarray, H: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        H = np.asarray(H, np.float64)
        G_s = self._G(G, t).astype(np.float32)
        angles = self._angles(H[1:4], t)
        shift = self._shift(H[[0, 4, 5]], t)
        return G_s, np.array([shift[0], *angles, shift[1], shift[2]])
