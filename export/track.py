"""`facetrack track PACKAGE SOURCE --out SESSION`: run a performer package on a video, a folder of frames, a camera
or the synthetic performer, and record the session (torch-free; `synthetic` renders with ModernGL, no torch).

    SESSION/results.npz    frame index, found mask, presence, z, H (frame px), G, points (frame px), texture_frames
    SESSION/frames.jsonl   one line per frame: found, presence, H, stage ms, whether the texture was decoded
    SESSION/overlay.mp4    each frame with the projected mesh's triangle edges (thin, anti-aliased)
    SESSION/texture.png    the last decoded texture C(T)
    SESSION/report.json    frames, frames_found, backend, fallback, median ms per stage, texture decode rate

Texture decoding runs on a worker thread fed with only the latest (z, H), at most TEXTURE_HZ times per second of
video, so geometry never waits for it (ONNX Runtime releases the GIL while it runs).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engine import options, video
from engine.errors import UserError

TEXTURE_HZ = 4.0
EDGE_COLOUR = (80, 255, 120)


# ------------------------------------------------------------------------------------------------ sources
@dataclass
class Source:
    """Frames (RGB uint8) with their rate; `ended` is set to a one-line message when a live source dies."""
    name: str
    fps: float
    frames: Iterator[np.ndarray]
    live: bool = False
    ended: str | None = None


def open_source(spec: str, session: Path, package_dir: Path, max_frames: int | None = None) -> Source:
    """SOURCE → Source: a video file, a folder of frames, `camera:N`, or `synthetic`."""
    if spec.startswith("camera:"):
        return _camera(spec)
    if spec == "synthetic":
        clip = package_dir / "synthetic.mp4"
        if not clip.is_file():   # render the embedded default: the synthetic performer in a wild setting
            from engine import synth

            clip = synth.write_clip(session / "synthetic", frames=max_frames or 100, domain="wild", seed=1) \
                / "video.mp4"
        spec = str(clip)
    info = video.probe(spec)
    return Source(str(info.path), info.fps, video.frames(info.path))


def _camera(spec: str) -> Source:
    try:
        index = int(spec.split(":", 1)[1])
    except ValueError:
        raise UserError(f"{spec}: camera source must be camera:N with N an integer") from None
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise UserError(f"{spec}: cannot open camera {index}")
    source = Source(spec, float(cap.get(cv2.CAP_PROP_FPS) or 30.0), iter(()), live=True)

    def frames():
        count = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:   # unplugged or driver gone: end cleanly with what we have
                    source.ended = f"{spec}: camera stopped delivering frames after {count}; session saved"
                    return
                count += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    source.frames = frames()
    return source


# ------------------------------------------------------------------------------------------------ drawing
def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges [E,2] of a triangle list (each interior edge once, not twice)."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def draw_mesh(frame: np.ndarray, points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Frame with the mesh edges drawn 1 px wide, anti-aliased (1/16 px precision), blended 50 % so the face
    under them stays readable; the blend touches only the mesh's bounding box."""
    out = frame.copy()
    h, w = frame.shape[:2]
    x0, y0 = np.clip(np.floor(points.min(0)).astype(int) - 1, 0, [w, h])
    x1, y1 = np.clip(np.ceil(points.max(0)).astype(int) + 2, 0, [w, h])
    if x1 <= x0 or y1 <= y0:                 # mesh entirely off screen
        return out
    lines = np.round((points[edges] - [x0, y0]) * 16).astype(np.int32)
    roi = np.ascontiguousarray(out[y0:y1, x0:x1])
    drawn = cv2.polylines(roi.copy(), list(lines), False, EDGE_COLOUR, 1, cv2.LINE_AA, shift=4)
    out[y0:y1, x0:x1] = cv2.addWeighted(roi, 0.5, drawn, 0.5, 0)
    return out


