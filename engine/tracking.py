"""The one tracking loop (torch-free): detect → crop → model → back to the frame, as MediaPipe's face landmarker.

Every tracker in the project is this loop with a model plugged in, so what enrollment labels, what `eval`
scores, what `track`/`bench`/`demo` time and what the studio shows all come out of the same code:

    FaceLoop(model, TrackOptions()) (frame_rgb) → FaceResult | None

A *crop model* sees one square crop and says where the face is in it (`CropModel`): the landmark teacher
(engine.teacher.TeacherModel), a torch run folder (engine.i2znet.RunModel), a performer package on any backend
(export.runtime.PackageModel). The loop detects at the start and after a loss, otherwise crops from the previous
frame's head pose, and maps the model's crop-pixel output to frame pixels. A *frame model* (`owns_loop = True`)
runs a tracking loop of its own that we cannot open, MediaPipe's baselines (engine.baselines): the loop hands it
the frame and only counts time, so its numbers are its own.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine import canonical, pose, view_bias
from engine.detection import Crop, Detection, crop_from_detection, crop_from_landmarks
from engine.flow import LandmarkFlow

REDETECT = ("on_loss", "every_frame")
# refit's Gauss-Newton steps for H alone (a package without an expression basis), from the network's H, which starts
# near the minimum: two score as the converged damped fit does (sample's clip: 3.16 % of the eye distance from the
# true points either way; one step: 3.19 %) at a third of its cost (it runs on every frame of the live path).
REFIT_STEPS = 2
# With an expression basis, one joint Gauss-Newton step (pose and expression) from the network's answer: on the
# flow-fused landmarks as good as a pose step before it (Obama's held-out clip: NME 2.789 vs 2.790 %, unguarded
# 0.836 vs 0.837 × MediaPipe's; ICT performer: jaw r 0.71 vs 0.72), for 0.13 ms less a frame.
JOINT_STEPS = 1
# ρ of the expression refit's prior, px² of a 256² crop per σ²: how much of the network's own answer it keeps. 10 over 3: on the
# synthetic performers jaw r 0.53 → 0.57 (ICT: 0.69 → 0.76), smile R 0.10 → 0.30 (0.38 → 0.47), unguarded stability
# 1.594 → 1.539 (1.542 → 1.517); real clips within ±0.02 NME, motion ratio 0.83–0.91 (docs/BENCHMARKS.md).
REFIT_PRIOR = 10.0
REFIT_PRIOR_CROP = 256     # the crop size ρ and λ are stated for: a model answering in other crop pixels scales them
# λ, px² per cm² of a 256² crop: how much the refit keeps of the network's own chin height (the canonical y of the
# chin's points, CHIN_POINTS), where the teacher is least reliable: off its training domain its 2D chin, a point on
# the face's silhouette, hardly moves for an open jaw (on the ICT performer's widest, not at all), while the
# person's network reads the jaw (r 0.88–0.97 alone). 2000 (each chin point's height weighs about as much as 15
# teacher landmarks would at the crop's ~11 px/cm): synthetic performers' jaw r 0.56 → 0.84 and 0.72 → 0.89, smile R
# 0.25 → 0.51, non-rigid error 0.880 → 0.827 × MediaPipe's; on ten real clips NME, stability and motion within
# ±0.02 points, ±2 % and −0.04 (docs/BENCHMARKS.md, "Issue #11, seventh step").
REFIT_CHIN = 2000.0
CHIN_POINTS = (152, 148, 176, 377, 400)
# τ, px² per cm² of a 256² crop: a temporal prior τ‖c − c_{t−1}‖² on the refit's coefficients, centred on the last
# frame's shape (a random walk: the face moves little between frames, the network's G jitters more). What it
# steadies is the network's per-frame jitter, which the landmarks' flow cannot reach. 20: common-guard stability
# 0.884 → 0.861 × MediaPipe's (Obama), 0.801 → 0.747 (Lily), 0.78/0.80 → 0.73/0.75 (synthetic performers), their
# motion against the truth −0.004 and expression r within ±0.02; it lags the ARKit values by under half a frame
# (pucker 0.33–0.43, others 0.1–0.24) (docs/BENCHMARKS.md, "Issue #11, eighth step").
REFIT_TEMPORAL = 20.0


@dataclass(frozen=True)
class TrackOptions:
    """How the loop finds and follows a face (MediaPipe's FaceLandmarkerOptions, for one face)."""
    min_presence: float = 0.5      # the model's face flag below this is a lost face: re-detect
    redetect: str = "on_loss"      # on_loss: MediaPipe's tracking mode; every_frame: detect on every frame
    # After a detection, run the model again on a crop framed from its own head pose (crop_from_pose), so the first
    # frame is framed like every later one (BlazeFace's box is tighter than the landmark box).
    recrop: bool = True
    # Eyelids and gaze from the model's iris graph when it has one (two 64² eye crops a frame: on a 2-core CPU
    # about the tracker's own time again; off falls back to the mesh's lids for blinks and gives no gaze).
    eyes: bool = True
    # A dead band, as a share of the crop's size, on how the crop follows the head (centre, size and angle, `held`):
    # the crop then stops chasing the model's own jitter, which it fed back into it, and still follows a moving face
    # smoothly. 0: a new crop every frame, as MediaPipe's FaceMesh makes. The crop only frames the pixels; it does
    # not smooth the answer. 2 % lagged a head that never stops enough to blur the jaw (ICT
    # synthetic performer: the teacher's jaw r 0.72 → 0.16); 1 % keeps it and most of the stability.
    roi_hold: float = 0.01
    # w of engine.flow: how much the landmarks a refitting model (a performer package) is fitted to lean on where
    # this frame's optical flow carries the previous frame's (0: the teacher's alone). A motion enters through the
    # flow on the frame it happens, so nothing lags: 1 takes unguarded stability from 0.92 to 0.84 × MediaPipe's on
    # Obama's held-out clip and from 0.88 to 0.72 on the synthetic performer, with NME a little lower and motion and
    # expression r as they were (docs/BENCHMARKS.md, session 5); 2 is no steadier and reads the ICT jaw worse.
    flow: float = 1.0

    def __post_init__(self):
        if self.redetect not in REDETECT:
            raise ValueError(f"redetect must be one of {REDETECT}, got {self.redetect!r}")
        if not 0.0 <= self.roi_hold < 0.25:
            raise ValueError(f"roi_hold must be in [0, 0.25), got {self.roi_hold}")
        if not 0.0 <= self.flow <= 100.0:
            raise ValueError(f"flow must be in [0, 100], got {self.flow}")
        if not 0.0 <= self.min_presence <= 1.0:
            raise ValueError(f"min_presence must be in [0, 1], got {self.min_presence}")


@dataclass
class CropOutput:
    """A crop model's answer for one crop, in that crop's pixels."""
    points: np.ndarray               # [468, 2] where the face's 468 vertices land in the crop
    presence: float                  # face flag in [0, 1]
    G: np.ndarray                    # [468, 3] canonical head frame, cm (rigid motion removed)
    H: np.ndarray                    # [6] pose (f, rx, ry, rz, tx, ty) in crop pixels
    z: np.ndarray | None = None      # [128] DAM latent, for models that have one
    landmarks: np.ndarray | None = None   # [468, 2|3] the teacher's landmarks in crop pixels, when it ran


@dataclass
class FaceResult:
    """One tracked frame, whoever tracked it. Frame pixels unless named otherwise."""
    G: np.ndarray                    # [468, 3] canonical head frame, cm
    points: np.ndarray               # [468, 2] frame pixels
    H: np.ndarray                    # [6] pose in frame pixels: points = pose.project(G, H), plus the view
                                     # bias of a package that has one (engine.view_bias)
    z: np.ndarray | None = None      # [128] DAM latent (package and run models)
    presence: float = 1.0
    stages_ms: dict = field(default_factory=dict)   # detect, crop, tracker (model) in ms
    crop: Crop | None = None         # the crop the model saw
    H_crop: np.ndarray | None = None # H in the crop's pixels (what the model output)
    landmarks: np.ndarray | None = None   # [468, 2|3] teacher landmarks in crop pixels (enrollment, eye crops)
    image: np.ndarray | None = None  # the crop image the model saw (enrollment keeps it)
    expressions: dict | None = None  # ARKit values the tracker supplies itself (a replayed session, Face Landmarker)
    eyes: dict | None = None         # {"left"|"right": aperture, gaze (yaw, pitch) rad, contour [71,2], iris [5,2]}
                                     # from a model with an iris graph (engine.eyes.eye_results), else None


class CropModel(Protocol):
    name: str            # what it is: "package", "run", "teacher"
    backend: str         # what runs it, in words
    crop_size: int

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]: ...

    def __call__(self, crop_rgb: np.ndarray) -> CropOutput: ...


