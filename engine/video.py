"""Frame sources and sinks: video files or folders of images in, H.264 MP4 out. Bad input → UserError."""
from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engine.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm"}
# ffmpeg's own lines stay off stderr: a failed encoder is reported once, by us (FACETRACK_NATIVE_LOGS=1: shown)
FFMPEG_LOG_LEVEL = "error" if os.environ.get("FACETRACK_NATIVE_LOGS") else "quiet"


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
    """RGB uint8 frames of a video or image folder, from fraction `start` to `stop` of its length. All frames
    have one size: a folder whose images differ in size is a UserError at the first odd one."""
    if not 0.0 <= start < stop <= 1.0:
        raise UserError(f"need 0 ≤ --start < --stop ≤ 1 (got start {start}, stop {stop})")
    info = probe(path)
    first, last = int(round(start * info.frames)), int(round(stop * info.frames))
    if info.path.is_dir():
        for image in _images(info.path)[first:last]:
            bgr = _read_image(image)
            if bgr.shape[:2] != (info.height, info.width):
                raise UserError(f"{image}: frame is {bgr.shape[1]}x{bgr.shape[0]}, the folder's first frame is "
                                f"{info.width}x{info.height} (a frame folder holds one video: one size)")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
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
    """H.264 MP4 writer (the ffmpeg binary that the imageio-ffmpeg wheel ships), RGB uint8 frames in.

    An encoder that fails (disk full, file too large, killed) is an OSError naming the video, at the frame that
    found it or at close (imageio-ffmpeg itself ignores ffmpeg's exit status)."""

    def __init__(self, path: str | Path, fps: float, crf: int = 18):
        import imageio_ffmpeg

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fps, self._crf, self._imageio_ffmpeg = fps, crf, imageio_ffmpeg
        self._gen = self._process = None

    def write(self, frame: np.ndarray) -> None:
        if self._gen is None:
            h, w = frame.shape[:2]
            self._gen = self._imageio_ffmpeg.write_frames(
                str(self.path), (w, h), fps=self._fps, codec="libx264", quality=None, macro_block_size=1,
                # yuv420p needs even sizes: pad an odd frame by one black row/column rather than rescale it
                output_params=["-crf", str(self._crf), "-preset", "fast", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"],
                pix_fmt_out="yuv420p", ffmpeg_log_level=FFMPEG_LOG_LEVEL)
            self._gen.send(None)
            self._process = encoder_process(self._gen)
        try:
            self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))
        except OSError as err:
            self._gen = None
            raise encoder_error(err, self.path, self._process) from None

    def close(self) -> None:
        if self._gen is not None:
            gen, self._gen = self._gen, None
            gen.close()
            check_encoder(self._process, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def encoder_process(gen):
    """The ffmpeg process behind an imageio-ffmpeg write generator (None where its internals differ)."""
    frame = getattr(gen, "gi_frame", None)
    return None if frame is None else frame.f_locals.get("p")


def encoder_error(err: OSError, path: Path, process=None) -> OSError:
    """An encoder's broken pipe as one OSError naming the video (not imageio's multi-line text)."""
    status = None if process is None else process.poll()
    why = "the video encoder (ffmpeg) stopped"
    if status and status < 0:
        try:
            why += f" ({signal.Signals(-status).name})"
        except ValueError:
            why += f" (signal {-status})"
    elif status:
        code = 256 - status if status > 128 else 0     # ffmpeg exits with AVERROR(errno) & 0xff
        reason = os.strerror(code) if code in errno.errorcode else None
        why += f": {reason}" if reason else f" (exit status {status})"
        if code == errno.ENOSPC:
            err = OSError(code, "")
    return OSError(err.errno or errno.EIO, why, str(path))


def check_encoder(process, path: Path) -> None:
    """Raise an OSError naming `path` when the (finished) encoder failed: a video it cut short is not a result."""
    if process is None:
        return
    status = process.poll()
    if status:
        raise encoder_error(OSError(errno.EIO, ""), path, process)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path}: cannot decode image")
    return image
