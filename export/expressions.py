"""ARKit blendshape values in [0, 1] from a decoded mesh G, relative to the performer's resting face.

Avatar apps (VMC receivers, Live Link) speak ARKit's 52 names, not our latent z, so the live app turns each
decoded G [468,3] (canonical head frame, cm: x = subject's left, y down, z away from the camera) into those names
with a few geometric measures:

- every measure is a distance or offset between MediaPipe vertices divided by the inter-ocular distance (outer
  eye corners 33–263, which no expression moves), so it is free of the performer's size and of G's units;
- each is compared with the same measure on a *neutral* face: `calibrate(G)` on a resting frame, or by default
  the canonical shape (engine.canonical), so a face that rests half-smiling reads 0, not 0.3;
- the change maps linearly to [0, 1] between a START (dead zone against decoder jitter) and a FULL value; the
  GAINS table documents each one in inter-ocular units (IOD ≈ 10 cm on an adult, so 0.1 IOD ≈ 1 cm).

Eyes: G's eyelids barely move on a real blink (the 468-point landmarker's lids respond weakly). When the tracker
also ran the iris landmarker (FaceResult.eyes, engine.eyes), eyeBlink/eyeWide come from its eyelid aperture
instead, relative to the calibrated open aperture, and the eight eyeLook* from its gaze relative to the calibrated
gaze (see `ExpressionEstimator.gaze`); without it eyeLook* are 0 and the blinks are G's.

Shapes we cannot see (cheek puff, tongue...) are 0. Pure numpy; no torch.

A performer package carries the range its model read on its own enrollment (`expression_ranges`): each value
then reaches 1 at that performer's widest, not at an average face's (`ExpressionEstimator(ranges=...)`), and the
smile no longer falls as the jaw opens (the jaw's pull on their mouth corners, JAW_PULL).
Per performer, `tune` reshapes each value with a dead zone and a gain (the studio saves them per package), and
`ExpressionEstimator.neutral_state()` / `set_neutral_state()` carry a calibration as plain JSON-able data.
"""
from __future__ import annotations

import math

import numpy as np

# ARKit's 52 names in Apple's ARFaceAnchor.BlendShapeLocation order (Live Link Face's CSV and Unreal's
# EARFaceBlendShape use another order: app.livelink).
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)

# MediaPipe vertex numbers (subject's left = +x).
EYE_OUTER = {"left": 263, "right": 33}
EYE_INNER = {"left": 362, "right": 133}
LID_PAIRS = {"left": ((386, 374), (385, 380), (387, 373)),   # (upper, lower) across the eye's middle
             "right": ((159, 145), (158, 153), (160, 144))}
BROW_INNER = {"left": 336, "right": 107}
BROW_OUTER = {"left": 300, "right": 70}
MOUTH_CORNER = {"left": 291, "right": 61}
LIP_INNER_UPPER, LIP_INNER_LOWER, LIP_OUTER_UPPER, LIP_OUTER_LOWER = 13, 14, 0, 17
NOSE_TIP, CHIN = 1, 152
SIDES = ("left", "right")