def frame_pose(H_crop: np.ndarray, crop: Crop, crop_size: int) -> np.ndarray:
    """H in crop pixels → H in frame pixels. The crop is a turn by its angle, a scale and a shift: f scales, the
    translation maps like a point, and the roll gains the crop's angle (Rz(a)·Rz(rz)·Ry·Rx, see pose.rotation_matrix)."""
    t = crop.to_frame(np.asarray(H_crop[4:6], np.float64), crop_size)
    return np.array([H_crop[0] * crop.size / crop_size, H_crop[1], H_crop[2], H_crop[3] + crop.angle, *t])


class ExpressionBasis:
    """A person model's expression subspace (engine.dam.expression_basis): unit directions B [K,468,3] of its
    decoded geometry and the enrollment's std σ [K] (cm) along each, laid out once for the per-frame refit of a model
    answering in `crop_size` pixels; with `view`, the teacher's view bias (D, limits) to remove (engine.view_bias)."""

    def __init__(self, directions: np.ndarray, std: np.ndarray, crop_size: int = REFIT_PRIOR_CROP,
                 view: tuple[np.ndarray, np.ndarray] | None = None):
        self.view = None if view is None else tuple(np.asarray(a, np.float64) for a in view)   # engine.view_bias
        self.axis_first = np.ascontiguousarray(np.asarray(directions, np.float64).transpose(2, 1, 0))   # [3,468,K]
        # The prior's precision on the coefficients c [K,K], against residuals in crop pixels: ρ/σ_k² on each, and
        # λ on the chin height they add, Σ_v (B_v,y·c)² (REFIT_PRIOR, REFIT_CHIN, stated for a 256² crop); with
        # the last frame's shape known, τ on the change since then too (REFIT_TEMPORAL): `following`.
        scale2 = (crop_size / REFIT_PRIOR_CROP) ** 2
        chin_y = self.axis_first[1, list(CHIN_POINTS)]                                    # [5,K]
        self.precision = scale2 * (np.diag(REFIT_PRIOR / np.asarray(std, np.float64) ** 2)
                                   + REFIT_CHIN * chin_y.T @ chin_y)
        temporal = scale2 * REFIT_TEMPORAL
        self.following = self.precision + temporal * np.eye(len(self.precision))
        # [K,3·468]: μ of the prior (c − μ)ᵀ·following·(c − μ) = cᵀ·precision·c + τ‖c − m‖² + const from a shape
        # change laid out as G.T.ravel(), m its coefficients by least squares (a package's directions are checked
        # for unit norm, not for being orthogonal): one matrix, so a frame pays one product
        coefficients = np.linalg.pinv(self.axis_first.reshape(-1, self.axis_first.shape[-1]))
        self._mean_of_change = np.linalg.solve(self.following, temporal * coefficients)

    def prior_mean(self, G: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """μ [K] of the `following` prior: the last frame's shape `previous` [468,3] in the basis, from this frame's
        network shape G [468,3]."""
        return self._mean_of_change @ (np.asarray(previous, np.float64) - G).T.ravel()


def refit(out: CropOutput, basis: ExpressionBasis | None = None, previous: np.ndarray | None = None) -> CropOutput:
    """L_FLRC of adaptation solved per frame at run time: H, and with a basis the expression too, refit so that the
    model's mesh reprojects onto the frozen teacher's landmarks (Gauss-Newton from the network's answer).

    H alone: the person model's H head was the larger part of its 2D error (sample's held-out clip: NME 4.66 → 4.31 %,
    pose error 9.0° → 6.0°). The expression: on a new environment I2ZNet's z holds 0.6–0.65 of the face's motion
    (its latent shrinks towards the enrollment mean), though the DAM's subspace holds the motion (a best fit keeps
    0.92); G + Σ c_k·B_k with the prior ‖c_k/σ_k‖²·ρ on the coefficients brings it back (docs/BENCHMARKS.md), save
    the chin's height, which the network reads better than the teacher (REFIT_CHIN). `previous`: the last frame's
    G [468,3] of the same face, which the expression then stays near (REFIT_TEMPORAL). z is the network's (the
    texture is decoded from it).
    With the basis' view bias D (engine.view_bias) the fit is the same, of the shape as the teacher sees it; the G
    returned is that shape less D at the network's pose, and the points stay the fitted shape's (where the teacher
    sees the face)."""
    y = np.asarray(out.landmarks)[:, :2]
    G = np.asarray(out.G, np.float64)
    if basis is None:
        H = pose.gauss_newton(G, y, out.H, REFIT_STEPS)
        return CropOutput(points=pose.project(G, H), presence=out.presence, G=G, H=H, z=out.z, landmarks=out.landmarks)
    seen = 0.0 if basis.view is None else view_bias.bias(*basis.view, out.H)
    precision, mean = ((basis.precision, None) if previous is None
                       else (basis.following, basis.prior_mean(G - seen, previous)))
    H, c = pose.gauss_newton_expression(G, y, out.H, basis.axis_first, precision, JOINT_STEPS, mean)
    G = G + (basis.axis_first @ c).T
    return CropOutput(points=pose.project(G, H), presence=out.presence, G=G - seen, H=H, z=out.z,
                      landmarks=out.landmarks)


def crop_from_pose(H: np.ndarray) -> Crop:
    """MediaPipe's landmark rule on the mean face placed by the head pose H (frame pixels): the crop follows the head,
    not the expression (an open jaw no longer grows it), nor the jitter of the few contour points that make a
    landmark box. Obama's held-out clip, the teacher in our loop: NME 2.85 → 2.75 % (MediaPipe 2.89)."""
    return crop_from_landmarks(pose.project(_mean_face(), H))


@functools.cache
def _mean_face() -> np.ndarray:
    return canonical.load()[0].astype(np.float64)


def held(previous: Crop, new: Crop, hold: float) -> Crop:
    """The crop moved from `previous` towards `new` by what exceeds a dead band of hold·size in centre (x, y) and
    size, and of `hold` radians in angle (a turn that moves the crop's edge midpoints by hold·size/2)
    (TrackOptions.roi_hold): the model's own jitter no longer moves it, a moving face moves it smoothly."""
    band = hold * previous.size

    def past(a: float, d: float, width: float) -> float:
        return a + math.copysign(max(abs(d) - width, 0.0), d)

    turn = math.remainder(new.angle - previous.angle, math.tau)      # the short way round
    return Crop(past(previous.cx, new.cx - previous.cx, band), past(previous.cy, new.cy - previous.cy, band),
                past(previous.size, new.size - previous.size, band), past(previous.angle, turn, hold))


def largest(faces: list[Detection]) -> Detection:
    """The performer is the face nearest the camera: the largest box."""
    return max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))


