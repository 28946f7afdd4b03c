"""`facetrack eval`: score a tracker on a video with the paper's metrics, next to a baseline on the same frames.

    facetrack eval MODEL VIDEO --json OUT [--gt GT.npz] [--baseline mediapipe|facelandmarker|teacher] [--backend B]

MODEL is what a performer runs, a performer package (through export.runtime, on `--backend`), or a run folder
(torch, for development), or a baseline name; anything else is an error, never a stand-in. Every tracker is the
one tracking loop (engine.tracking) with its model, sees the same decoded frames in one pass, and one function
scores them all. Per tracker, led by the measures that a frozen or jittery face cannot fool:
  motion_mm          mean ‖G_t − Ḡ‖ in the canonical frame (how much the face moves); motion_ratio = ours / baseline
  stability_common   Eq. 10 under one guard mask for both trackers (frozen_share: where its own mesh stood still)
  with --gt          vertex_error_nonrigid (rigid similarity removed), motion_ratio_gt, expression_r (Pearson r
                     per ground-truth expression field against the ARKit values the studio streams), nme_gt (NME
                     of the iBUG-51 points against the truth's own: dlib misreads a wide-open mouth); once per
                     clip, expression_r_ceiling: the same ARKit code on the truth's own meshes (what an exact mesh
                     would score: a field the clip hardly exercises cannot reach 0.9 for anyone)
  with gaze in GT    gaze_error_deg (angle between tracked and true gaze per eye, over the frames where the face
                     was found and the true eye is open) and gaze_r (Pearson r of yaw and of pitch), for trackers
                     that read the irises (a package with iris.onnx; for `--baseline mediapipe`, FaceMesh's
                     refine_landmarks graph run beside the reference graph: `gaze_tracker`); OUT then also gets a
                     `.gaze.png`: true vs tracked gaze over time
and the paper's: guarded/unguarded stability, image stability, NME / reprojection px of the iBUG-51 points
against dlib (not our teacher), vertex and rotation error. OUT also gets a `.png` twin: Fig. 6 (stability per
frame) over the face's motion per frame.
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import metrics, options, pose, topology, video
from engine.baselines import BASELINES, open_baseline
from engine.errors import UserError
from engine.run import Run
from engine.tracking import FaceLoop, TrackOptions
from export.expressions import ExpressionEstimator
from export.package import MANIFEST, resolve, sha256

NAMES = ("teacher", *BASELINES)     # MODEL may be one of these instead of a path
# One Euro settings for --smooth. The filter runs on values divided by the face size (box diagonal of the mean
# shape), so `beta` means the same for G in cm and points in pixels: cutoff = 1 Hz + 1 Hz per face-diagonal/s.
SMOOTHING = {"filter": "one_euro", "min_cutoff_hz": 1.0, "beta": 1.0, "d_cutoff_hz": 1.0, "units": "face diagonals"}


# ------------------------------------------------------------------------------------------------ trackers
def tracker_for(model: str | Path, backend: str = "auto", threads: int | None = None,
                fps: float = 30.0, iris: bool = False, track_options: TrackOptions | None = None) -> tuple[FaceLoop, dict]:
    """The tracking loop for a MODEL argument → (loop, what was scored: tracker kind, model, package SHA-256).

    MODEL: a performer package (manifest.json: run through export.runtime on `backend`, what a performer runs),
    a run folder with a trained I2ZNet (torch, for development), or a name: `teacher` (our port, in our loop),
    `mediapipe`, `facelandmarker`. Anything else is a UserError: never a silent substitute. `iris`: a MediaPipe
    baseline also reads the irises (engine.baselines.iris_eyes). `track_options`: the loop's TrackOptions for a
    package or a run folder (default: TrackOptions()).
    """
    name = str(model)
    if name in NAMES:
        if name == "teacher":
            from engine.teacher import TeacherModel      # torch: only when asked for
            loop = FaceLoop(TeacherModel())
        else:
            loop = FaceLoop(open_baseline(name, fps, iris))
        return loop, {"tracker": "baseline", "model": name, "package_sha256": None}
    path = Path(resolve(model))                          # `generic`: the embedded generic package
    if not path.exists():
        raise UserError(f"{path}: no such model (a performer package, a run folder, `generic`, or one of {', '.join(NAMES)})")
    if (path / MANIFEST).is_file():
        from export.runtime import Tracker

        loop = Tracker(path, backend, threads, options=track_options)   # verifies the manifest and every hash first
        return loop, {"tracker": "package", "model": str(path), "package_sha256": sha256(path / MANIFEST)}
    if Run(path).has_tracker():
        if backend not in ("auto", "torch"):
            raise UserError(f"{path}: a run folder runs in torch; --backend {backend} is for performer packages")
        from engine.i2znet import RunModel

        return FaceLoop(RunModel(path), track_options), {"tracker": "run", "model": str(path), "package_sha256": None}
    raise UserError(f"{path}: neither a performer package ({MANIFEST}) nor a run folder with a trained I2ZNet "
                    "(i2z/model.safetensors and dam/)")


# ------------------------------------------------------------------------------------------------- running
@dataclass
class Track:
    """One tracker's outputs over the clip; lost frames are NaN (no Eq. 10 triplet spans them)."""
    loop: FaceLoop
    scored: dict
    G: list = field(default_factory=list)
    points: list = field(default_factory=list)
    H: list = field(default_factory=list)
    ms: list = field(default_factory=list)
    expressions: list = field(default_factory=list)     # the tracker's own ARKit values per frame, or None
    eyes: list = field(default_factory=list)            # FaceResult.eyes per frame (iris graph), or None

    @property
    def expression_ranges(self) -> dict | None:
        """The performer's range the tracker's package carries (export.ranges), or None."""
        package = getattr(getattr(self.loop, "model", None), "package", None)
        return getattr(package, "expression_ranges", None)

    @classmethod
    def start(cls, loop: FaceLoop, scored: dict) -> "Track":
        loop.reset()
        return cls(loop, scored)

    def step(self, frame: np.ndarray) -> None:
        t0 = time.perf_counter()
        r = self.loop(frame)
        self.ms.append(1000 * (time.perf_counter() - t0))
        self.G.append(np.full((468, 3), np.nan) if r is None else r.G)
        self.points.append(np.full((468, 2), np.nan) if r is None else r.points)
        self.H.append(np.full(6, np.nan) if r is None or r.H is None else r.H)
        self.expressions.append(None if r is None else r.expressions)
        self.eyes.append(None if r is None else getattr(r, "eyes", None))