# ------------------------------------------------------------------------------------------------ texture
class TextureWorker:
    """Decodes C(T) on its own thread from the most recent request; older pending requests are dropped."""

    def __init__(self, tracker):
        self._tracker, self._cv = tracker, threading.Condition()
        self._pending, self._stop = None, False
        self.latest, self.frames, self.ms = None, [], []
        self._thread = threading.Thread(target=self._loop, name="texture", daemon=True)
        self._thread.start()

    def submit(self, frame_index: int, z: np.ndarray, H: np.ndarray) -> None:
        with self._cv:
            self._pending = (frame_index, z, H)
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._stop:
                    self._cv.wait()
                if self._pending is None:
                    return
                (index, z, H), self._pending = self._pending, None
            t0 = time.perf_counter()
            self.latest = self._tracker.texture(z, H)
            self.ms.append(1000 * (time.perf_counter() - t0))
            self.frames.append(index)

    def close(self) -> None:
        """Finish the pending request (so the last texture matches the end of the session), then stop."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join()


# ------------------------------------------------------------------------------------------------ session
def _median(values) -> float | None:
    return round(float(np.median(values)), 3) if len(values) else None


def track(package: str | Path, source: str, out: str | Path, backend: str = "auto",
          max_frames: int | None = None, texture_hz: float = TEXTURE_HZ, threads: int | None = None,
          precision: str = "auto") -> dict:
    from export.runtime import open_tracker

    out = Path(out)
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be ≥ 1 (got {max_frames})")
    if not texture_hz > 0:
        raise UserError(f"--texture-hz must be > 0 (got {texture_hz})")
    tracker = open_tracker(package, backend, threads, precision)   # verifies every file before anything runs
    print(f"backend {tracker.backend}" + (f" (fallback: {tracker.fallback})" if tracker.fallback else ""))
    out.mkdir(parents=True, exist_ok=True)
    src = open_source(source, out, tracker.package.path, max_frames)
    every = max(1, int(round(src.fps / texture_hz)))       # in video frames, so a file session is reproducible
    edges = mesh_edges(tracker.topology[0])
    worker = TextureWorker(tracker)
    rows, stages = [], {k: [] for k in ("decode", "detect", "crop", "tracker", "overlay", "geometry")}
    last_texture = -every
    start = time.perf_counter()
    try:
        with video.VideoWriter(out / "overlay.mp4", src.fps) as overlay, \
                open(out / "frames.jsonl", "w") as jsonl:
            index = 0
            while max_frames is None or index < max_frames:
                t0 = time.perf_counter()
                frame = next(src.frames, None)
                if frame is None:
                    break
                t1 = time.perf_counter()
                result = tracker(frame)
                t2 = time.perf_counter()
                stages["decode"].append(1000 * (t1 - t0))
                stages["geometry"].append(1000 * (t2 - t1))
                textured = False
                if result is not None:
                    for k, v in result.stages_ms.items():
                        stages[k].append(v)
                    if index - last_texture >= every:
                        worker.submit(index, result.z, result.H)
                        last_texture, textured = index, True
                t3 = time.perf_counter()
                overlay.write(frame if result is None else draw_mesh(frame, result.points, edges))
                stages["overlay"].append(1000 * (time.perf_counter() - t3))
                rows.append((index, result))
                jsonl.write(json.dumps({
                    "frame": index, "found": result is not None,
                    "presence": None if result is None else round(result.presence, 4),
                    "H": None if result is None else [round(float(h), 5) for h in result.H],
                    "ms": {k: round(v, 3) for k, v in (result.stages_ms if result else {}).items()},
                    "texture_requested": textured}) + "\n")
                index += 1
    except KeyboardInterrupt:               # Ctrl-C on a live session keeps what was recorded
        src.ended = src.ended or f"{src.name}: interrupted after {len(rows)} frames; session saved"
    finally:
        worker.close()
    seconds = time.perf_counter() - start
    if not rows:
        raise UserError(f"{src.name}: no frames to track")
    _save_results(out / "results.npz", rows, worker.frames)
    if worker.latest is not None:
        cv2.imwrite(str(out / "texture.png"), cv2.cvtColor(worker.latest, cv2.COLOR_RGB2BGR))
    found = sum(r is not None for _, r in rows)
    report = {
        "package": str(tracker.package.path), "source": src.name, "fps_source": src.fps,
        "frames": len(rows), "frames_found": found,
        "backend": tracker.backend, "fallback": tracker.fallback,
        "stages_ms": {k: _median(v) for k, v in stages.items()},
        "detections": len(stages["detect"]),
        "texture": {"max_hz": texture_hz, "every_n_frames": every, "decoded": len(worker.frames),
                    "ms": _median(worker.ms), "decoded_per_100_frames": round(100 * len(worker.frames) / len(rows), 2)},
        "seconds": round(seconds, 3), "ended": src.ended,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    if src.ended:
        print(src.ended)
    return report


def _save_results(path: Path, rows: list, texture_frames: list[int]) -> None:
    """Per-frame arrays; NaN where no face was found (so indices line up with the video)."""
    n = len(rows)
    dim = next((len(r.z) for _, r in rows if r is not None), 128)
    z, H = np.full((n, dim), np.nan, np.float32), np.full((n, 6), np.nan, np.float32)
    G, P = np.full((n, 468, 3), np.nan, np.float32), np.full((n, 468, 2), np.nan, np.float32)
    presence = np.zeros(n, np.float32)
    for i, (_, r) in enumerate(rows):
        if r is not None:
            z[i], H[i], G[i], P[i], presence[i] = r.z, r.H, r.G, r.points, r.presence
    np.savez_compressed(path, frame=np.array([i for i, _ in rows], np.int32),
                        found=np.array([r is not None for _, r in rows]), presence=presence, z=z, H=H, G=G,
                        points=P, texture_frames=np.array(texture_frames, np.int32))


def add_parser(sub) -> None:
    from export.runtime import BACKENDS, PRECISIONS

    p = sub.add_parser("track", help="run a performer package on a video, frames folder, camera:N or synthetic")
    p.add_argument("package", metavar="PACKAGE", type=Path)
    p.add_argument("source", metavar="SOURCE", help="video file, folder of frames, camera:N, or synthetic")
    p.add_argument("--out", required=True, type=Path, help="session folder")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: the int8 tracker graph on the CPU provider when the package has one")
    p.add_argument("--threads", type=options.threads, help="ONNX Runtime intra-op threads (default 1; 0: ONNX Runtime's choice)")
    p.add_argument("--max-frames", type=options.count(1))
    p.add_argument("--texture-hz", type=options.positive(1000), default=TEXTURE_HZ, help="most texture decodes per second of video")
    p.set_defaults(run=_run)


def _run(args) -> None:
    r = track(args.package, args.source, args.out, args.backend, args.max_frames, args.texture_hz, args.threads,
              args.precision)
    print(f"tracked {r['frames_found']}/{r['frames']} frames, geometry {r['stages_ms']['geometry']} ms median, "
          f"{r['texture']['decoded']} texture decodes → {args.out}")