class FaceLoop:
    """The loop around one model. Counters: `detections` (detector runs), `several_faces` (frames where the
    detector saw more than one face; the largest is tracked)."""

    def __init__(self, model, options: TrackOptions | None = None):
        self.model = model
        self.options = options or TrackOptions()
        self.detections = self.several_faces = 0
        self._crop: Crop | None = None
        self._flow = LandmarkFlow(self.options.flow, model.crop_size) if getattr(model, "refit_pose", False) else None
        self._previous_G: np.ndarray | None = None     # the last frame's answer, which the refit stays near

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def backend(self) -> str:
        return self.model.backend

    @property
    def flow_weight(self) -> float | None:
        """w of the landmarks' flow fusion (engine.flow), or None for a model the loop does not refit."""
        return None if self._flow is None else self._flow.weight

    def reset(self) -> None:
        """Forget the face (a new clip, or a seek): the next frame starts with a detection."""
        self._crop = self._previous_G = None
        if self._flow is not None:
            self._flow.reset()
        if hasattr(self.model, "reset"):
            self.model.reset()

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return self.model.detect(frame)

    def __call__(self, frame: np.ndarray) -> FaceResult | None:
        if getattr(self.model, "owns_loop", False):
            t0 = time.perf_counter()
            result = self.model.track(frame)
            if result is not None:
                result.stages_ms["tracker"] = 1000 * (time.perf_counter() - t0)
            return result
        stages: dict = {}
        if self._crop is not None and self.options.redetect == "on_loss":
            result = self._run(frame, self._crop, stages)
            if result is not None:
                self._crop = held(self._crop, crop_from_pose(result.H), self.options.roi_hold)
                return self._eyes(frame, self._kept(result))
        t0 = time.perf_counter()
        faces = self.model.detect(frame)
        stages["detect"] = 1000 * (time.perf_counter() - t0)
        self.detections += 1
        self.several_faces += len(faces) > 1
        self._crop = self._previous_G = None
        if self._flow is not None:
            self._flow.reset()          # a new face, or the same one after a jump: nothing to follow it from
        if not faces:
            return None
        result = self._run(frame, crop_from_detection(largest(faces)), stages)
        if result is not None and self.options.recrop:
            result = self._run(frame, crop_from_pose(result.H), stages) or result
        if result is None:
            return None
        self._crop = crop_from_pose(result.H)
        return self._eyes(frame, self._kept(result))

    def _kept(self, result: FaceResult) -> FaceResult:
        """The frame's final answer is the one the next frame's flow and refit start from."""
        if self._flow is not None:
            self._flow.keep()
            self._previous_G = result.G
        return result

    def _run(self, frame: np.ndarray, crop: Crop, stages: dict) -> FaceResult | None:
        size = self.model.crop_size
        t0 = time.perf_counter()
        image = crop.apply(frame, size)
        t1 = time.perf_counter()
        if self._flow is not None:
            self._flow.follow(image, crop)
        out = self.model(image)
        if self._flow is not None and out.landmarks is not None:
            out.landmarks = self._flow.fuse(out.landmarks)
            out = refit(out, getattr(self.model, "expression_basis", None), self._previous_G)
        t2 = time.perf_counter()
        stages["crop"] = stages.get("crop", 0.0) + 1000 * (t1 - t0)
        stages["tracker"] = stages.get("tracker", 0.0) + 1000 * (t2 - t1)
        if out.presence < self.options.min_presence:
            return None
        H_crop = np.asarray(out.H, np.float64)
        return FaceResult(G=out.G, points=crop.to_frame(out.points, size), H=frame_pose(H_crop, crop, size),
                          z=out.z, presence=float(out.presence), stages_ms=stages, crop=crop, H_crop=H_crop,
                          landmarks=out.landmarks, image=image)

    def _eyes(self, frame: np.ndarray, result: FaceResult) -> FaceResult:
        """Eyelids and gaze for the frame's final result (once, not per re-crop), from a model with an iris graph:
        two 64² eye crops placed by the teacher's landmarks where the model has them (accurate on any face, as
        MediaPipe places its iris crops), else by the mesh's points."""
        if not self.options.eyes or not hasattr(self.model, "eyes"):
            return result
        t0 = time.perf_counter()
        where = result.points if result.landmarks is None else result.crop.to_frame(result.landmarks,
                                                                                      self.model.crop_size)
        result.eyes = self.model.eyes(frame, where)
        if result.eyes is not None:
            result.stages_ms["eyes"] = 1000 * (time.perf_counter() - t0)
        return result