def _load_gt(path: str | Path) -> dict:
    """G, H and, where the clip has them, the expression fields (`expr` [N,E] named by `expr_names`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ground-truth file")
    try:
        with np.load(path, allow_pickle=False) as z:
            gt = {k: np.asarray(z[k], np.float64) for k in ("G", "H")}
            if "expr" in z.files and "expr_names" in z.files:
                gt["expr"] = dict(zip((str(n) for n in z["expr_names"]), np.asarray(z["expr"], np.float64).T))
            if "gaze" in z.files:
                gt["gaze"] = np.asarray(z["gaze"], np.float64)
    except (KeyError, ValueError, OSError) as err:
        raise UserError(f"{path}: not a ground-truth .npz with G [N,468,3] and H [N,6] ({err})") from None
    if gt["G"].shape[1:] != (468, 3) or gt["H"].shape[1:] != (6,) or len(gt["G"]) != len(gt["H"]):
        raise UserError(f"{path}: need G [N,468,3] and H [N,6], got {gt['G'].shape} and {gt['H'].shape}")
    if "gaze" in gt and gt["gaze"].shape != (len(gt["G"]), 2, 2):
        raise UserError(f"{path}: need gaze [N,2,2] beside G [N,...], got {gt['gaze'].shape}")
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
             reference=None, threads: int | None = None, start: float = 0.0, stop: float = 1.0,
             backend: str = "auto", flow: float | None = None) -> dict:
    """Score MODEL (see `tracker_for`, or a (FaceLoop, scored) pair) on a video; `baseline`: a name or such a pair.

    Returns the OUT dict: our scores at the top level, `baseline` (same keys, or None), run metadata.
    `reference` is the NME reference (default engine.reference.DlibReference()); `threads`: CPU threads of the
    run (torch's, and ONNX Runtime's for a package; None: leave as is); `backend`: a package's runtime backend;
    `flow`: TrackOptions.flow for a package or run folder (None: the default).
    """
    with _torch_threads(threads):
        out = _evaluate(model, video_path, gt, baseline, smooth, max_frames, reference, start, stop, backend, threads,
                        None if flow is None else TrackOptions(flow=flow))
        torch = sys.modules.get("torch")      # only there if a torch tracker ran
        out["torch_threads"] = torch.get_num_threads() if torch else None
    return out


def _evaluate(model, video_path, gt, baseline, smooth, max_frames, reference, start, stop, backend, threads,
              track_options) -> dict:
    info = video.probe(video_path)                # missing/corrupt video → UserError before any model loads
    truth = _load_gt(gt) if gt is not None else None
    if max_frames is not None and max_frames < 3:
        raise UserError(f"--max-frames must be ≥ 3 (stability needs three frames), got {max_frames}")
    if not 0.0 <= start < stop <= 1.0:
        raise UserError(f"need 0 ≤ --start < --stop ≤ 1 (got {start}, {stop})")
    rate = info.fps or 25.0
    ours = Track.start(*(tracker_for(model, backend, threads, rate, track_options=track_options)
                         if isinstance(model, (str, Path)) else model))
    base = iris_peer = None
    if baseline is not None:
        base = Track.start(*(tracker_for(baseline, fps=rate) if isinstance(baseline, str) else baseline))
        # The baseline's own numbers stay those of its reference graph; its gaze comes from MediaPipe's
        # refine_landmarks graph (irises) run beside it on the same frames.
        if baseline == "mediapipe" and truth is not None and "gaze" in truth:
            iris_peer = Track.start(*tracker_for("mediapipe", fps=rate, iris=True))
    if reference is None:
        from engine.reference import DlibReference
        reference = DlibReference()

    dlib = []
    for i, frame in enumerate(video.frames(info.path, start, stop)):
        if max_frames is not None and i >= max_frames:
            break
        ours.step(frame)
        for peer in (base, iris_peer):
            if peer is not None:
                peer.step(frame)
        d = reference.landmarks(frame)
        dlib.append(np.full((68, 2), np.nan) if d is None else d)
    if not dlib:
        raise UserError(f"{info.path}: no decodable frames")
    dlib = np.asarray(dlib)

    mine = score(ours, dlib, truth, smooth, rate)
    theirs = None if base is None else score(base, dlib, truth, smooth, rate)
    if iris_peer is not None:
        G = np.asarray(iris_peer.G, np.float64)
        theirs.update(_gaze_scores(G, iris_peer.eyes, truth, min(len(G), len(truth["G"]))),
                      gaze_tracker=iris_peer.loop.backend)
    if theirs is not None:
        compare(mine, theirs)
    return {
        "video": str(info.path),
        "span": [start, stop],
        **mine,
        "smooth": smooth,
        "smoothing": dict(SMOOTHING, rate_hz=rate) if smooth else None,
        "reference": {"name": "dlib 68-point (HOG + ERT)", "frames_found": int(np.isfinite(dlib).all((1, 2)).sum())},
        "gt": None if gt is None else str(gt),
        "expression_r_ceiling": None if truth is None else expression_ceiling(truth, len(dlib)),
        "baseline": theirs,
    }


def expression_ceiling(truth: dict, frames: int) -> dict | None:
    """expression_r of the ARKit code on the truth's own meshes over the first `frames` frames (the average face's
    range; blinks from the mesh's lids): what a tracker whose mesh were exact would score on this clip. A field the
    clip hardly exercises, or one the ARKit split of a measure hands elsewhere (a pucker with the lips apart is a
    funnel), stays well below 1 here, whoever tracks. None without expressions in the truth."""
    if "expr" not in truth:
        return None
    G = np.asarray(truth["G"][:frames], np.float64)
    arkit = arkit_series(G, [None] * len(G), None, None)
    fields = {k: v[:len(G)] for k, v in truth["expr"].items() if k in metrics.GT_TO_ARKIT}
    return metrics.expression_r(metrics.gt_channels(arkit), fields)


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


def _estimate(G: np.ndarray, eyes: list | None, ranges: dict | None = None) -> tuple[list, list]:
    """Per frame (ARKit values, gaze {side: (yaw, pitch)} or None) from export.expressions on G, calibrated on the
    clip's median face (the same rule for every tracker: a performer calibrates on a resting face; expressions are
    rare enough that the median is one) and, where the iris model ran (`eyes`, Track.eyes), on the clip's median
    eyes by the same rule; None where lost. One estimator runs the frames in order, so its blink holds act. `ranges`:
    the performer's range a package carries (Track.expression_ranges), as the studio ramps to it."""
    T = len(G)
    found = np.isfinite(G).all((1, 2))
    estimator = ExpressionEstimator(ranges=ranges)
    if found.any():
        estimator.calibrate(np.median(G[found], 0))
    eyes = eyes if eyes is not None else [None] * T
    seen = [e for e in eyes if e is not None]
    if seen:
        estimator.calibrate_eyes({s: np.median([e[s]["aperture"] for e in seen]) for s in ("left", "right")},
                                 {s: tuple(np.median([e[s]["offset"] for e in seen], 0)) for s in ("left", "right")})
    values, gaze = [], []
    for t in range(T):
        values.append(estimator(G[t], eyes=eyes[t]) if found[t] else None)
        gaze.append(estimator.last_gaze if found[t] else None)
    return values, gaze


