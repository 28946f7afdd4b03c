"""The guided enrollment's prompts: what a performer is asked to do while the enrollment clip records.

One script for the studio's guided recording (app.guided shows it) and the synthetic performer (`facetrack synth
--script enroll` acts it out), so the synthetic enrollment holds what a performer's own would: each expression the
DAM must learn once on its own, one-sided smiles included (a smile with both sides only leaves the expression basis
a symmetric smile, which cannot follow a one-sided one), then the head poses I2ZNet must see.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Step:
    key: str                 # neutral, blink, smile, jaw, brows, frown, pucker, look
    text: str                # what the performer reads
    share: float             # of the enrollment clip's time
    fields: tuple = ()       # engine.expressions.NAMES it asks for
    turn: tuple = (0.0, 0.0)  # (pitch, yaw) as a fraction of the synthetic head's limits, for a "look" step


ENROLL = (
    Step("neutral", "Relax and look straight at the camera", 3),
    Step("blink", "Blink slowly, a few times", 3, ("blink_left", "blink_right")),
    Step("smile", "Smile wide… and relax", 3, ("smile_left", "smile_right")),
    Step("smile", "Smile with the left side of your mouth only", 2.5, ("smile_left",)),
    Step("smile", "… now with the right side only", 2.5, ("smile_right",)),
    Step("jaw", "Open your jaw wide… and close it", 3, ("jaw_open",)),
    Step("brows", "Raise your eyebrows high", 3, ("brow_raise",)),
    Step("frown", "Frown: pull your brows down and together", 3, ("brow_frown",)),
    Step("pucker", "Pucker your lips, as for a kiss", 3, ("pucker",)),
    Step("look", "Slowly turn your head to the left", 2.25, turn=(0.0, -1.0)),
    Step("look", "… and to the right", 2.25, turn=(0.0, 1.0)),
    Step("look", "Now tilt your head up", 2.25, turn=(-1.0, 0.0)),
    Step("look", "… and down", 2.25, turn=(1.0, 0.0)),
)


def timed(seconds: float = 30.0) -> list[tuple[Step, float]]:
    """The steps with their seconds, scaled to `seconds` in all (the last one takes the rounding)."""
    total = sum(s.share for s in ENROLL)
    out = [(s, seconds * s.share / total) for s in ENROLL]
    out[-1] = (ENROLL[-1], seconds - sum(t for _, t in out[:-1]))
    return out


def _pulse(n: int, rise: float = 0.3) -> np.ndarray:
    """[n] 0 → 1 → 0: a smooth rise over `rise` of the span, a hold, and the same fall."""
    x = np.linspace(0.0, 1.0, n)
    up = np.clip(np.minimum(x, 1.0 - x) / rise, 0.0, 1.0)
    return up * up * (3 - 2 * up)


def spans(frames: int, fps: float) -> list[tuple[Step, slice]]:
    """The frames of a `frames`-long enrollment clip at `fps` that each step takes."""
    ends = np.round(np.cumsum([t for _, t in timed(frames / fps)]) * fps).astype(int)
    return [(step, slice(a, b)) for step, a, b in zip(ENROLL, [0, *ends[:-1]], ends)]


def act(names: tuple, frames: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A performer following the script for `frames` frames: expression activations [frames, len(names)] in [0, 1]
    and head turns [frames, 2] (pitch, yaw) as fractions of the head's limits. Each expression step holds its fields
    at 0.75–1 (blinks come 3–4 times, the jaw opens twice); a look step turns out and back."""
    A, turn = np.zeros((frames, len(names))), np.zeros((frames, 2))
    for step, span in spans(frames, fps):
        n = span.stop - span.start
        if n <= 0:
            continue
        if step.key == "blink":
            k = int(rng.integers(3, 5))
            for i in range(k):
                a = span.start + n * i // k
                length = min(n // k, int(rng.integers(4, 8)))
                for f in step.fields:
                    A[a:a + length, names.index(f)] = np.sin(np.linspace(0, np.pi, length))
        elif step.key == "jaw":
            A[span, names.index("jaw_open")] = rng.uniform(0.75, 1.0) * np.concatenate([_pulse(n // 2),
                                                                                      _pulse(n - n // 2)])
        else:
            for f in step.fields:
                A[span, names.index(f)] = rng.uniform(0.75, 1.0) * _pulse(n)
        turn[span] = np.asarray(step.turn) * _pulse(n, 0.45)[:, None]
    return A, turn
