"""The peers we measure ourselves against, as frame models of the one tracking loop (engine.tracking): each runs
MediaPipe's own detect-and-track loop inside (which we cannot open), so the loop only hands it frames.

    mediapipe        MediaPipe FaceMesh (the legacy solution, 468 points, tracking mode): the teacher as MediaPipe
                     ships it; G by 3D Procrustes onto the canonical shape. With `iris` (what `facetrack eval` opens
                     when the ground truth has gaze): refine_landmarks=True, 478 points, the last 10 on the irises,
                     read into FaceResult.eyes by `iris_eyes` the way engine.eyes reads our iris model's
    facelandmarker   MediaPipe Face Landmarker v2 (Tasks API, 478 points + 52 learned ARKit blendshapes): the
                     expression anchor avatar apps use today. Evaluation only: its .task bundle is on no package
                     index, so the product cannot ship it (FACELANDMARKER_TASK, or $FACETRACK_FACELANDMARKER).

Torch-free; mediapipe==0.10.14 is imported only when a baseline is opened.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine import canonical, pose
from engine.errors import UserError
from engine.tracking import FaceResult

BASELINES = ("mediapipe", "facelandmarker")
IRIS_CENTRE = {"right": 468, "left": 473}   # refined FaceMesh: each iris's centre, then its 4 edge points
FACELANDMARKER_TASK = Path(__file__).resolve().parents[2] / "shared/data/models/mediapipe/face_landmarker.task"


def _mediapipe():
    try:
        import mediapipe as mp
    except ImportError as err:
        raise UserError(f"the MediaPipe baselines need mediapipe==0.10.14 ({err})") from None
    return mp


def _result(Y: np.ndarray, X: np.ndarray, refine: bool, expressions: dict | None = None,
            eyes: dict | None = None) -> FaceResult:
    """Landmarks Y [468,3] in frame pixels (z scaled like x) → the loop's result, G fitted to the canonical shape."""
    H, G = (pose.fit if refine else pose.pose_from_landmarks)(X, Y)
    return FaceResult(G=G, points=Y[:, :2], H=H, expressions=expressions, eyes=eyes)


def iris_eyes(Y: np.ndarray) -> dict:
    """FaceResult.eyes from refined FaceMesh points Y [478, ≥2] (frame pixels), in engine.eyes.eye_state's terms:
    the iris centre's offset from the eye corners' midpoint in eye widths, along the corner line (towards the nose)
    and across it (down), turned into (yaw, pitch) by the same gaze_angles; the lid aperture from the mesh's lid
    pairs (export.expressions.LID_PAIRS) over the eye width."""
    from engine.eyes import CORNERS, EYES, gaze_angles
    from export.expressions import LID_PAIRS

    Y = np.asarray(Y, np.float64)[:, :2]
    out = {}
    for eye in EYES:
        a, b = Y[list(CORNERS[eye])]                      # the image-left and image-right corners
        width = max(float(np.linalg.norm(b - a)), 1e-6)
        right = (b - a) / width
        along = right if eye == "right" else -right       # towards the nose (the right eye's inner corner is 133)
        down = np.array([-right[1], right[0]])
        offset = Y[IRIS_CENTRE[eye]] - (a + b) / 2
        dx, dy = float(offset @ along) / width, float(offset @ down) / width
        aperture = float(np.mean([(Y[lo] - Y[up]) @ down for up, lo in LID_PAIRS[eye]])) / width
        iris = Y[IRIS_CENTRE[eye]:IRIS_CENTRE[eye] + 5].astype(np.float32)
        out[eye] = {"aperture": aperture, "gaze": gaze_angles(dx, dy, eye), "offset": (dx, dy), "iris": iris}
    return out


class MediaPipeFaceMesh:
    """Raw MediaPipe FaceMesh in tracking mode (what our teacher port reproduces inside our own loop)."""

    name = "mediapipe"
    owns_loop = True

    def __init__(self, refine: bool = False, iris: bool = False):
        # refine=False: G by 3D Procrustes, the convention the project's reference numbers were measured with;
        # refine=True: pose.fit like the teacher model (reads ~0.025 lower stability on the dev clips).
        # iris: MediaPipe's refine_landmarks graph (attention mesh + irises); off by default, so the reference
        # numbers stay those of the plain 468-point graph.
        self._mp, self.refine, self.iris = _mediapipe(), refine, iris
        graph = ", refine_landmarks (irises)" if iris else ""
        self.backend = f"mediapipe {self._mp.__version__} FaceMesh{graph} (TFLite, CPU)"
        self._X = canonical.load()[0].astype(np.float64)
        self._mesh = None
        self.reset()

    def reset(self) -> None:
        self.close()
        self._mesh = self._mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=self.iris,
                                                           max_num_faces=1)

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def track(self, frame_rgb: np.ndarray) -> FaceResult | None:
        h, w = frame_rgb.shape[:2]
        res = self._mesh.process(frame_rgb)
        if not res.multi_face_landmarks:
            return None
        # z is normalised by the image width, like x: scale it by w so Y is isotropic (frame pixels).
        Y = np.array([(p.x * w, p.y * h, p.z * w) for p in res.multi_face_landmarks[0].landmark])
        return _result(Y[:468], self._X, self.refine, eyes=iris_eyes(Y) if self.iris else None)


class FaceLandmarkerV2:
    """MediaPipe Face Landmarker v2 in VIDEO mode; `expressions` holds its own 52 blendshapes (ARKit names)."""

    name = "facelandmarker"
    owns_loop = True

    def __init__(self, task: str | Path | None = None, fps: float = 30.0):
        self._mp = _mediapipe()
        self.task = Path(task or os.environ.get("FACETRACK_FACELANDMARKER") or FACELANDMARKER_TASK)
        if not self.task.is_file():
            raise UserError(f"{self.task}: Face Landmarker model bundle not found (set FACETRACK_FACELANDMARKER)")
        self.backend = f"mediapipe {self._mp.__version__} Face Landmarker v2 (Tasks API, CPU)"
        self.fps = fps
        self._X = canonical.load()[0].astype(np.float64)
        self._graph = None
        self.reset()

    def reset(self) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self.close()
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(self.task)),
                                               running_mode=vision.RunningMode.VIDEO, num_faces=1,
                                               output_face_blendshapes=True)
        self._graph = vision.FaceLandmarker.create_from_options(options)
        self._index = 0

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def track(self, frame_rgb: np.ndarray) -> FaceResult | None:
        h, w = frame_rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame_rgb))
        # VIDEO mode wants increasing timestamps: the clip's own frame times.
        res = self._graph.detect_for_video(image, int(round(self._index * 1000 / self.fps)))
        self._index += 1
        if not res.face_landmarks:
            return None
        Y = np.array([(p.x * w, p.y * h, p.z * w) for p in res.face_landmarks[0][:468]])
        shapes = {c.category_name: float(c.score) for c in res.face_blendshapes[0] if c.category_name != "_neutral"}
        return _result(Y, self._X, False, shapes)


def open_baseline(name: str, fps: float = 30.0, iris: bool = False):
    """A baseline by name; `iris`: MediaPipe FaceMesh also reads the irises (Face Landmarker ignores it)."""
    if name == "mediapipe":
        return MediaPipeFaceMesh(iris=iris)
    if name == "facelandmarker":
        return FaceLandmarkerV2(fps=fps)
    raise UserError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)})")