def arkit_series(G: np.ndarray, own: list, eyes: list | None = None,
                 ranges: dict | None = None) -> dict[str, np.ndarray]:
    """ARKit values per frame {name: [T]} (NaN where lost): the tracker's own where it gives them (Face
    Landmarker's blendshapes), else export.expressions (what the studio streams) on G and `eyes` (`_estimate`)."""
    if any(e is not None for e in own):
        names = next(e for e in own if e is not None).keys()
        return {n: np.array([np.nan if e is None else e.get(n, np.nan) for e in own]) for n in names}
    values, _ = _estimate(G, eyes, ranges)
    names = next((v for v in values if v is not None), {}).keys()
    return {n: np.array([np.nan if v is None else v[n] for v in values]) for n in names}


def gaze_series(G: np.ndarray, eyes: list, ranges: dict | None = None) -> np.ndarray:
    """The gaze the studio streams, [T, 2, 2] ((left, right) × (yaw, pitch), radians; NaN where lost or where the
    tracker read no eyes): export.expressions' gaze relative to the clip's median eyes (`_estimate`)."""
    _, gaze = _estimate(G, eyes, ranges)        # the range decides when a closing lid holds the gaze
    nan = np.full((2, 2), np.nan)
    return np.array([nan if g is None else [g["left"], g["right"]] for g in gaze], np.float64).reshape(-1, 2, 2)


