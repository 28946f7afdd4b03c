"""A stand-in tracker with the runtime's interface (export.runtime.Tracker), torch-free and model-free.

It ignores the frame's content and returns a slowly moving, expressive canonical face (engine.canonical +
engine.expressions) placed in the middle of the frame, with a painted UV texture. For tests, UI work and
screenshots without a performer package; `delay_s` simulates a slow backend, `lose_every` a lost face.
"""
from __future__ import annotations

import math
import time

import cv2
import numpy as np

from engine import expressions
from engine.pose import project
from engine.topology import topology
from engine.tracking import FaceResult

SKIN, LIPS, EYES, GRID = (214, 168, 140), (176, 86, 88), (70, 52, 44), (190, 145, 120)


def painted_texture(size: int = 256) -> np.ndarray:
    """[S,S,3] uint8: skin with a faint UV grid, darker eye openings and red lips, drawn at the topology's UVs."""
    T = np.empty((size, size, 3), np.uint8)
    T[:] = SKIN
    for k in range(0, size, size // 16):
        T[k, :] = GRID
        T[:, k] = GRID
    loops = topology().loops
    uv = topology().uv * size

    def fill(name, colour):
        cv2.fillPoly(T, [np.round(uv[list(loops[name])]).astype(np.int32)], colour, lineType=cv2.LINE_AA)

    fill("lips_outer", LIPS)
    fill("lips_inner", EYES)
    fill("eye_left", EYES)
    fill("eye_right", EYES)
    return T


class DemoTracker:
    backend = "demo (no model)"
    fallback = None

    def __init__(self, delay_s: float = 0.0, lose_every: int = 0, texture_size: int = 256):
        self.delay_s, self.lose_every = delay_s, lose_every
        self.calls = 0
        self._texture = painted_texture(texture_size)
        top = topology()
        self.topology = (top.triangles, top.uv, top.holes)

    def reset(self) -> None:
        self.calls = 0

    def __call__(self, frame_rgb: np.ndarray) -> FaceResult | None:
        t0 = time.perf_counter()
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.lose_every and self.calls % self.lose_every == 0:
            return None
        s = self.calls / 30.0  # pretend 30 fps: the motion is the same whatever the real rate
        a = np.zeros(len(expressions.NAMES), np.float32)
        a[expressions.NAMES.index("jaw_open")] = 0.5 + 0.5 * math.sin(1.3 * s)
        a[expressions.NAMES.index("smile_left")] = a[expressions.NAMES.index("smile_right")] = 0.5 + 0.5 * math.sin(0.7 * s)
        a[expressions.NAMES.index("blink_left")] = a[expressions.NAMES.index("blink_right")] = float(math.sin(2.1 * s) > 0.9)
        a[expressions.NAMES.index("brow_raise")] = 0.5 + 0.5 * math.sin(0.9 * s + 1.0)
        G = expressions.apply(a).astype(np.float32)
        h, w = frame_rgb.shape[:2]
        f = 0.35 * min(w, h) / 15.3  # the face spans about a third of the frame
        H = np.array([f, 0.15 * math.sin(0.6 * s), 0.4 * math.sin(0.4 * s), 0.1 * math.sin(0.3 * s),
                      w / 2 + 0.05 * w * math.sin(0.25 * s), h / 2 + 0.03 * h * math.sin(0.35 * s)])
        ms = (time.perf_counter() - t0) * 1e3
        return FaceResult(G=G, points=project(G.astype(np.float64), H).astype(np.float32), H=H,
                      z=np.zeros(128, np.float32) + a.mean(), presence=1.0,
                      stages_ms={"detect": 0.0, "crop": 0.0, "tracker": ms})

    def texture(self, z, H, corrected: bool = True) -> np.ndarray:
        if corrected:
            return self._texture
        # An uncorrected texture differs visibly (a cool cast), so the correction toggle can be seen working.
        return np.clip(self._texture * np.array([0.8, 0.9, 1.15]), 0, 255).astype(np.uint8)