# name → (START, FULL) in the units of its measure's change from neutral (see `_activations`).
GAINS = {
    "eyeBlink": (0.05, 0.80),    # fraction of the neutral lid aperture that closed (lid aperture: vertical, 3 pairs)
    "eyeWide": (0.05, 0.50),     # fraction by which the lid aperture grew
    "jawOpen": (0.01, 0.35),     # chin–nose-tip distance growth, IOD (0.35 ≈ 3.5 cm: a wide-open mouth)
    "mouthClose": (0.01, 0.20),  # 0.9 × chin travel − inner-lip gap growth, IOD: jaw down but lips held together
    "lipProtrusion": (0.005, 0.06),  # lips (0, 17, 13, 14) move towards the camera relative to the nose tip, IOD
    "lipGap": (0.01, 0.15),      # inner-lip gap growth, IOD: splits protrusion into funnel (open) / pucker (closed)
    "mouthSmile": (0.01, 0.12),  # mouth corner raise + outward travel relative to the nose tip, IOD
    "mouthSide": (0.01, 0.10),   # lip centre's sideways shift relative to the nose tip, IOD
    "jawSide": (0.01, 0.10),     # chin's sideways shift relative to the nose tip, IOD
    "browInnerUp": (0.005, 0.10),  # inner brow ends rise relative to the inner eye corners, IOD (mean of sides)
    "browOuterUp": (0.005, 0.10),  # outer brow ends rise relative to the outer eye corners, IOD
    "browDown": (0.005, 0.08),   # inner brow end drops + moves towards the midline, IOD
    # From the iris landmarker (FaceResult.eyes), when the tracker ran it:
    "eyeBlinkIris": (0.25, 0.70),  # fraction of the neutral iris-model lid aperture that closed (open ≈ 0.3 of
                                   # the eye width, shut ≈ 0.04-0.2: docs/BENCHMARKS.md "Gaze and blinks")
    "eyeWideIris": (0.10, 0.40),   # fraction by which that aperture grew
    "eyeLookH": (0.05, 0.45),    # |gaze yaw| from the neutral gaze, radians (3°..26°)
    "eyeLookV": (0.05, 0.35),    # |gaze pitch| from the neutral gaze, radians (3°..20°)
}
# The iris-model measures a face reads as neutral until the performer calibrates: lid aperture / eye width and iris
# offset (dx, dy) in eye widths (dx > 0 towards the nose, dy > 0 down), the mean of the per-clip medians on the two
# hand-labelled real clips (lp_driving_d14: 0.35, (−0.02, −0.05); Obama office: 0.30, (−0.07, −0.09); BENCHMARKS.md
# "Gaze and blinks"). The iris sits above the corners' midpoint and a little outwards on a face at rest.
NEUTRAL_EYE = {"aperture": 0.32, "offset": (-0.045, -0.07)}
# While an eye is this closed (its eyeBlink) its iris is hidden: the eye keeps the gaze it had before.
GAZE_HOLD_BLINK = 0.5
# With the lips apart the lower lip rides the jaw a little nearer the hinge than the chin does, so an open jaw
# grows the lip gap by ~0.9 of the chin's travel; less than that means the lips are being held closed.
LIP_TO_CHIN_TRAVEL = 0.9


def measures(G: np.ndarray) -> dict[str, float]:
    """Scale-free geometric measures of one mesh G [468,3] (offsets are in IOD units, y down, +x = left)."""
    G = np.asarray(G, dtype=np.float64)
    iod = np.linalg.norm(G[EYE_OUTER["left"]] - G[EYE_OUTER["right"]])
    P = (G - G[NOSE_TIP]) / iod  # nose-tip origin: expressions barely move it
    m = {
        "chin": np.linalg.norm(P[CHIN]),
        "lipGap": np.linalg.norm(P[LIP_INNER_LOWER] - P[LIP_INNER_UPPER]),
        "lipZ": P[[LIP_OUTER_UPPER, LIP_OUTER_LOWER, LIP_INNER_UPPER, LIP_INNER_LOWER], 2].mean(),
        "lipX": P[[LIP_OUTER_UPPER, LIP_OUTER_LOWER], 0].mean(),
        "chinX": P[CHIN, 0],
    }
    for side in SIDES:
        out = 1.0 if side == "left" else -1.0  # sign of x that points away from the midline on this side
        m[f"aperture_{side}"] = float(np.mean([P[lo, 1] - P[up, 1] for up, lo in LID_PAIRS[side]]))
        m[f"cornerUp_{side}"] = -P[MOUTH_CORNER[side], 1]
        m[f"cornerOut_{side}"] = out * P[MOUTH_CORNER[side], 0]
        m[f"browInnerUp_{side}"] = P[EYE_INNER[side], 1] - P[BROW_INNER[side], 1]
        m[f"browOuterUp_{side}"] = P[EYE_OUTER[side], 1] - P[BROW_OUTER[side], 1]
        m[f"browInnerOut_{side}"] = out * P[BROW_INNER[side], 0]
    return {k: float(v) for k, v in m.items()}


def _ramp(x: float, key: str, gains: dict = GAINS) -> float:
    start, full = gains[key]
    return min(max(float(x - start) / (full - start), 0.0), 1.0)     # plain floats: ~50 ramps a frame


