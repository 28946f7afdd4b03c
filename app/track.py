"""`facetrack track PACKAGE SOURCE --out SESSION`: the studio's pipeline without the window, on a video, a folder
of frames, a camera or the synthetic performer (torch-free; `synthetic` renders with ModernGL).

Each frame goes through what the studio runs: the package's tracking loop, then the studio's track step
(app.tracking.TrackWorker: One Euro smoothing unless --raw, ARKit values, the stream with --stream), then the
studio's session recorder, so `facetrack export-session` and the studio's replay read a headless session too.
The performer's tuning the studio saved for this package (app.settings: neutral calibration, per-shape gains and
dead zones, smoothing on/off and strength) applies as in the studio, unless --no-settings:

    SESSION/session.json, video.mp4, frames.jsonl, vertices.f32   app.recording's session: every frame, a frame
                           with no face flagged; each line flushed to the OS as it is tracked
    SESSION/overlay.mp4    each frame with the projected mesh's triangle edges (thin, anti-aliased)
    SESSION/texture.png    the last decoded texture C(T)
    SESSION/report.json    frames, frames_found, backend, fallback, median ms per stage, texture decode rate,
                           settings (the studio settings file applied, or null)

SIGINT, SIGTERM and SIGHUP end the session cleanly with what was tracked. One run owns its folder: a folder that
already holds a session is refused. Texture decoding runs on a worker thread fed with only the latest (z, H), at
most TEXTURE_HZ times per second of video, so geometry never waits for it.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from app.interrupt import StopSignals
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


def claim_output(out: Path) -> None:
    """SESSION must be a new or empty folder we can write; an exclusive lock file makes it this run's alone, so
    two runs never write into one session."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = os.open(out / ".lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        raise UserError(f"{out}: another run is writing this session (remove {out / '.lock'} if none is)") from None
    except OSError as err:
        raise UserError(f"{out}: cannot write here ({err.strerror})") from None
    os.close(lock)
    if any(p.name != ".lock" for p in out.iterdir()):
        (out / ".lock").unlink()
        raise UserError(f"{out}: already holds files; choose a new --out folder")


def release_output(out: Path) -> None:
    """Drop the lock; a session folder that never got a frame is removed (nothing is lost: it is empty)."""
    (out / ".lock").unlink(missing_ok=True)
    try:
        out.rmdir()
    except OSError:
        pass


def track(package: str | Path, source: str, out: str | Path, backend: str = "auto",
          max_frames: int | None = None, texture_hz: float = TEXTURE_HZ, threads: int | None = None,
          precision: str = "auto", stream: str | None = None, smoothing: bool = True, eyes: bool = True,
          settings: bool = True) -> dict:
    from app.mailbox import LatestSlot
    from app.recording import SessionRecorder
    from app.senders import open_sender
    from app.sources import Frame
    from app.tracking import TrackWorker
    from engine.tracking import TrackOptions
    from export.runtime import open_tracker

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be ≥ 1 (got {max_frames})")
    if not texture_hz > 0:
        raise UserError(f"--texture-hz must be > 0 (got {texture_hz})")
    sender = open_sender(stream) if stream else None     # a bad HOST:PORT fails here, before any work
    tracker = open_tracker(package, backend, threads, precision, TrackOptions(eyes=eyes))  # verifies every file first
    claim_output(out)
    try:
        src = open_source(source, out, tracker.package.path, max_frames)
    except BaseException:
        release_output(out)
        raise
    print(f"backend {tracker.backend}" + (f" (fallback: {tracker.fallback})" if tracker.fallback else ""))
    step = TrackWorker(LatestSlot(), tracker)             # the studio's track step, run here without its thread
    step.set_smoothing(smoothing)
    applied = apply_saved_settings(step, tracker) if settings else None
    smoothing = step.smoothing                             # the saved settings may have turned it off
    if applied:
        print(f"settings {applied}")
    step.sender = sender                                   # after them: the stream starts from the saved head pose
    every = max(1, int(round(src.fps / texture_hz)))       # in video frames, so a file session is reproducible
    edges = mesh_edges(tracker.topology[0])
    worker = TextureWorker(tracker) if hasattr(tracker, "texture") else None   # the generic package has none
    stages = {k: [] for k in ("decode", "detect", "crop", "tracker", "smooth+expr", "stream", "record", "overlay",
                              "geometry")}
    found, last_texture, recorder, index = 0, -every, None, 0
    start = time.perf_counter()
    try:
        with StopSignals() as stop, video.VideoWriter(out / "overlay.mp4", src.fps) as overlay:
            while (max_frames is None or index < max_frames) and not stop.requested:
                t0 = time.perf_counter()
                image = next(src.frames, None)
                if image is None:
                    break
                t1 = time.perf_counter()
                # video time for files (smoothing then behaves as at playback speed), the clock for a camera
                item = step.process(Frame(image, time.monotonic() if src.live else index / src.fps, index))
                stages["decode"].append(1000 * (t1 - t0))
                stages["geometry"].append(item.stages_ms.get("track", 0.0))
                for k in ("detect", "crop", "tracker", "smooth+expr", "stream"):
                    if k in item.stages_ms:
                        stages[k].append(item.stages_ms[k])
                t2 = time.perf_counter()
                if recorder is None:
                    recorder = SessionRecorder(out, src.fps, (image.shape[1], image.shape[0]))
                if item.found:
                    recorder.write(image, item.frame.t, item.z, item.H, item.expressions, G=item.G)
                    found += 1
                    if worker is not None and index - last_texture >= every:
                        worker.submit(index, item.z, item.H)
                        last_texture = index
                else:
                    recorder.write(image, item.frame.t)
                index += 1                         # counted once recorded: the report matches the session
                t3 = time.perf_counter()
                overlay.write(image if not item.found else draw_mesh(image, item.points, edges))
                stages["record"].append(1000 * (t3 - t2))
                stages["overlay"].append(1000 * (time.perf_counter() - t3))
            if stop.requested:            # Ctrl-C, SIGTERM or SIGHUP: keep what was tracked
                src.ended = src.ended or f"{src.name}: {stop.requested} after {index} frames; session saved"
    except KeyboardInterrupt:             # Ctrl-C when run off the main thread (no handler installed there)
        src.ended = src.ended or f"{src.name}: SIGINT after {index} frames; session saved"
    finally:
        try:
            if worker is not None:
                worker.close()
            if recorder is not None:
                recorder.close()
        finally:                           # a full disk while closing must not leave this run's lock behind
            if sender is not None:
                sender.close()
            release_output(out)
    seconds = time.perf_counter() - start
    if index == 0:
        raise UserError(f"{src.name}: no frames to track")
    if worker is not None and worker.latest is not None:
        options.write_bytes(out / "texture.png",
                            cv2.imencode(".png", cv2.cvtColor(worker.latest, cv2.COLOR_RGB2BGR))[1].tobytes())
    report = {
        "package": str(tracker.package.path), "source": src.name, "fps_source": src.fps,
        "frames": index, "frames_found": found, "smoothing": smoothing, "eyes": eyes, "stream": stream,
        "settings": applied,
        "backend": tracker.backend, "fallback": tracker.fallback,
        "stages_ms": {k: _median(v) for k, v in stages.items()},
        "detections": tracker.detections,
        "texture": None if worker is None else {
            "max_hz": texture_hz, "every_n_frames": every, "decoded": len(worker.frames), "ms": _median(worker.ms),
            "decoded_per_100_frames": round(100 * len(worker.frames) / index, 2)},
        "seconds": round(seconds, 3), "ended": src.ended,
    }
    options.write_json(out / "report.json", report)       # whole or absent, never half a report
    if src.ended:
        print(src.ended)
    if found == 0:
        raise UserError(f"{src.name}: no face found in any of {index} frames (session kept in {out})")
    return report


