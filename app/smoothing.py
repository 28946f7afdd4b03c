"""One Euro smoothing of the tracked mesh G and pose H (engine.metrics.OneEuro), on by default in the studio.

The filter's beta multiplies a speed, so each quantity gets parameters in its own units: G in cm/s, the pose
angles in rad/s, scale f and translation in px/s. The values keep still faces still (low cutoff) while a
quick head turn raises the cutoff to a few Hz, so it does not lag visibly.

A performer sets one pair (min_cutoff Hz, beta), the head rotation's own filter (PARAMS["angles"], so the
defaults DEFAULT_MIN_CUTOFF, DEFAULT_BETA are exactly PARAMS). The other quantities keep their ratio to it:
each quantity's min cutoff is PARAMS' times min_cutoff / DEFAULT_MIN_CUTOFF, its beta PARAMS' times
beta / DEFAULT_BETA. Lower min cutoff: stiller at rest, more lag; higher beta: less lag in fast moves.
"""
from __future__ import annotations

import numpy as np

from engine.metrics import OneEuro

# (min_cutoff Hz, beta) per quantity
PARAMS = {"G": (1.5, 0.5), "angles": (1.0, 1.0), "scale_shift": (1.0, 0.02)}
DEFAULT_MIN_CUTOFF, DEFAULT_BETA = PARAMS["angles"]
MIN_CUTOFF_RANGE, BETA_RANGE = (0.05, 10.0), (0.0, 10.0)   # what the studio offers and a settings file may hold


def scaled_params(min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA) -> dict:
    """PARAMS scaled by the performer's pair (see the module notes)."""
    c, b = min_cutoff / DEFAULT_MIN_CUTOFF, beta / DEFAULT_BETA
    return {k: (mc * c, bb * b) for k, (mc, bb) in PARAMS.items()}


class PoseSmoother:
    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA):
        self.min_cutoff, self.beta = float(min_cutoff), float(beta)
        p = scaled_params(self.min_cutoff, self.beta)
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
