"""The guided enrollment's prompts: what a performer is asked to do while the enrollment clip records.

One script for the studio's guided recording (app.guided shows it) and the synthetic performer (`facetrack synth
--script enroll` acts it out), so the synthetic enrollment holds what a performer's own would: each expression the
DAM must learn once on its own, one-sided smiles included (a smile with both sides only leaves the expression basis
a symmetric smile, which cannot follow a one-sided one), then the head poses I2ZNet must see.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import UserError


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


KEYS = tuple(dict.fromkeys(s.key for s in ENROLL))
# The steps that ask for a resting face while only the head may move: where a build measures how the teacher's
# reading of a resting face changes with the pose (engine.view_bias).
HOLD_STILL = ("neutral", "look")


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


# ------------------------------------------------------------------------------------ the timeline beside a clip
# A guided enrollment clip carries which of its frames each prompt took in a sidecar, CLIP.prompts.json (the studio's
# recording and `facetrack synth --script enroll` write it; the build's enrollment reads it): {"format":
# "facetrack-prompts", "version": 1, "frames": N, "steps": [{"key": "neutral", "start": 0, "stop": 60}, ...]}.
SIDECAR = ".prompts.json"
FORMAT = "facetrack-prompts"
MAX_SIDECAR_BYTES = 1 << 20


def sidecar(clip: str | Path) -> Path:
    """Where the prompt timeline of `clip` lies: enroll.mp4 → enroll.prompts.json."""
    return Path(clip).with_suffix(SIDECAR)


def timeline(keys: list[str]) -> dict:
    """The sidecar's object for a clip whose frame i was recorded under the prompt keys[i]."""
    steps = []
    for i, key in enumerate(keys):
        if steps and steps[-1]["key"] == key:
            steps[-1]["stop"] = i + 1
        else:
            steps.append({"key": key, "start": i, "stop": i + 1})
    return {"format": FORMAT, "version": 1, "frames": len(keys), "steps": steps}


def frame_keys(frames: int, fps: float) -> list[str]:
    """The prompt key of each frame of a `frames`-long clip that follows the script exactly (the synthetic one)."""
    keys = [""] * frames
    for step, span in spans(frames, fps):
        for i in range(span.start, span.stop):
            keys[i] = step.key
    return keys


def recorded(clip: str | Path, frames: int) -> np.ndarray | None:
    """[frames] int8: the prompt each frame of `clip` was recorded under, as its index in KEYS, from the clip's
    sidecar; None when it has none (not a guided recording). A sidecar that is not a timeline of this clip is a
    UserError naming it."""
    path = sidecar(clip)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"larger than {MAX_SIDECAR_BYTES >> 10} KiB")
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != 1:
            raise ValueError(f"not a {FORMAT} version 1 file")
        if data.get("frames") != frames:
            raise ValueError(f"written for {data.get('frames')!r} frames, the clip has {frames}")
        codes, end = np.full(frames, -1, np.int8), 0
        for step in data.get("steps") if isinstance(data.get("steps"), list) else [None]:
            if not isinstance(step, dict) or step.get("key") not in KEYS:
                raise ValueError(f"a step is not one of {', '.join(KEYS)}")
            a, b = step.get("start"), step.get("stop")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)) or not end <= a < b <= frames:
                raise ValueError(f"step {step['key']!r} spans {a!r}..{b!r}, not ordered frames of the clip")
            codes[a:b], end = KEYS.index(step["key"]), b
        return codes
    except (OSError, ValueError) as err:       # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path}: unusable prompt timeline ({str(err).splitlines()[0][:120]}); "
                        f"remove it to use the clip without") from None


def keys_of(codes: np.ndarray) -> np.ndarray:
    """The prompt key of each code (recorded's), "" for none."""
    return np.array(("",) + KEYS)[np.asarray(codes, np.int64) + 1]