def _drives(m: dict[str, float], n: dict[str, float], jaw_pull: float = 0.0) -> dict[str, tuple[str, float]]:
    """What each value ramps on: {name: (GAINS key, the change of its measure from the neutral n)} for the
    measures m of a frame; the smile's less `jaw_pull` × the chin's opening travel (JAW_PULL). lipProtrusion and
    lipGap are not ARKit names: they make mouthFunnel and mouthPucker."""
    d = {k: m[k] - n[k] for k in m}
    pulled = jaw_pull * max(d["chin"], 0.0)
    out = {
        "jawOpen": ("jawOpen", d["chin"]),
        "mouthClose": ("mouthClose", LIP_TO_CHIN_TRAVEL * d["chin"] - d["lipGap"]),
        "lipProtrusion": ("lipProtrusion", -d["lipZ"]),   # z points away from the camera: lips forward, lipZ down
        "lipGap": ("lipGap", d["lipGap"]),
        "mouthLeft": ("mouthSide", d["lipX"]), "mouthRight": ("mouthSide", -d["lipX"]),
        "jawLeft": ("jawSide", d["chinX"]), "jawRight": ("jawSide", -d["chinX"]),
        "browInnerUp": ("browInnerUp", float(np.mean([d[f"browInnerUp_{side}"] for side in SIDES]))),
    }
    for side in SIDES:
        S = side.capitalize()
        closed = 1.0 - m[f"aperture_{side}"] / n[f"aperture_{side}"]
        out[f"eyeBlink{S}"] = ("eyeBlink", closed)
        out[f"eyeWide{S}"] = ("eyeWide", -closed)
        out[f"mouthSmile{S}"] = ("mouthSmile", d[f"cornerUp_{side}"] + d[f"cornerOut_{side}"] - pulled)
        out[f"browOuterUp{S}"] = ("browOuterUp", d[f"browOuterUp_{side}"])
        out[f"browDown{S}"] = ("browDown", -d[f"browInnerUp_{side}"] - d[f"browInnerOut_{side}"])
    return out


def _activations(m: dict[str, float], n: dict[str, float], gains: dict = GAINS,
                 jaw_pull: float = 0.0) -> dict[str, float]:
    """ARKit values from the measures m of a frame and n of the neutral face."""
    out = {name: _ramp(x, key, gains) for name, (key, x) in _drives(m, n, jaw_pull).items()}
    # Both pout the lips forward; an open "O" is a funnel, closed lips are a pucker.
    protrusion, opened = out.pop("lipProtrusion"), out.pop("lipGap")
    out["mouthFunnel"], out["mouthPucker"] = protrusion * opened, protrusion * (1.0 - opened)
    return out


# ------------------------------------------------------------------------------------- the performer's own range
# GAINS' FULL values are an average face's widest expression; what the tracker reads of a performer's widest is
# theirs (and their model's: a person model reads a wide jaw or smile smaller than the face makes it). A package
# carries the range it read on its own enrollment (`expression_ranges`, export.ranges), whose guided script asks
# for each expression in turn, and the values ramp to 1 there instead. RANGED: the measures an enrollment can show.
RANGED = ("jawOpen", "lipProtrusion", "mouthSmile", "browInnerUp", "browOuterUp", "browDown", "eyeBlink",
          "eyeBlinkIris")
RANGE_PERCENTILE = 99       # the enrollment's widest, less its outliers (a 3 s prompt is ~10 % of the clip)
# A measure the enrollment did not show keeps the average face's FULL. Shown: its widest is past FULL / 4 and ten
# times the measure's own frame-to-frame jitter (the synthetic performers' prompted expressions: 11–63 ×; a talking
# head's unprompted jaw, pucker or frown: 4.5–6.6 ×, docs/BENCHMARKS.md).
RANGE_MAX_GAIN = 4.0
RANGE_SNR = 10.0
# A guided enrollment says which frames asked for each held expression (engine.prompts' keys): its widest is taken
# there alone. Elsewhere it only adds what the model reads of other faces and poses (on the synthetic guided
# enrollments a frown read twice as far outside its prompt as inside it), and the percentile of a 3 s prompt over the
# whole clip falls short of its widest (the procedural jaw 0.086 against 0.089; docs/BENCHMARKS.md, "twelfth step").
# Blinks keep the whole clip: at its prompt the iris model reads a shut eye 0.67–0.70 closed, in the new places
# 0.39–0.63, and blink r on six held-out clips fell 0.80 / 0.71 → 0.77 / 0.65 with that range.
RANGE_PROMPTS = {"jawOpen": "jaw", "lipProtrusion": "pucker", "mouthSmile": "smile", "browInnerUp": "brows",
                 "browOuterUp": "brows", "browDown": "frown"}
