"""Rolling measurements for the studio panels: rates, per-stage timings and temporal stability (Eq. 10)."""
from __future__ import annotations

import collections
import time

import numpy as np

from engine.metrics import temporal_stability


class RateMeter:
    """Events per second over the last `window` seconds."""

    def __init__(self, window: float = 1.0, clock=time.monotonic):
        self.window, self._clock = window, clock
        self._times = collections.deque()

    def tick(self, t: float | None = None) -> None:
        self._times.append(self._clock() if t is None else t)

    def rate(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
        return len(self._times) / self.window


class StageTimes:
    """Exponential moving average of each stage's milliseconds (DeepFaceLive-style per-worker timing)."""

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self.ms: dict[str, float] = {}

    def add(self, stages: dict[str, float]) -> None:
        for name, ms in stages.items():
            old = self.ms.get(name)
            self.ms[name] = float(ms) if old is None else old + self.alpha * (float(ms) - old)


class RollingStability:
    """Eq. 10 (engine.metrics.temporal_stability) over the last `length` meshes; a lost face breaks the run."""

    def __init__(self, length: int = 60):
        self._G = collections.deque(maxlen=length)

    def push(self, G: np.ndarray | None) -> None:
        self._G.append(None if G is None else np.asarray(G, np.float32))

    def value(self) -> float | None:
        """Stability of the window (1 is perfect), or None without three consecutive faces."""
        frames = list(self._G)
        while frames and frames[0] is None:
            frames.pop(0)
        if len(frames) < 3:
            return None
        shape = next(g for g in frames if g is not None).shape
        G = np.stack([np.full(shape, np.nan, np.float32) if g is None else g for g in frames])
        try:
            return temporal_stability(G)["stability"]
        except ValueError:  # no three consecutive frames with a face
            return None