def _gaze_scores(G: np.ndarray, eyes: list, gt: dict, m: int, ranges: dict | None = None) -> dict:
    """gaze_error_deg and gaze_r on the first m frames, over the frames where the true eye is open (its lid field
    below engine.synth.BLINK_CLOSED, where the synthetic iris is visible) and the tracker has a gaze; the tracked
    series (gaze_per_frame), and the truth for the plot (working keys)."""
    from engine.synth import BLINK_CLOSED, SIDES

    tracked, truth = gaze_series(G[:m], eyes[:m], ranges), gt["gaze"][:m]
    lids = np.stack([gt["expr"][f"blink_{s}"][:m] for s in SIDES], -1) if "expr" in gt else np.zeros((m, 2))
    open_ = lids < BLINK_CLOSED
    return {"gaze_error_deg": metrics.gaze_error_deg(tracked, truth, open_),
            "gaze_r": metrics.gaze_r(tracked, truth, open_),
            "gaze_per_frame": tracked.tolist(),
            "_gaze": tracked, "_gaze_truth": truth, "_gaze_open": open_}


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
        **track.scored,
        "backend": track.loop.backend,
        "fallback": getattr(track.loop, "fallback", None),
        "flow": getattr(track.loop, "flow_weight", None),     # TrackOptions.flow where the loop fuses flow
        "expression_ranges": track.expression_ranges,        # the package's own range its ARKit values ramp to
        "frames": len(G),
        "frames_lost": int((~found).sum()),
        "motion_mm": metrics.motion_mm(G),
        "motion_ratio": None,
        "stability_common": None,
        "frozen_share": None,
        "stability": st and st["stability"],
        "stability_unguarded": st and st["stability_unguarded"],
        "stability_excluded": st and st["stability_excluded"],
        "stability_image": st_img,
        "nme": n["nme"],
        "reprojection_px": n["reprojection_px"],
        "nme_frames": n["frames"],
        "nme_mismatched": n["mismatched"],
        "vertex_error": None,
        "vertex_error_nonrigid": None,
        "nme_gt": None,
        "pose_error_deg": None,
        "motion_ratio_gt": None,
        "expression_r": None,
        "gaze_error_deg": None,
        "gaze_r": None,
        "gaze_per_frame": None,                 # [T][2][2] radians as the truth's `gaze`, when gaze was scored
        "gt_frames": None,
        "ms_per_frame": float(np.median(track.ms)),
        "stability_per_frame": st and st["per_frame"],
        "stability_frame_index": st and st["frame_index"],
        "motion_per_frame_mm": motion_per_frame(G),
        "_G": G,                                # for `compare`; dropped before writing
    }
    if gt is not None:
        m = min(len(G), len(gt["G"]))           # frames both have: the clip may be cut by --max-frames
        both = np.flatnonzero(found[:m])
        r["gt_frames"] = int(len(both))
        if len(both):
            r["vertex_error"] = metrics.vertex_error(G[both], gt["G"][both])["mean"]
            r["vertex_error_nonrigid"] = metrics.vertex_error_nonrigid(G[both], gt["G"][both])["mean"]
            r["motion_ratio_gt"] = metrics.motion_ratio(G[:m], np.where(found[:m, None, None], gt["G"][:m], np.nan))
            true_points = pose.project(gt["G"][both], gt["H"][both])
            r["nme_gt"] = metrics.nme_gt(topology.ibug51(points[both]), topology.ibug51(true_points))
            posed = both[np.isfinite(H[both]).all(1)]
            if len(posed):
                r["pose_error_deg"] = metrics.pose_error_deg(H[posed], gt["H"][posed])["mean"]
        if "expr" in gt:
            arkit = arkit_series(G, track.expressions, track.eyes, track.expression_ranges)
            arkit = {k: v[:m] for k, v in arkit.items()}
            truth = {k: v[:m] for k, v in gt["expr"].items() if k in metrics.GT_TO_ARKIT}
            r["expression_r"] = metrics.expression_r(metrics.gt_channels(arkit), truth)
        if "gaze" in gt and any(e is not None for e in track.eyes):
            r.update(_gaze_scores(G, track.eyes, gt, m, track.expression_ranges))
    return r