# The jaw's pull on the mouth corners. Opening the jaw drags them down and in (the ICT-FaceKit scans: down by 0.26
# of the chin's travel, and inwards), so the smile's measure falls as the jaw opens and a laugh reads as no smile,
# though ARKit's jawOpen and mouthSmile are independent controls (an avatar's jawOpen lowers its corners itself).
# The range also carries the performer's own pull k (key JAW_PULL, in [JAW_PULL_MIN, 0]): the median smile change
# over the median chin travel on the frames where the enrollment's jaw is at least JAW_PULL_OPEN of its widest
# (the guided script opens it alone; in a talking head, speech does); the smile then ramps on its change less
# k × the chin's opening travel. Measured where the jaw's widest is RANGE_SNR times its jitter (not FULL / 4: a
# ratio needs no wide jaw) on JAW_PULL_FRAMES frames or more.
# On the ICT performer's held-out clip smile R r 0.78 → 0.88 (k −0.52); Obama's enrollment −0.46 (Lily's shows too
# little jaw); the procedural performer, whose corners stay put, −0.06 (docs/BENCHMARKS.md, "tenth step").
JAW_PULL = "mouthSmile/jawOpen"
JAW_PULL_OPEN, JAW_PULL_FRAMES, JAW_PULL_MIN = 0.5, 10, -1.0


def _jitter(x: np.ndarray) -> float:
    """A series' own frame-to-frame noise: the robust spread of its consecutive changes, over √2 (each change holds
    two frames' noise). Real motion between kept frames only makes it larger: never a range shown by mistake."""
    return 1.4826 * float(np.median(np.abs(np.diff(x)))) / math.sqrt(2) if len(x) > 2 else math.inf


def expression_ranges(G: np.ndarray, eyes: list | None = None, neutral: dict | None = None,
                      rest_eyes: dict | None = None, prompted=None) -> dict[str, float]:
    """The performer's range {RANGED key: FULL} from consecutive frames of them: per key the RANGE_PERCENTILE of its
    measure's change from the neutral face over frames G [T,468,3] (both sides pooled; for eyeBlinkIris, of the
    closing of the iris-model aperture of `eyes`, FaceResult.eyes per frame), capped at GAINS' FULL; a key the clip
    did not show (see RANGE_SNR) is left out. With `prompted` ([T] the guided prompt key of each frame, "" for
    none), a key's percentile is taken over the frames of its prompt (RANGE_PROMPTS) when the clip has them. With the
    jaw seen, also the jaw's pull on the smile (JAW_PULL), and the smile's range is taken without it. The neutral:
    `neutral` (measures) and `rest_eyes` ({side: aperture}), e.g. a calibrated ExpressionEstimator's, else the
    clip's median face and apertures (an enrollment rests most)."""
    G = np.asarray(G, np.float64)
    found = np.isfinite(G).all((1, 2))
    if not found.any():
        return {}
    G, asked = G[found], None if prompted is None else np.asarray(prompted)[found]
    n = measures(np.median(G, 0)) if neutral is None else neutral
    frames = [measures(g) for g in G]
    pull = _jaw_pull(frames, n)
    series: dict[str, dict[str, list[float]]] = {key: {} for key in RANGED}
    for m in frames:
        for name, (key, x) in _drives(m, n, pull.get(JAW_PULL, 0.0)).items():
            if key in series:
                series[key].setdefault(name, []).append(x)
    where = {key: asked == step for key, step in RANGE_PROMPTS.items()             # each held expression's prompt
             if asked is not None and (asked == step).any()}
    seen = [e for e in (eyes or []) if e is not None]
    if seen:
        for side in SIDES:
            aperture = np.array([e[side]["aperture"] for e in seen], np.float64)
            rest = float(np.median(aperture)) if rest_eyes is None else float(rest_eyes[side])
            series["eyeBlinkIris"][side] = list(1.0 - aperture / max(rest, 1e-6))
    out = {key: full for key, by_name in series.items()
           if by_name and (full := _shown(key, by_name, where.get(key))) is not None}
    return {**out, **pull}


