"""The reprojection-error reference: dlib's 68-point (iBUG) shape predictor. For evaluation only.

The paper measures accuracy against landmarks that its own landmark detector did not produce; likewise our
NME uses dlib (HOG frontal face detector + ERT shape predictor), which is independent of the mediapipe teacher
we train against. Nothing in training or in the live app uses this module.

Models come from PyPI: `dlib-bin` (prebuilt dlib) and `face-recognition-models`, whose wheel ships
`shape_predictor_68_face_landmarks.dat` (dlib's own serialisation, not a pickle). We locate that file without
importing the package, whose __init__ needs pkg_resources (gone from recent setuptools).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def predictor_path() -> Path:
    """Path of shape_predictor_68_face_landmarks.dat inside the installed face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the dlib reference needs `pip install face-recognition-models dlib-bin`")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


class DlibReference:
    """68 iBUG landmarks from dlib, the evaluation reference (never a training target).

    upsample: how many times dlib's HOG detector upsamples the frame; None picks 1 for frames whose short side
    is under 480 px (the detector misses faces smaller than ~80 px) and 0 otherwise (faster on HD frames).
    """

    def __init__(self, upsample: int | None = None):
        import dlib

        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))

    def face(self, frame_rgb: np.ndarray):
        """The largest detected face as a dlib.rectangle, or None."""
        frame_rgb = np.ascontiguousarray(frame_rgb, dtype=np.uint8)  # dlib silently finds nothing in strided views
        up = self.upsample if self.upsample is not None else int(min(frame_rgb.shape[:2]) < 480)
        faces = self.detector(frame_rgb, up)
        return max(faces, key=lambda r: r.width() * r.height()) if len(faces) else None

    def landmarks(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """[68, 2] float64 landmarks (x, y) in frame pixels for the largest face in an RGB uint8 frame, or None."""
        frame = np.ascontiguousarray(frame_rgb, dtype=np.uint8)
        box = self.face(frame)
        if box is None:
            return None
        shape = self.predictor(frame, box)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)