def motion_per_frame(G: np.ndarray) -> list:
    """‖G_t − Ḡ‖ per frame in mm (mean over vertices; NaN where lost): the face's movement, for the plot."""
    found = np.isfinite(G).all((1, 2))
    if not found.any():
        return [None] * len(G)
    d = 10.0 * np.linalg.norm(G - G[found].mean(0), axis=-1).mean(-1)
    return [float(x) if np.isfinite(x) else None for x in d]


def compare(ours: dict, base: dict) -> None:
    """Numbers that only mean something side by side, on the same frames: motion ratio and Eq. 10 under one
    guard mask for both (a frozen face cannot pass as stable there)."""
    Ga, Gb = ours["_G"], base["_G"]
    ours["motion_ratio"] = metrics.motion_ratio(Ga, Gb)
    base["motion_ratio"] = 1.0 if ours["motion_ratio"] is not None else None
    try:
        common = metrics.stability_common(Ga, Gb)
    except ValueError:                          # no triplet both trackers found
        return
    for r, k in ((ours, "a"), (base, "b")):
        r["stability_common"] = common[k]["stability"]
        r["frozen_share"] = common[k]["frozen_share"]


# ------------------------------------------------------------------------------------------------- outputs
def _json_safe(x):
    """NaN/inf → null (JSON has no NaN), numpy scalars → Python; keys starting with _ are working data."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _label(r: dict) -> str:
    return r["model"] if r["tracker"] != "package" else f"package {Path(r['model']).name}"


def _common(r: dict) -> str:
    if r["stability_common"] is None and r["frozen_share"] is not None:
        return f"n/a: frozen in {r['frozen_share']:.0%} of the terms"
    return "n/a" if r["stability_common"] is None else f"{r['stability_common']:.3f}"


def plot(result: dict, path: str | Path) -> None:
    """Paper Fig. 6 (temporal stability per frame, ours vs baseline) over the face's motion per frame, so a
    frozen face shows as a flat motion line however stable it looks; means in the legends; gaps where lost."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def f(v, spec=".3f"):
        return "n/a" if v is None else format(v, spec)

    fig, (ax, mx) = plt.subplots(2, 1, figsize=(8, 5.2), dpi=120, sharex=True)
    for r, colour in ((result, "tab:red"), (result.get("baseline"), "tab:blue")):
        if not r:
            continue
        if r["stability_per_frame"] is not None:
            y = np.full(r["frames"], np.nan)
            y[r["stability_frame_index"]] = r["stability_per_frame"]
            ax.plot(np.arange(r["frames"]), y, color=colour, lw=1.0,
                    label=f"{_label(r)}: {f(r['stability'])}, common guard {_common(r)} (lost {r['frames_lost']})")
        motion = np.array([np.nan if v is None else v for v in r["motion_per_frame_mm"]], float)
        mx.plot(np.arange(r["frames"]), motion, color=colour, lw=1.0,
                label=f"{_label(r)}: {f(r['motion_mm'], '.2f')} mm")
    ax.set_ylabel("Temporal stability")
    ax.set_title(f"{Path(result['video']).name}" + ("  (One Euro on)" if result["smooth"] else ""), fontsize=9)
    ax.axhline(1.0, color="0.6", lw=0.6, ls=":")
    mx.set_ylabel("Face motion ‖G−Ḡ‖ (mm)")
    mx.set_xlabel("Frame")
    for a in (ax, mx):
        a.legend(fontsize=7, loc="upper right")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_gaze(result: dict, path: str | Path) -> None:
    """True vs tracked yaw and pitch (degrees) over the frames, the subject's left eye (the right one follows the
    same truth), ours and the baseline where they read gaze; frames where the true eye is closed are shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = next(r for r in (result, result.get("baseline")) if r and "_gaze_truth" in r)
    truth, open_ = scored["_gaze_truth"], scored["_gaze_open"]
    t = np.arange(len(truth))
    def median(r, side):
        v = r["gaze_error_deg"][side]["median"]
        return "n/a" if v is None else f"{v:.1f}°"

    fig, axes = plt.subplots(2, 1, figsize=(8, 4.6), dpi=100, sharex=True)
    for j, (ax, axis) in enumerate(zip(axes, ("yaw (> 0: subject's right)", "pitch (> 0: down)"))):
        ax.plot(t, np.degrees(truth[:, 0, j]), color="k", lw=1.6, label="ground truth")
        for r, colour in ((result, "tab:red"), (result.get("baseline"), "tab:blue")):
            if r and "_gaze" in r:
                label = f"{_label(r)} (median error: left {median(r, 'left')}, right {median(r, 'right')})"
                ax.plot(t, np.degrees(r["_gaze"][:, 0, j]), color=colour, lw=0.9, label=label)
        ax.fill_between(t, 0, 1, where=~open_[:, 0], transform=ax.get_xaxis_transform(), color="0.85", lw=0)
        ax.set_ylabel(f"{axis.split()[0]} (°)")
        ax.set_title(f"left eye {axis}", fontsize=8, loc="left")
        ax.grid(alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="upper center", ncol=3, frameon=False)
    axes[1].set_xlabel(f"Frame of {Path(result['video']).name} (shaded: eye closed in the truth, not scored)")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, format="png")
    plt.close(fig)


def write(result: dict, out: str | Path) -> tuple[Path, Path]:
    """OUT (JSON) and its `.png` twin (and `.gaze.png` when gaze was scored), each written atomically (an earlier
    OUT stays whole if this fails)."""
    out = options.writable_file(out, "--json")     # engine.cli checked it before the run; this makes the folder
    options.write_json(out, _json_safe(result))
    png = out.with_suffix(".png")
    with options.atomic_path(png) as tmp:
        plot(result, tmp)
    if any(r and "_gaze_truth" in r for r in (result, result.get("baseline"))):
        with options.atomic_path(out.with_suffix(".gaze.png")) as tmp:
            plot_gaze(result, tmp)
    return out, png


# ---------------------------------------------------------------------------------------------------- CLI
def _fmt(r: dict) -> str:
    def f(v, spec):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)
    expr = r.get("expression_r")
    line = (f"{_label(r)} [{r['tracker']}, {r['backend']}]: motion {f(r['motion_mm'], '.2f')} mm "
            f"(ratio {f(r['motion_ratio'], '.2f')}), stability common-guard {_common(r)}, "
            f"unguarded {f(r['stability_unguarded'], '.3f')}, guarded {f(r['stability'], '.3f')} "
            f"(excluded {f(r['stability_excluded'], '.1%')}), NME {f(r['nme'], '.2f')}% "
            f"({f(r['reprojection_px'], '.2f')} px), {r['frames_lost']}/{r['frames']} lost, "
            f"{r['ms_per_frame']:.1f} ms/frame")
    if r.get("vertex_error") is not None:
        line += (f"\n  vs GT: vertex {f(r['vertex_error'], '.3f')} cm (non-rigid {f(r['vertex_error_nonrigid'], '.3f')}),"
                 f" NME {f(r['nme_gt'], '.2f')}%, pose {f(r['pose_error_deg'], '.2f')}°,"
                 f" motion ratio {f(r['motion_ratio_gt'], '.2f')}")
    if expr:
        line += "\n  expression r: " + ", ".join(f"{k} {f(v, '.2f')}" for k, v in expr.items())
    if r.get("gaze_error_deg"):
        e, c = r["gaze_error_deg"], r["gaze_r"]
        line += "\n  gaze error: " + ", ".join(
            f"{s} {f(e[s]['mean'], '.1f')}° mean, {f(e[s]['median'], '.1f')}° median over {e[s]['frames']} frames "
            f"(r yaw {f(c[s]['yaw'], '.2f')}, pitch {f(c[s]['pitch'], '.2f')})" for s in e)
    return line


def _run(args) -> None:
    result = evaluate(args.model, args.video, gt=args.gt, baseline=args.baseline, smooth=args.smooth,
                      max_frames=args.max_frames, threads=args.threads, start=args.start, stop=args.stop,
                      backend=args.backend, flow=args.flow)
    if result["frames_lost"] == result["frames"]:    # nothing to score: exit 2 (README), keep any earlier OUT
        raise UserError(f"{result['video']}: {result['model']} found no face in any of {result['frames']} frames")
    out, png = write(result, args.json)
    print(_fmt(result))
    if result["baseline"]:
        print(_fmt(result["baseline"]))
    if result.get("expression_r_ceiling"):
        print("expression r of the ARKit code on the truth's own meshes (this clip's ceiling): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["expression_r_ceiling"].items() if v is not None))
    print(f"→ {out}, {png}")


def add_parser(subparsers) -> None:
    from export.runtime import BACKENDS

    p = subparsers.add_parser("eval", help="motion, stability, NME vs dlib, (gt errors, expression r) of a model "
                                           "on a video, vs a baseline on the same frames")
    p.add_argument("model", help=f"performer package, run folder (trained I2ZNet), or {' / '.join(NAMES)}")
    p.add_argument("video", type=Path, help="video file or folder of frames")
    p.add_argument("--json", required=True, type=Path, help="OUT: metrics JSON; the plot goes to OUT with .png")
    p.add_argument("--gt", type=Path, help="ground truth .npz (G [N,468,3], H [N,6], expr) from `facetrack synth`")
    p.add_argument("--baseline", choices=NAMES, help="also score this tracker on the same frames")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="a package's runtime backend (as in track)")
    p.add_argument("--smooth", action="store_true", help="One Euro filter on both trackers (off for research)")
    p.add_argument("--flow", type=options.nonnegative(100.0), default=None,
                   help="a package's optical-flow weight w (engine.flow; default 1, 0: the teacher's landmarks alone)")
    p.add_argument("--max-frames", type=options.count(3), default=None)
    p.add_argument("--start", type=options.fraction, default=0.0, help="first fraction of the video to score (0..1)")
    p.add_argument("--stop", type=options.fraction, default=1.0, help="last fraction of the video to score (0..1)")
    p.add_argument("--threads", type=options.threads, default=None, help="CPU threads for torch and ONNX Runtime (default: "
                                                             "theirs; 1 is fastest on a busy CPU)")
    p.set_defaults(run=_run)