def _shown(key: str, by_name: dict[str, list[float]], where: np.ndarray | None = None) -> float | None:
    """A measure's FULL from its changes (per name, pooled) on the frames `where` [T] bool (None: all), when the clip
    showed it (RANGE_SNR against its jitter over all frames), else None."""
    pick = slice(None) if where is None else where
    reach = float(np.percentile(np.concatenate([np.asarray(x)[pick] for x in by_name.values()]), RANGE_PERCENTILE))
    jitter = float(np.median([_jitter(np.asarray(x)) for x in by_name.values()]))
    full = GAINS[key][1]
    return round(min(reach, full), 6) if reach >= full / RANGE_MAX_GAIN and reach >= RANGE_SNR * jitter else None


def _jaw_pull(frames: list[dict], n: dict) -> dict[str, float]:
    """{JAW_PULL: k} from the frames' measures, or {} when the jaw never opens, its widest is not RANGE_SNR times its
    jitter, or fewer than JAW_PULL_FRAMES frames open it past JAW_PULL_OPEN of that."""
    chin = np.array([m["chin"] - n["chin"] for m in frames])
    widest = float(np.percentile(chin, RANGE_PERCENTILE))
    open_ = np.flatnonzero(chin >= JAW_PULL_OPEN * widest)
    if not widest > 0 or widest < RANGE_SNR * _jitter(chin) or len(open_) < JAW_PULL_FRAMES:
        return {}
    smile = [x for t in open_ for key, x in _drives(frames[t], n).values() if key == "mouthSmile"]   # both sides
    k = float(np.median(smile) / np.median(chin[open_]))
    return {JAW_PULL: round(min(max(k, JAW_PULL_MIN), 0.0), 6)}


def check_ranges(ranges) -> dict[str, float]:
    """Stored ranges, checked: an object of RANGED keys, each a number in [FULL / RANGE_MAX_GAIN, FULL] of its
    GAINS entry, and JAW_PULL in [JAW_PULL_MIN, 0]. Returns them as floats; raises ValueError with a short reason."""
    if not isinstance(ranges, dict):
        raise ValueError("not an object")
    out = {}
    for key, full in ranges.items():
        if key == JAW_PULL:
            if isinstance(full, bool) or not isinstance(full, (int, float)) or not JAW_PULL_MIN <= full <= 0.0:
                raise ValueError(f"{key} must be a number in {JAW_PULL_MIN:g}..0")
            out[key] = float(full)
            continue
        if key not in RANGED:
            raise ValueError(f"unknown measure {str(key)[:40]!r}")
        top = GAINS[key][1]
        if isinstance(full, bool) or not isinstance(full, (int, float)) or not top / RANGE_MAX_GAIN <= full <= top:
            raise ValueError(f"{key} must be a number in {top / RANGE_MAX_GAIN:g}..{top:g}")
        out[key] = float(full)
    return out


def ranged_gains(ranges: dict[str, float] | None) -> dict[str, tuple[float, float]]:
    """GAINS with each ranged key's FULL replaced by the performer's and its START scaled alike (the dead zone
    keeps its share of the range)."""
    gains = dict(GAINS)
    for key, full in check_ranges(ranges or {}).items():
        if key == JAW_PULL:
            continue
        start, top = GAINS[key]
        gains[key] = (start * full / top, full)
    return gains


# Per-shape tuning limits: a gain past 4 or a dead zone past 0.9 only ever gives 0 or 1.
GAIN_RANGE, DEAD_ZONE_RANGE = (0.0, 4.0), (0.0, 0.9)
# The keys `measures` gives (a stored neutral must have all of them).
NEUTRAL_KEYS = frozenset(("chin", "lipGap", "lipZ", "lipX", "chinX") + tuple(
    f"{k}_{side}" for side in SIDES
    for k in ("aperture", "cornerUp", "cornerOut", "browInnerUp", "browOuterUp", "browInnerOut")))