def apply_saved_settings(step, tracker) -> str | None:
    """The studio's saved settings for the tracker's package applied to a track step (app.tracking.TrackWorker):
    neutral, measured range, per-shape tuning and smoothing (--raw still wins). Returns the file applied, or None
    when there is none; its bad fields read as defaults, said in one line."""
    from app import settings as saved

    key = saved.package_key(tracker)
    if key is None or not saved.package_settings_file(key).is_file():
        return None
    s, problems = saved.load_package_settings(key)
    if problems:
        print(saved.problems_line(key, problems))
    step.set_neutral(s.neutral)
    step.set_own_ranges(s.ranges)
    step.set_tuning(s.gains, s.dead_zones)
    step.set_smoothing_params(s.min_cutoff, s.beta)
    step.set_smoothing(step.smoothing and s.smoothing)
    return str(saved.package_settings_file(key))


def add_parser(sub) -> None:
    from export.runtime import BACKENDS, PRECISIONS

    p = sub.add_parser("track", help="the studio's pipeline without the window: a package on a video, frames "
                                     "folder, camera:N or synthetic → a session (+ overlay, report, stream)")
    p.add_argument("package", metavar="PACKAGE", type=Path)
    p.add_argument("source", metavar="SOURCE", help="video file, folder of frames, camera:N, or synthetic")
    p.add_argument("--out", required=True, type=Path, help="session folder (new or empty)")
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: the int8 tracker graph on the CPU provider when the package has one")
    p.add_argument("--threads", type=options.threads, help="ONNX Runtime intra-op threads (default 1; 0: automatic)")
    p.add_argument("--max-frames", type=options.count(1))
    p.add_argument("--texture-hz", type=options.positive(1000), default=TEXTURE_HZ,
                   help="most texture decodes per second of video")
    p.add_argument("--stream", metavar="SPEC", help="stream as the studio does: vmc[:HOST[:PORT]] or "
                                                    "ifacialmocap:HOST[:PORT]")
    p.add_argument("--raw", action="store_true", help="no One Euro smoothing (the studio smooths by default)")
    p.add_argument("--no-eyes", action="store_true", help="skip the iris graph (blinks from the mesh, no gaze): "
                                                           "halves the per-frame model time on a small CPU")
    p.add_argument("--no-settings", action="store_true",
                   help="ignore the tuning the studio saved for this package (calibration, gains, smoothing)")
    p.set_defaults(run=_run)


def _run(args) -> None:
    r = track(args.package, args.source, args.out, args.backend, args.max_frames, args.texture_hz, args.threads,
              args.precision, args.stream, smoothing=not args.raw, eyes=not args.no_eyes,
              settings=not args.no_settings)
    print(f"tracked {r['frames_found']}/{r['frames']} frames, geometry {r['stages_ms']['geometry']} ms median, "
          f"{r['texture']['decoded'] if r['texture'] else 'no'} texture decodes → {args.out}")
