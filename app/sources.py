"""Frame sources for the studio: a camera (`camera:N`), a video file (played at its own fps, looping) and
`synthetic` (a clip shipped in the performer package; its path is a constructor argument).

Every source has the same small interface, used only by the capture worker:
    src.open()            -> None, raises SourceError when the device/file is not there
    src.read()            -> Frame (RGB uint8), raises SourceError when the device stops delivering
    src.fps               -> nominal frames per second (a file is paced to it; a camera paces itself)
    src.paced             -> True when the source blocks at its own rate (cameras); files are paced by the worker
    src.close()
A source never decides how to recover: the capture worker closes it and calls open() again every second.
"""
from __future__ import annotations

import glob
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # probing absent camera indices is not worth a warning each
import cv2  # noqa: E402


class SourceError(RuntimeError):
    """The source cannot deliver a frame now (missing device or file, unplugged camera, decode error)."""


@dataclass
class Frame:
    image: np.ndarray   # [H, W, 3] uint8 RGB
    t: float            # capture time, time.monotonic() seconds
    index: int          # frame number within the source (files: position in the clip, before looping)
    replayed: bool = False   # replay: `recorded` is this frame's recorded result (None: no face); no tracking
    recorded: object = None


@dataclass(frozen=True)
class CameraInfo:
    index: int
    width: int
    height: int
    fps: float
    mjpeg: bool

    @property
    def spec(self) -> str:
        return f"camera:{self.index}"

    def label(self) -> str:
        codec = ", MJPEG" if self.mjpeg else ""
        return f"camera:{self.index}  {self.width}×{self.height} @ {self.fps:g} fps{codec}"


def _backend() -> int:
    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


def _candidate_indices(max_index: int) -> list[int]:
    # On Linux the device nodes say which indices exist; opening absent ones costs time (and log noise).
    if sys.platform.startswith("linux"):
        found = sorted(int(m.group(1)) for p in glob.glob("/dev/video*") if (m := re.search(r"(\d+)$", p)))
        return [i for i in found if i <= max_index]
    return list(range(max_index + 1))


def _fourcc(cap) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> 8 * k) & 0xFF) for k in range(4))


def probe_camera(index: int) -> CameraInfo | None:
    """Open camera `index`, try MJPEG at its default size, read one frame; None if it gives no frame."""
    cap = cv2.VideoCapture(index, _backend())
    try:
        if not cap.isOpened():
            return None
        ok, _ = cap.read()
        if not ok:  # metadata nodes of a V4L2 device open but never deliver
            return None
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        mjpeg = _fourcc(cap) == "MJPG" and cap.read()[0]
        return CameraInfo(index, w, h, round(fps, 2), bool(mjpeg))
    finally:
        cap.release()


def enumerate_cameras(max_index: int = 9) -> list[CameraInfo]:
    """Cameras that deliver frames now, with their default resolution, fps and whether MJPEG works (slow:
    it opens each device; call it off the UI thread)."""
    return [info for i in _candidate_indices(max_index) if (info := probe_camera(i)) is not None]


class _Capture:
    """What the OpenCV-backed sources share: the capture in `_cap`, released once by close()."""

    _cap = None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CameraSource(_Capture):
    """cv2.VideoCapture on device `index`; MJPEG first (USB webcams reach their full frame rate only with it).
    `size` (w, h) and `fps` are requests made at each open (None: the camera's own); a driver may pick the nearest
    mode it has, so `fps` then holds what it reports."""

    paced = True

    def __init__(self, index: int, size: tuple[int, int] | None = None, mjpeg: bool = True,
                 fps: float | None = None):
        self.index, self.size, self.mjpeg, self.requested_fps = index, size, mjpeg, fps
        self.name = f"camera:{index}"
        self.fps = 30.0
        self._cap = None
        self._count = 0

    def open(self) -> None:
        cap = cv2.VideoCapture(self.index, _backend())
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name} is not available")
        if self.mjpeg:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if self.size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.requested_fps:
            cap.set(cv2.CAP_PROP_FPS, float(self.requested_fps))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver from queueing stale frames
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self._cap = cap

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceError(f"{self.name} is closed")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise SourceError(f"{self.name} stopped delivering frames")
        self._count += 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic(), self._count - 1)


class FileSource(_Capture):
    """A video file played at its own fps, looping at the end (`loop=False`: SourceError at the end)."""

    paced = False

    def __init__(self, path: str | Path, loop: bool = True, name: str | None = None):
        self.path, self.loop = Path(path), loop
        self.name = name or self.path.name
        self.fps = 30.0
        self.frame_count = 0
        self._cap = None
        self._pos = 0

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"{self.path} not found")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.path} cannot be decoded")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else 30.0
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._cap, self._pos = cap, 0

    def read(self) -> Frame:
        if self._cap is None:
            raise SourceError(f"{self.name} is closed")
        ok, bgr = self._cap.read()
        if not ok and self.loop and self._pos > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._pos = 0
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise SourceError(f"{self.name}: end of file" if self._pos else f"{self.name}: no frames")
        self._pos += 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic(), self._pos - 1)


def open_source(spec: str, synthetic_clip: str | Path | None = None, size: tuple[int, int] | None = None,
                fps: float | None = None):
    """`camera:N` | `synthetic` | a video file path → an (unopened) source; `size` and `fps` are a camera's
    requested mode (files and synthetic play as they are)."""
    if m := re.fullmatch(r"camera:(\d+)", spec.strip()):
        return CameraSource(int(m.group(1)), size=size, fps=fps)
    if spec.strip() == "synthetic":
        if synthetic_clip is None:
            raise SourceError("no synthetic clip is configured (SYNTHETIC_CLIP)")
        return FileSource(synthetic_clip, name="synthetic")
    return FileSource(spec)