def tune(values: dict[str, float], gains: dict[str, float] | None = None,
         dead_zones: dict[str, float] | None = None) -> dict[str, float]:
    """Per-shape dead zone then gain: a value at or below its dead zone d reads 0, the rest is rescaled
    (v − d) / (1 − d) so 1 stays reachable, times the gain, clipped to [0, 1]. Names without an entry (and
    names not in `values`) are left as they are; a new dict is returned."""
    out = dict(values)
    gains, dead_zones = gains or {}, dead_zones or {}
    for name in set(gains) | set(dead_zones):
        if name not in out:
            continue
        d = float(np.clip(dead_zones.get(name, 0.0), *DEAD_ZONE_RANGE))
        v = max(float(out[name]) - d, 0.0) / (1.0 - d)
        out[name] = float(np.clip(v * float(gains.get(name, 1.0)), 0.0, 1.0))
    return out


def check_neutral(state) -> dict:
    """A neutral calibration as stored (`neutral_state()`), checked: {"measures": {key: float} with exactly the
    keys `measures` gives, "eyes": {side: {"aperture": float > 0, "offset": [dx, dy]}}}. Returns it normalised
    (floats, offsets as tuples); raises ValueError with a short reason."""
    if not isinstance(state, dict):
        raise ValueError("not an object")
    m = state.get("measures")
    if not isinstance(m, dict) or set(m) != NEUTRAL_KEYS:
        raise ValueError("measures missing or incomplete")
    out = {"measures": {k: _finite(v, f"measures.{k}", 10.0) for k, v in m.items()}, "eyes": {}}
    if min(out["measures"]["aperture_left"], out["measures"]["aperture_right"]) <= 0:
        raise ValueError("a closed eye cannot be the neutral face")
    eyes = state.get("eyes")
    if not isinstance(eyes, dict):
        raise ValueError("eyes missing")
    for side in SIDES:
        e = eyes.get(side)
        if not isinstance(e, dict) or not isinstance(e.get("offset"), (list, tuple)) or len(e["offset"]) != 2:
            raise ValueError(f"eyes.{side} malformed")
        aperture = _finite(e.get("aperture"), f"eyes.{side}.aperture", 2.0)
        if aperture <= 0:
            raise ValueError(f"eyes.{side}.aperture must be > 0")
        out["eyes"][side] = {"aperture": aperture,
                             "offset": tuple(_finite(v, f"eyes.{side}.offset", 1.0) for v in e["offset"])}
    return out


