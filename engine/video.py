"""Frame sources and sinks: video files or folders of images in, H.264 MP4 out. Bad input → UserError."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engine.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm"}


@dataclass
class VideoInfo:
    path: Path
    frames: int        # best estimate before decoding (container count, or number of images)
    fps: float
    width: int
    height: int


def probe(path: str | Path) -> VideoInfo:
    """Open a video file or a folder of frames and check that it holds at least one decodable frame."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        images = _images(path)
        if not images:
            raise UserError(f"{path}: folder holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))})")
        first = _read_image(images[0])
        return VideoInfo(path, len(images), 25.0, first.shape[1], first.shape[0])
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError(f"{path}: cannot open as video (corrupt or unsupported format)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise UserError(f"{path}: video has no decodable frames (empty or corrupt)")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        return VideoInfo(path, count, float(fps), frame.shape[1], frame.shape[0])
    finally:
        cap.release()


def frames(path: str | Path, start: float = 0.0, stop: float = 1.0) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video or image folder, from fraction `start` to `stop` of its length."""
    info = probe(path)
    first, last = int(round(start * info.frames)), int(round(stop * info.frames))
    if info.path.is_dir():
        for image in _images(info.path)[first:last]:
            yield cv2.cvtColor(_read_image(image), cv2.COLOR_BGR2RGB)
        return
    cap = cv2.VideoCapture(str(info.path))
    try:
        if first:
            cap.set(cv2.CAP_PROP_POS_FRAMES, first)
        for _ in range(last - first):
            ok, frame = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


class VideoWriter:
    """H.264 MP4 writer (the ffmpeg binary that the imageio-ffmpeg wheel ships), RGB uint8 frames in."""

    def __init__(self, path: str | Path, fps: float, crf: int = 18):
        import imageio_ffmpeg

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fps, self._crf, self._imageio_ffmpeg = fps, crf, imageio_ffmpeg
        self._gen = None

    def write(self, frame: np.ndarray) -> None:
        if self._gen is None:
            h, w = frame.shape[:2]
            self._gen = self._imageio_ffmpeg.write_frames(
                str(self.path), (w, h), fps=self._fps, codec="libx264", quality=None, macro_block_size=1,
                # yuv420p needs even sizes: pad an odd frame by one black row/column rather than rescale it
                output_params=["-crf", str(self._crf), "-preset", "fast", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"],
                pix_fmt_out="yuv420p")
            self._gen.send(None)
        self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: cannot decode image")
    return image
