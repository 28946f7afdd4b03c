"""`facetrack bench-teacher`: per-stage milliseconds of the enrollment path on real frames, with MediaPipe's own
FaceMesh (tracking mode) timed in the same run on the same frames as the peer.

Stages: frame decode, detect (torch and ONNX Runtime), landmarks on the 192² crop (torch and ONNX Runtime),
pose fit, unwrap (Eq. 7, one 256² crop), and the whole tracking-loop step (engine.tracking with the teacher). Medians over the frames.
"""
from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine import canonical, options, pose, unwrap, video
from engine.errors import UserError
from engine.teacher import LANDMARK_SIZE, Teacher, TeacherModel
from engine.tracking import FaceLoop

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared/data/videos/obama/obama_weekly_address_office_720p.mp4"


def _median_ms(samples: list[float]) -> float:
    return round(1000 * float(np.median(samples)), 3)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _onnx_session(net: torch.nn.Module, size: int, folder: Path):
    import onnxruntime as ort

    path = folder / f"{size}.onnx"
    torch.onnx.export(net, (torch.zeros(1, 3, size, size),), str(path), input_names=["image"], opset_version=17,
                      dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")   # don't starve torch on 2 cores
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def bench(source: str | Path, frames: int = 200) -> dict:
    teacher, X = Teacher(), canonical.load()[0].astype(np.float64)
    tracker = FaceLoop(TeacherModel(teacher))
    stages = {k: [] for k in ("decode", "detect_torch", "detect_onnx", "landmarks_torch", "landmarks_onnx",
                              "pose_fit", "unwrap", "tracker_step")}
    samples = []
    it = video.frames(source)
    for _ in range(frames):
        frame, dt = _timed(next, it, None)
        if frame is None:
            break
        stages["decode"].append(dt)
        found, dt = _timed(tracker, frame)
        stages["tracker_step"].append(dt)
        if found is not None:
            samples.append((frame, found))
    if not samples:
        raise UserError(f"{source}: no face found in any of {len(stages['decode'])} frames; nothing to time")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        det_sess = _onnx_session(teacher.detector, 128, Path(tmp))
        lm_sess = _onnx_session(teacher.landmarker, LANDMARK_SIZE, Path(tmp))
        for frame, found in samples:
            image, landmarks = found.image, found.landmarks
            x = teacher.detector.preprocess(frame)
            stages["detect_torch"].append(_timed(teacher.detector, x)[1])
            stages["detect_onnx"].append(_timed(det_sess.run, None, {"image": x.numpy()})[1])
            small = torch.from_numpy(image[::4, ::4][:LANDMARK_SIZE].copy())   # any 192² input times the same
            y = torch.nn.functional.interpolate(small.permute(2, 0, 1)[None].float() / 255, size=LANDMARK_SIZE)
            stages["landmarks_torch"].append(_timed(teacher.landmarker, y)[1])
            stages["landmarks_onnx"].append(_timed(lm_sess.run, None, {"image": y.numpy()})[1])
            (H, G), dt = _timed(pose.fit, X, landmarks.astype(np.float64))
            stages["pose_fit"].append(dt)
        for frame, found in samples[:50]:
            image, landmarks = found.image, found.landmarks
            H, G = pose.fit(X, landmarks.astype(np.float64))
            img = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            t0 = time.perf_counter()
            unwrap.unwrap(img, torch.from_numpy(G)[None].float(), torch.from_numpy(H)[None].float(), 256)
            stages["unwrap"].append(time.perf_counter() - t0)
    mediapipe_ms = _mediapipe_ms(source, frames)
    ours = _median_ms(stages["tracker_step"])
    return {
        "source": str(source),
        "frames": len(stages["decode"]),
        "frames_with_face": len(samples),
        "stages": {k: _median_ms(v) for k, v in stages.items() if v},
        "mediapipe_ms": mediapipe_ms,
        "ratio": round(ours / mediapipe_ms, 3) if mediapipe_ms else None,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }


def _mediapipe_ms(source, frames: int) -> float | None:
    try:
        import mediapipe as mp
    except ImportError:
        return None
    times = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=False, max_num_faces=1) as fm:
        for frame in video.frames(source, 0.0, 1.0):
            times.append(_timed(fm.process, frame)[1])
            if len(times) == frames:
                break
    return _median_ms(times)


def add_parser(sub) -> None:
    p = sub.add_parser("bench-teacher", help="per-stage ms of the teacher/enrollment path vs MediaPipe")
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    p.add_argument("--frames", type=options.count(1, 100_000), default=200)
    p.add_argument("--json", type=Path, required=True)
    p.set_defaults(run=_run)


def _run(args) -> None:
    result = bench(args.video, args.frames)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    options.write_json(args.json, result)
    print(json.dumps(result["stages"]), f"mediapipe {result['mediapipe_ms']} ms, ratio {result['ratio']}")