def _finite(value, what: str, bound: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= bound:
        raise ValueError(f"{what} is not a number within ±{bound:g}")
    return float(value)


class ExpressionEstimator:
    """G [468,3] → {ARKit name: value in [0, 1]} for all 52 names, relative to a calibrated neutral face."""

    def __init__(self, neutral_G: np.ndarray | None = None, ranges: dict[str, float] | None = None):
        if neutral_G is None:
            from engine import canonical  # the mean resting face until the performer calibrates

            neutral_G = canonical.load()[0]
        self._default_G = np.asarray(neutral_G)
        self.calibrate(neutral_G)
        self.set_ranges(ranges)

    def set_ranges(self, ranges: dict[str, float] | None) -> None:
        """Ramp to the performer's own range (a package's `expression_ranges`, with the jaw's pull on their smile),
        or GAINS' average face (None)."""
        ranges = check_ranges(ranges or {})
        self.gains = ranged_gains(ranges)
        self.jaw_pull = ranges.get(JAW_PULL, 0.0)

    def reset_neutral(self) -> None:
        """Back to the face given at construction (the canonical one by default): forget a calibration."""
        self.calibrate(self._default_G)

    def neutral_state(self) -> dict:
        """The calibrated neutral as plain JSON-able data (see `check_neutral`)."""
        return {"measures": dict(self.neutral),
                "eyes": {s: {"aperture": e["aperture"], "offset": list(e["offset"])}
                         for s, e in self.neutral_eyes.items()}}

    def set_neutral_state(self, state) -> None:
        """Restore a neutral saved by `neutral_state()`; ValueError (nothing changed) when it is malformed."""
        state = check_neutral(state)
        self.neutral, self.neutral_eyes = state["measures"], state["eyes"]
        self._held = {}
        self.last_gaze = None

    def calibrate(self, G: np.ndarray, eyes: dict | None = None) -> None:
        """Take G (the performer at rest, looking at the camera) as the face that reads all zeros; with `eyes`
        (FaceResult.eyes of the same frame) also its iris-model lid aperture and gaze."""
        self.neutral = measures(G)
        self.neutral_eyes = {side: dict(NEUTRAL_EYE) for side in SIDES}
        if eyes is not None:
            for side in SIDES:
                self.neutral_eyes[side] = {"aperture": float(eyes[side]["aperture"]),
                                           "offset": tuple(float(v) for v in eyes[side]["offset"])}
        self._held: dict[str, tuple[float, float]] = {}
        self.last_gaze: dict | None = None

    def calibrate_eyes(self, apertures: dict[str, float], offsets: dict[str, tuple[float, float]]) -> None:
        """Set the neutral iris-model measures directly (e.g. medians over a clip): {side: aperture},
        {side: (dx, dy)}."""
        for side in SIDES:
            self.neutral_eyes[side] = {"aperture": float(apertures[side]),
                                       "offset": tuple(float(v) for v in offsets[side])}

    def blinks(self, eyes: dict) -> dict[str, float]:
        """eyeBlink* and eyeWide* from the iris model's lid aperture relative to the neutral one."""
        out = {}
        for side in SIDES:
            S = side.capitalize()
            closed = 1.0 - float(eyes[side]["aperture"]) / max(self.neutral_eyes[side]["aperture"], 1e-6)
            out[f"eyeBlink{S}"] = _ramp(closed, "eyeBlinkIris", self.gains)
            out[f"eyeWide{S}"] = _ramp(-closed, "eyeWideIris", self.gains)
        return out

    def gaze(self, eyes: dict, blinks: dict[str, float] | None = None) -> dict[str, tuple[float, float]]:
        """Per eye (yaw, pitch) in radians relative to the neutral gaze, in app.senders' convention (yaw > 0
        towards the subject's right, pitch > 0 down). An eye whose eyeBlink (in `blinks`) is past GAZE_HOLD_BLINK
        keeps the gaze it had before (its iris is hidden)."""
        from engine.eyes import gaze_angles

        out = {}
        for side in SIDES:
            closing = blinks is not None and blinks[f"eyeBlink{side.capitalize()}"] > GAZE_HOLD_BLINK
            if closing and side in self._held:
                out[side] = self._held[side]
                continue
            (dx, dy), (nx, ny) = eyes[side]["offset"], self.neutral_eyes[side]["offset"]
            out[side] = self._held[side] = gaze_angles(dx - nx, dy - ny, side)
        return out

    def __call__(self, G: np.ndarray, eyes: dict | None = None) -> dict[str, float]:
        """All 52 ARKit values for G; with `eyes` (FaceResult.eyes) blinks and eyeLook* come from the iris model,
        and `last_gaze` holds the gaze they were read from (else None)."""
        values = dict.fromkeys(ARKIT_NAMES, 0.0)
        values.update(_activations(measures(G), self.neutral, self.gains, self.jaw_pull))
        self.last_gaze = None
        if eyes is not None:
            values.update(self.blinks(eyes))
            self.last_gaze = self.gaze(eyes, values)
            values.update(look_values(self.last_gaze))
        return values


def look_values(gaze: dict[str, tuple[float, float]]) -> dict[str, float]:
    """The eight eyeLook* values from per-eye (yaw, pitch) (app.senders' convention). ARKit: eyeLookIn is towards
    the nose, eyeLookOut away from it; the left eye looks in when it turns towards the subject's right (yaw > 0),
    the right eye when it turns towards the subject's left."""
    out = {}
    for side in SIDES:
        S = side.capitalize()
        yaw, pitch = gaze[side]
        inward = yaw if side == "left" else -yaw
        out[f"eyeLookIn{S}"] = _ramp(inward, "eyeLookH")
        out[f"eyeLookOut{S}"] = _ramp(-inward, "eyeLookH")
        out[f"eyeLookDown{S}"] = _ramp(pitch, "eyeLookV")
        out[f"eyeLookUp{S}"] = _ramp(-pitch, "eyeLookV")
    return out


# ---------------------------------------------------------------- VRM 0.x standard expressions
# VRM 0.x BlendShapePreset names, spelled as VRM defines them (EVMC4U matches /VMC/Ext/Blend/Val names to a
# model's clips case-insensitively, so this spelling also reaches receivers that upper-case them).
VRM_NAMES = ("Blink", "Blink_L", "Blink_R", "A", "I", "U", "E", "O", "Joy", "Angry", "Sorrow", "Fun", "Surprised")

# How `vrm_expressions` derives each one from the ARKit values (all in [0, 1]; a missing name reads 0).
# VRM's clips add up on the avatar's blendshapes, so overlapping presets are split rather than stacked:
# a smile with closed eyes is Joy (VRM's Joy usually closes the eyes itself), the rest of the closure is
# Blink, and what one eye closes beyond the other is Blink_L / Blink_R. VRM's Blink_L closes the avatar's
# left eye, which is the subject's left, like ARKit's eyeBlinkLeft (no mirroring here).
#   smile  = mean(mouthSmileLeft, mouthSmileRight)       both   = min(eyeBlinkLeft, eyeBlinkRight)
#   spread = mean(mouthStretchLeft, mouthStretchRight)   round  = max(mouthFunnel, mouthPucker)
#   outer  = mean(browOuterUpLeft, browOuterUpRight)     wide   = mean(eyeWideLeft, eyeWideRight)
VRM_MAPPING = {
    "Blink": "both · (1 − smile)",
    "Blink_L": "eyeBlinkLeft − both",
    "Blink_R": "eyeBlinkRight − both",
    "A": "jawOpen · (1 − round) · (1 − spread)",
    "I": "spread · (1 − jawOpen)",
    "U": "mouthPucker",
    "E": "spread · jawOpen · (1 − round)",
    "O": "mouthFunnel",
    "Joy": "smile · both",
    "Angry": "mean(browDownLeft, browDownRight)",
    "Sorrow": "0.5 · mean(mouthFrownLeft, mouthFrownRight) + 0.5 · browInnerUp · (1 − outer)",
    "Fun": "smile · (1 − both)",
    "Surprised": "outer · (0.5 + 0.5 · max(jawOpen, wide))",
}


def vrm_expressions(arkit) -> dict[str, float]:
    """{ARKit name: value} → {VRM 0.x preset: value in [0, 1]} by the VRM_MAPPING table, in VRM_NAMES order."""
    def a(name: str) -> float:
        return float(np.clip(arkit.get(name, 0.0), 0.0, 1.0))

    def mean(name: str) -> float:
        return 0.5 * (a(name + "Left") + a(name + "Right"))

    smile, spread, outer, wide = mean("mouthSmile"), mean("mouthStretch"), mean("browOuterUp"), mean("eyeWide")
    both = min(a("eyeBlinkLeft"), a("eyeBlinkRight"))
    rounded = max(a("mouthFunnel"), a("mouthPucker"))
    jaw = a("jawOpen")
    values = {
        "Blink": both * (1.0 - smile),
        "Blink_L": a("eyeBlinkLeft") - both,
        "Blink_R": a("eyeBlinkRight") - both,
        "A": jaw * (1.0 - rounded) * (1.0 - spread),
        "I": spread * (1.0 - jaw),
        "U": a("mouthPucker"),
        "E": spread * jaw * (1.0 - rounded),
        "O": a("mouthFunnel"),
        "Joy": smile * both,
        "Angry": mean("browDown"),
        "Sorrow": 0.5 * mean("mouthFrown") + 0.5 * a("browInnerUp") * (1.0 - outer),
        "Fun": smile * (1.0 - both),
        "Surprised": outer * (0.5 + 0.5 * max(jaw, wide)),
    }
    return {name: float(np.clip(values[name], 0.0, 1.0)) for name in VRM_NAMES}
