"""`facetrack eval`: score a tracker on a video with the paper's metrics, optionally against a baseline.

    facetrack eval MODEL VIDEO --json OUT [--gt GT.npz] [--baseline mediapipe] [--smooth] [--max-frames N]

Every tracker (ours, the baseline) sees the same decoded frames in one pass, and one function scores them all,
so the numbers differ only by tracker. Per tracker: temporal stability (Eq. 10) on canonical-frame G, the same on
image points, NME / reprojection px of the iBUG-51 points against dlib (not our teacher), and with --gt the
vertex and rotation errors. OUT also gets a `.png` twin: per-frame stability, ours vs baseline (paper Fig. 6).
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from engine import canonical, metrics, pose, topology, video
from engine.errors import UserError

BASELINES = ("mediapipe", "teacher")
# One Euro settings for --smooth. The filter runs on values divided by the face size (box diagonal of the mean
# shape), so `beta` means the same for G in cm and points in pixels: cutoff = 1 Hz + 1 Hz per face-diagonal/s.
SMOOTHING = {"filter": "one_euro", "min_cutoff_hz": 1.0, "beta": 1.0, "d_cutoff_hz": 1.0, "units": "face diagonals"}


# ------------------------------------------------------------------------------------------------ trackers
@dataclass
class FrameResult:
    G: np.ndarray             # [468, 3] canonical head frame (rigid motion removed), canonical units (cm)
    points: np.ndarray        # [468, 2] frame pixels
    H: np.ndarray | None      # [6] (f, rx, ry, rz, tx, ty) with f and t in FRAME pixels, or None


class Tracker(Protocol):
    name: str
    backend: str

    def reset(self) -> None: ...

    def __call__(self, frame_rgb: np.ndarray) -> FrameResult | None: ...


def _canonical() -> np.ndarray:
    return canonical.load()[0].astype(np.float64)


class MediaPipeTracker:
    """Raw MediaPipe FaceMesh in tracking mode: the baseline (and what our teacher port should reproduce)."""

    name = "mediapipe"

    def __init__(self, refine: bool = False):
        # refine=False: G by 3D Procrustes, the convention the project's reference numbers were measured with;
        # refine=True: pose.fit like TeacherTracker (reads ~0.025 lower stability on the dev clips).
        self.refine = refine
        try:
            import mediapipe as mp
        except ImportError as err:
            raise UserError(f"the mediapipe baseline needs mediapipe==0.10.14 ({err})") from None
        self._mp = mp
        self.backend = f"mediapipe {mp.__version__} FaceMesh (TFLite, CPU)"
        self._mesh = None
        self._X = _canonical()
        self.reset()

    def reset(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
        self._mesh = self._mp.solutions.face_mesh.FaceMesh(static_image_mode=False, refine_landmarks=False,
                                                           max_num_faces=1)

    def __call__(self, frame_rgb: np.ndarray) -> FrameResult | None:
        h, w = frame_rgb.shape[:2]
        res = self._mesh.process(frame_rgb)
        if not res.multi_face_landmarks:
            return None
        # z is normalised by the image width, like x: scale it by w so Y is isotropic (frame pixels).
        Y = np.array([(p.x * w, p.y * h, p.z * w) for p in res.multi_face_landmarks[0].landmark])
        H, G = (pose.fit if self.refine else pose.pose_from_landmarks)(self._X, Y)
        return FrameResult(G, Y[:, :2], H)


class TeacherTracker:
    """Our torch port of the teacher, tracked like enrollment (engine.enroll.FaceTracker) and fitted by pose.fit.

    This is also what a run folder without a trained I2ZNet is evaluated with.
    """

    name = "teacher"

    def __init__(self, teacher=None):
        import torch

        from engine.enroll import CROP_SIZE
        from engine.teacher import Teacher

        self.teacher = teacher or Teacher()
        self.crop_size = CROP_SIZE
        self.backend = f"torch {torch.__version__} ({self.teacher.device.type})"
        self._X = _canonical()
        self.reset()

    def reset(self) -> None:
        from engine.enroll import FaceTracker

        self._track = FaceTracker(self.teacher)

    def __call__(self, frame_rgb: np.ndarray) -> FrameResult | None:
        found = self._track(frame_rgb)
        if found is None:
            return None
        crop, _, landmarks = found
        H, G = pose.fit(self._X, landmarks.astype(np.float64))
        # H is in crop pixels; move its scale and translation to frame pixels (rotation is unchanged).
        k = crop.size / self.crop_size
        H = np.concatenate([[H[0] * k], H[1:4], crop.to_frame(H[None, 4:6], self.crop_size)[0]])
        return FrameResult(G, crop.to_frame(landmarks, self.crop_size), H)


def tracker_for(model: str | Path) -> tuple[Tracker, str]:
    """The tracker for a MODEL argument → (tracker, a note saying what was evaluated).

    MODEL: a run folder, or a baseline name ('mediapipe', 'teacher') to score that tracker alone.
    """
    if str(model) in BASELINES:
        return baseline_tracker(str(model)), str(model)
    path = Path(model)
    if not path.exists():
        raise UserError(f"{path}: no such model (a run folder, or one of {', '.join(BASELINES)})")
    if not path.is_dir():
        raise UserError(f"{path}: MODEL must be a run folder")
    # ---- HOOK: the I2ZNet tracker. engine/i2znet.py provides I2ZTracker(run_dir) with this module's protocol;
    # it is imported only when the run holds trained weights, so evaluation never needs it otherwise.
    if (path / "i2z" / "model.safetensors").is_file():
        try:
            from engine.i2znet import I2ZTracker
        except ImportError as err:
            raise UserError(f"{path}: has a trained I2ZNet but engine.i2znet cannot load it ({err})") from None
        return I2ZTracker(path), f"i2znet ({path})"
    # ---- HOOK (later): an exported performer package (manifest.json + ONNX) gets its runtime tracker here.
    return TeacherTracker(), f"teacher (no i2znet in {path})"


def baseline_tracker(name: str) -> Tracker:
    if name == "mediapipe":
        return MediaPipeTracker()
    if name == "teacher":
        return TeacherTracker()
    raise UserError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)})")


# ------------------------------------------------------------------------------------------------- running
@dataclass
class Track:
    """One tracker's outputs over the clip; lost frames are NaN (no Eq. 10 triplet spans them)."""
    tracker: Tracker
    model: str
    G: list
    points: list
    H: list
    ms: list

    @classmethod
    def start(cls, tracker: Tracker, model: str) -> "Track":
        tracker.reset()
        return cls(tracker, model, [], [], [], [])

    def step(self, frame: np.ndarray) -> None:
        t0 = time.perf_counter()
        r = self.tracker(frame)
        self.ms.append(1000 * (time.perf_counter() - t0))
        self.G.append(np.full((468, 3), np.nan) if r is None else r.G)
        self.points.append(np.full((468, 2), np.nan) if r is None else r.points)
        self.H.append(np.full(6, np.nan) if r is None or r.H is None else r.H)


