"""`facetrack bench PACKAGE --json OUT`: per-stage milliseconds of the live path, per ONNX Runtime backend, with
MediaPipe FaceMesh (tracking mode) timed in the same run on the same decoded frames as the peer.

MediaPipe processes each frame right after ours, in `--rounds` passes from a fresh start, so a machine whose speed
drifts (a shared or throttled CPU) slows both alike and the ratio stays meaningful.
Stages: decode (video → RGB), detect (BlazeFace, per call), detect_amortised (detect time spread over all frames:
the tracker only detects at start and after loss), crop, tracker (tracker.onnx: E_I + D's geometry + teacher),
eyes (iris.onnx on both eye crops, when the package has it), texture (texture.onnx), render (the offscreen textured
mesh over the frame, at the frame size; both null for the generic package, which has no texture; its tracker stage
is landmarks.onnx + the pose fit). The geometry path is detect_amortised + crop + tracker, the work
MediaPipe FaceMesh's own tracking loop does; `geometry_with_eyes_ms` adds the eyes, which FaceMesh without refined
landmarks does not do (so its ratio is the conservative one). Medians over the frames.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import options, pose, video
from engine.errors import UserError

DEFAULT_FRAMES = 100
DEFAULT_ROUNDS = 3      # passes over the frames, each from a fresh start (detect, then track)


def _ms(samples) -> float | None:
    return round(float(np.median(samples)), 3) if len(samples) else None


def _decode(source: Path, frames: int) -> tuple[list[np.ndarray], list[float]]:
    images, times, it = [], [], video.frames(source)
    while len(images) < frames:
        t0 = time.perf_counter()
        frame = next(it, None)
        if frame is None:
            break
        times.append(1000 * (time.perf_counter() - t0))
        images.append(frame)
    return images, times


def bench_backend(tracker, frames: list[np.ndarray], rounds: int, peer: "MediaPipePeer | None" = None):
    """Stage ms for one backend over `rounds` passes of the frames, each pass from a fresh start. With a `peer`
    (MediaPipe), the peer processes each frame right after ours, so both see the same machine state; also returns
    the last pass's results (for the texture and render stages)."""
    tracker(frames[0])                      # warm-up: first-run allocations (and TensorRT engine builds)
    stages = {k: [] for k in ("detect", "crop", "tracker", "eyes", "geometry", "texture")}
    peer_ms, detect_total = [], 0.0
    for _ in range(rounds):
        tracker.reset()
        step = peer.start() if peer is not None else None
        results = []
        for frame in frames:
            t0 = time.perf_counter()
            result = tracker(frame)
            stages["geometry"].append(1000 * (time.perf_counter() - t0))
            results.append(result)
            if result is not None:
                detect_total += result.stages_ms.get("detect", 0.0)
                stages["crop"].append(result.stages_ms["crop"])
                stages["tracker"].append(result.stages_ms["tracker"])
                if "eyes" in result.stages_ms:
                    stages["eyes"].append(result.stages_ms["eyes"])
            if step is not None:
                peer_ms.append(step(frame))
    for frame in frames[:: max(1, len(frames) // 30)]:     # the detector per call, on every kind of frame
        t0 = time.perf_counter()
        tracker.detect(frame)
        stages["detect"].append(1000 * (time.perf_counter() - t0))
    for r in [r for r in results if r is not None][:30] if hasattr(tracker, "texture") else []:
        t0 = time.perf_counter()
        tracker.texture(r.z, r.H)
        stages["texture"].append(1000 * (time.perf_counter() - t0))
    out = {k: _ms(v) for k, v in stages.items()}
    out["detect_amortised"] = round(detect_total / (rounds * len(frames)), 3)
    out["geometry_path"] = round(out["detect_amortised"] + (out["crop"] or 0) + (out["tracker"] or 0), 3)
    out["frames_found"] = sum(r is not None for r in results)
    out["name"], out["fallback"] = tracker.backend, tracker.fallback
    if peer is not None:
        out["mediapipe"] = _ms(peer_ms)
    return out, results


def bench_render(tracker, frames: list[np.ndarray], results: list) -> float | None:
    """The engine.render offscreen textured mesh drawn over the frame, at the frame size, read back."""
    from engine.render import FLAT, OffscreenRenderer

    pairs = [(f, r) for f, r in zip(frames, results) if r is not None][:30]
    if not pairs or not hasattr(tracker, "texture"):
        return None
    h, w = frames[0].shape[:2]
    triangles, uv, holes = tracker.topology
    times = []
    with OffscreenRenderer(w, h) as renderer:
        renderer.set_mesh(np.concatenate([triangles, holes]), uv)
        renderer.set_texture(tracker.texture(pairs[0][1].z, pairs[0][1].H))
        for frame, r in pairs:
            vertices = pose.transform(r.G.astype(np.float64), r.H)
            vertices[:, :2] += 0.5          # OpenCV pixel centres → GL pixel centres (engine.render)
            t0 = time.perf_counter()
            renderer.render(vertices.astype(np.float32), FLAT, frame)
            times.append(1000 * (time.perf_counter() - t0))
    return _ms(times)


class MediaPipePeer:
    """MediaPipe FaceMesh in tracking mode, timed frame by frame: `start()` opens a fresh tracking graph (closing
    the previous one) and returns `step(frame) -> ms`. `create` returns None when mediapipe is not installed."""

    def __init__(self, mp, warm_up: np.ndarray):
        self._mp, self._graph = mp, None
        with self._face_mesh() as fm:
            fm.process(warm_up)             # model load and first-run allocations, outside the timings

    @classmethod
    def create(cls, frames: list[np.ndarray]) -> "MediaPipePeer | None":
        try:
            import mediapipe as mp
        except ImportError:
            return None
        return cls(mp, frames[0])

    def _face_mesh(self):
        return self._mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=False,
                                                     max_num_faces=1)

    def start(self):
        self.close()
        fm = self._graph = self._face_mesh()

        def step(frame) -> float:
            t0 = time.perf_counter()
            fm.process(frame)
            return 1000 * (time.perf_counter() - t0)
        return step

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None


def available_backends() -> list[str]:
    """Backends worth timing here: tensorrt when ONNX Runtime has its provider or a native module imports."""
    import onnxruntime as ort

    from export import trt_engine
    from export.runtime import _PROVIDERS

    have = ort.get_available_providers()
    backends = [b for b in ("cuda", "cpu") if _PROVIDERS[b] in have]
    try:
        trt_engine.load_module()
        native = True
    except trt_engine.TrtUnavailable:
        native = False
    return (["tensorrt"] if native or _PROVIDERS["tensorrt"] in have else []) + backends


def bench(package: str | Path, source: str | Path | None = None, frames: int = DEFAULT_FRAMES,
          threads: int | None = None, rounds: int = DEFAULT_ROUNDS, precision: str = "auto") -> dict:
    from export.package import open_package
    from export.runtime import open_tracker, tracker_threads

    if frames < 2 or rounds < 1:
        raise UserError(f"--frames must be ≥ 2 and --rounds ≥ 1 (got {frames}, {rounds})")
    pkg = open_package(package)
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:                  # the embedded default: a wild synthetic clip, rendered now
            from engine import synth

            source = synth.write_clip(Path(tmp), frames=frames, domain="wild", seed=1, size=(640, 480)) / "video.mp4"
            label = f"synthetic wild clip, 640x480, {frames} frames (seed 1)"
        else:
            label = str(source)
        images, decode = _decode(Path(source), frames)
    if len(images) < 2:
        raise UserError(f"{source}: needs at least 2 frames to bench (got {len(images)})")
    backends, trackers = available_backends(), {}
    trackers[backends[0]] = first = open_tracker(pkg, backends[0], threads, precision)
    if not any(first(frame) is not None for frame in images):      # timings of no face mean nothing: exit 2
        raise UserError(f"{label}: the package found no face in any of {len(images)} frames")
    peer = MediaPipePeer.create(images)
    per_backend, main = {}, None
    for backend in backends:
        tracker = trackers.get(backend) or open_tracker(pkg, backend, threads, precision)
        stages, results = bench_backend(tracker, images, rounds, peer if main is None else None)
        per_backend[backend] = stages
        if main is None:                    # the first available backend is what `auto` picks
            main = backend
            render = bench_render(tracker, images, results)
    if peer is not None:
        peer.close()
    best = per_backend[main]
    mp_ms = best.get("mediapipe")
    stages = {"decode": _ms(decode), **{k: best[k] for k in ("detect", "detect_amortised", "crop", "tracker", "eyes",
                                                               "texture")}, "render": render}
    geometry = best["geometry_path"]
    with_eyes = round(geometry + (best["eyes"] or 0), 3) if geometry else None
    import onnxruntime as ort

    return {
        "package": str(pkg.path), "source": label, "frames": len(images), "rounds": rounds,
        "frame_size": list(images[0].shape[1::-1]),
        "frames_found": best["frames_found"],
        "backend": best["name"], "fallback": best["fallback"],
        "stages": stages,
        "geometry_path_ms": geometry, "fps": round(1000 / geometry, 1) if geometry else None,
        "geometry_whole_call_ms": best["geometry"],
        "backends": per_backend,
        "geometry_with_eyes_ms": with_eyes,
        "mediapipe_ms": mp_ms, "ratio": round(geometry / mp_ms, 3) if mp_ms and geometry else None,
        "ratio_with_eyes": round(with_eyes / mp_ms, 3) if mp_ms and with_eyes else None,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()], "ort_threads": tracker_threads(threads),
                    "onnxruntime": ort.__version__, "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def add_parser(sub) -> None:
    from export.runtime import PRECISIONS

    p = sub.add_parser("bench", help="per-stage ms of the live path per backend, vs MediaPipe in the same run")
    p.add_argument("package", metavar="PACKAGE", type=Path)
    p.add_argument("--json", required=True, type=Path)
    p.add_argument("--source", type=Path, help="video file or folder of frames (default: a synthetic wild clip)")
    p.add_argument("--frames", type=options.count(2, 100_000), default=DEFAULT_FRAMES)
    p.add_argument("--rounds", type=options.count(1, 1000), default=DEFAULT_ROUNDS,
                   help="passes over the frames, each from a fresh start (medians over all)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: the int8 tracker graph on the CPU provider when the package has one")
    p.add_argument("--threads", type=options.threads,
                   help="ONNX Runtime intra-op threads (default: the runtime's, 1; 0: ONNX Runtime's choice)")
    p.set_defaults(run=_run)


def _run(args) -> None:
    r = bench(args.package, args.source, args.frames, args.threads, args.rounds, args.precision)
    options.write_json(args.json, r)                # atomic: an earlier OUT stays whole if this fails
    print(json.dumps(r["stages"]), f"geometry {r['geometry_path_ms']} ms ({r['fps']} fps) on {r['backend']}, "
          f"mediapipe {r['mediapipe_ms']} ms, ratio {r['ratio']} ({r['ratio_with_eyes']} with eyes)")