def _load_gt(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ground-truth file")
    try:
        with np.load(path, allow_pickle=False) as z:
            gt = {k: np.asarray(z[k], np.float64) for k in ("G", "H")}
    except (KeyError, ValueError, OSError) as err:
        raise UserError(f"{path}: not a ground-truth .npz with G [N,468,3] and H [N,6] ({err})") from None
    if gt["G"].shape[1:] != (468, 3) or gt["H"].shape[1:] != (6,) or len(gt["G"]) != len(gt["H"]):
        raise UserError(f"{path}: need G [N,468,3] and H [N,6], got {gt['G'].shape} and {gt['H'].shape}")
    return gt


@contextmanager
def _torch_threads(n: int | None):
    """Set torch's CPU threads for the run, then restore. On a shared CPU, 2 threads fighting other jobs made
    the teacher ~10-100x slower than 1 thread (measured 170-1300 vs 11-15 ms per landmark pass)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluate(model, video_path, gt=None, baseline=None, smooth: bool = False, max_frames: int | None = None,
             reference=None, threads: int | None = None, start: float = 0.0, stop: float = 1.0) -> dict:
    """Score MODEL (a path/name for `tracker_for`, or a Tracker) on a video; `baseline`: a name or a Tracker.

    Returns the OUT dict: our scores at the top level, `baseline` (same keys, or None), run metadata.
    `reference` is the NME reference (default engine.reference.DlibReference()); `threads`: torch CPU threads
    during the run (None: leave as is).
    """
    with _torch_threads(threads):
        out = _evaluate(model, video_path, gt, baseline, smooth, max_frames, reference, start, stop)
        torch = sys.modules.get("torch")      # only there if a torch tracker ran
        out["torch_threads"] = torch.get_num_threads() if torch else None
    return out


def _evaluate(model, video_path, gt, baseline, smooth, max_frames, reference, start=0.0, stop=1.0) -> dict:
    info = video.probe(video_path)                # missing/corrupt video → UserError before any model loads
    truth = _load_gt(gt) if gt is not None else None
    if max_frames is not None and max_frames < 3:
        raise UserError(f"--max-frames must be ≥ 3 (stability needs three frames), got {max_frames}")
    ours = Track.start(*(tracker_for(model) if isinstance(model, (str, Path)) else (model, model.name)))
    base = None
    if baseline is not None:
        b = baseline_tracker(baseline) if isinstance(baseline, str) else baseline
        base = Track.start(b, b.name)
    if reference is None:
        from engine.reference import DlibReference
        reference = DlibReference()

    dlib = []
    if not 0.0 <= start < stop <= 1.0:
        raise UserError(f"need 0 ≤ --start < --stop ≤ 1 (got {start}, {stop})")
    for i, frame in enumerate(video.frames(info.path, start, stop)):
        if max_frames is not None and i >= max_frames:
            break
        ours.step(frame)
        if base is not None:
            base.step(frame)
        d = reference.landmarks(frame)
        dlib.append(np.full((68, 2), np.nan) if d is None else d)
    if not dlib:
        raise UserError(f"{info.path}: no decodable frames")
    dlib = np.asarray(dlib)

    rate = info.fps or 25.0
    out = {
        "video": str(info.path),
        "span": [start, stop],
        **score(ours, dlib, truth, smooth, rate),
        "smooth": smooth,
        "smoothing": dict(SMOOTHING, rate_hz=rate) if smooth else None,
        "reference": {"name": "dlib 68-point (HOG + ERT)", "frames_found": int(np.isfinite(dlib).all((1, 2)).sum())},
        "gt": None if gt is None else str(gt),
        "baseline": None if base is None else score(base, dlib, truth, smooth, rate),
    }
    return out


def _smooth(P: np.ndarray, rate: float) -> np.ndarray:
    """One Euro over each unbroken run of found frames (restarted after a loss), in face-diagonal units."""
    found = np.isfinite(P).all((1, 2))
    if not found.any():
        return P
    mean = P[found].mean(0)
    scale = float(np.linalg.norm(mean[:, :2].max(0) - mean[:, :2].min(0))) or 1.0
    f = metrics.OneEuro(SMOOTHING["min_cutoff_hz"], SMOOTHING["beta"], SMOOTHING["d_cutoff_hz"], rate)
    out = P.copy()
    for t in range(len(P)):
        if not found[t]:
            f.reset()
            continue
        out[t] = f(P[t] / scale) * scale
    return out


def score(track: Track, dlib: np.ndarray, gt: dict | None, smooth: bool, rate: float) -> dict:
    """All metrics for one tracker's outputs (the same function for ours and the baseline)."""
    G, points, H = (np.asarray(a, np.float64) for a in (track.G, track.points, track.H))
    if smooth:
        G, points = _smooth(G, rate), _smooth(points, rate)
    found = np.isfinite(G).all((1, 2))
    try:
        st = metrics.temporal_stability(G)
        st_img = metrics.stability_image(points)["stability"]
    except ValueError:                          # fewer than three consecutive tracked frames
        st, st_img = None, None
    n = metrics.nme(topology.ibug51(points), dlib)
    r = {
        "model": track.model,
        "tracker": track.tracker.name,
        "backend": track.tracker.backend,
        "frames": len(G),
        "frames_lost": int((~found).sum()),
        "stability": st and st["stability"],
        "stability_unguarded": st and st["stability_unguarded"],
        "stability_excluded": st and st["stability_excluded"],
        "stability_image": st_img,
        "nme": n["nme"],
        "reprojection_px": n["reprojection_px"],
        "nme_frames": n["frames"],
        "nme_mismatched": n["mismatched"],
        "vertex_error": None,
        "pose_error_deg": None,
        "gt_frames": None,
        "ms_per_frame": float(np.median(track.ms)),
        "stability_per_frame": st and st["per_frame"],
        "stability_frame_index": st and st["frame_index"],
    }
    if gt is not None:
        m = min(len(G), len(gt["G"]))           # frames both have: the clip may be cut by --max-frames
        both = np.flatnonzero(found[:m])
        r["gt_frames"] = int(len(both))
        if len(both):
            r["vertex_error"] = metrics.vertex_error(G[both], gt["G"][both])["mean"]
            posed = both[np.isfinite(H[both]).all(1)]
            if len(posed):
                r["pose_error_deg"] = metrics.pose_error_deg(H[posed], gt["H"][posed])["mean"]
    return r


# ------------------------------------------------------------------------------------------------- outputs
def _json_safe(x):
    """NaN/inf → null (JSON has no NaN), numpy scalars → Python."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def plot(result: dict, path: str | Path) -> None:
    """Paper Fig. 6: temporal stability per frame, ours vs baseline; means in the legend; gaps where lost."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=120)
    for r, colour in ((result, "tab:red"), (result.get("baseline"), "tab:blue")):
        if not r or r["stability_per_frame"] is None:
            continue
        y = np.full(r["frames"], np.nan)
        y[r["stability_frame_index"]] = r["stability_per_frame"]
        ax.plot(np.arange(r["frames"]), y, color=colour, lw=1.0,
                label=f"{r['model']}: {r['stability']:.3f} (lost {r['frames_lost']})")
    ax.set_xlabel("Frame")
    ax.set_ylabel("Temporal stability")
    ax.set_title(f"{Path(result['video']).name}" + ("  (One Euro on)" if result["smooth"] else ""), fontsize=9)
    ax.axhline(1.0, color="0.6", lw=0.6, ls=":")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(result: dict, out: str | Path) -> tuple[Path, Path]:
    """OUT (JSON) and its `.png` twin."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_json_safe(result), indent=2))
    png = out.with_suffix(".png")
    plot(result, png)
    return out, png


# ---------------------------------------------------------------------------------------------------- CLI
def _fmt(r: dict) -> str:
    def f(v, spec):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)
    return (f"{r['model']}: stability {f(r['stability'], '.3f')} (unguarded {f(r['stability_unguarded'], '.3f')}, "
            f"excluded {f(r['stability_excluded'], '.1%')}), NME {f(r['nme'], '.2f')}% "
            f"({f(r['reprojection_px'], '.2f')} px), image stability {f(r['stability_image'], '.3f')}, "
            f"{r['frames_lost']}/{r['frames']} lost, {r['ms_per_frame']:.1f} ms/frame"
            + (f"\n  warning: the guard left out {r['stability_excluded']:.0%} of the terms: this mesh barely moves, "
               "so `stability` reads near 1 for a frozen face; compare `stability_unguarded` / `stability_image`"
               if (r['stability_excluded'] or 0) > 0.5 else ""))


def _run(args) -> None:
    result = evaluate(args.model, args.video, gt=args.gt, baseline=args.baseline, smooth=args.smooth,
                      max_frames=args.max_frames, threads=args.threads, start=args.start, stop=args.stop)
    out, png = write(result, args.json)
    print(_fmt(result))
    if result["baseline"]:
        print(_fmt(result["baseline"]))
    print(f"→ {out}, {png}")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="stability, NME vs dlib, (gt errors) of a model on a video, vs a baseline")
    p.add_argument("model", help="run folder (a trained I2ZNet if it has one, else the teacher), or "
                                 f"{' / '.join(BASELINES)}")
    p.add_argument("video", type=Path, help="video file or folder of frames")
    p.add_argument("--json", required=True, type=Path, help="OUT: metrics JSON; the plot goes to OUT with .png")
    p.add_argument("--gt", type=Path, help="ground truth .npz (G [N,468,3], H [N,6]) from `facetrack synth`")
    p.add_argument("--baseline", choices=BASELINES, help="also score this tracker on the same frames")
    p.add_argument("--smooth", action="store_true", help="One Euro filter on both trackers (off for research)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--start", type=float, default=0.0, help="first fraction of the video to score (0..1)")
    p.add_argument("--stop", type=float, default=1.0, help="last fraction of the video to score (0..1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 is fastest "
                                                             "on a busy CPU)")
    p.set_defaults(run=_run)
