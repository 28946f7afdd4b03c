"""Replay a package's per-frame refit offline with other settings: a fast bench for engine.tracking's refit knobs.

`record` runs the package's loop on a clip as `facetrack eval` does (MediaPipe FaceMesh beside it with --baseline)
and keeps what each refit call was given: the network's G and H, the flow-fused teacher landmarks, and whether the
last frame's answer was there to stay near; and per frame the iris model's eyes. `replay` runs the refit chain again
on those inputs with ρ (REFIT_PRIOR), λ (REFIT_CHIN) and τ (REFIT_TEMPORAL) as asked and scores the answers as eval
does: stability and motion against the baseline, and with --gt the non-rigid error, motion against the truth and
expression r. With the shipped settings it gives eval's numbers exactly. What it leaves out is the crop's response
to a changed pose, which the crop's 1 % dead band mostly holds (docs/BENCHMARKS.md, "eleventh step").

    .venv/bin/python scripts/refit_replay.py record PKG CLIP OUT.npz [--baseline mediapipe] [--frames N]
    .venv/bin/python scripts/refit_replay.py replay OUT.npz PKG [--gt GT] [--prior R] [--chin L] [--temporal T]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import metrics, tracking  # noqa: E402
from engine.evaluate import _load_gt, arkit_series, evaluate  # noqa: E402
from export.package import open_package  # noqa: E402
from export.runtime import Tracker, package_basis  # noqa: E402

SIDES = ("left", "right")


class Recorder(Tracker):
    """The package's loop as shipped, keeping each refit call's inputs (`calls`) and each frame's eyes."""

    def __init__(self, package):
        super().__init__(package, threads=1)
        self.calls: list[tuple] = []      # (frame, G, H, landmarks [468,2], follows the last frame's answer)
        self.eyes: list = []              # per frame: [2 sides, (aperture, offset x, offset y)] or NaN

    def __call__(self, frame):
        result = super().__call__(frame)
        e = result.eyes if result is not None else None
        self.eyes.append([[e[s]["aperture"], *e[s]["offset"]] for s in SIDES] if e else np.full((2, 3), np.nan))
        return result


@contextlib.contextmanager
def recording(loop: Recorder):
    """engine.tracking.refit, with its inputs kept by `loop`."""
    shipped = tracking.refit

    def refit(out, basis=None, previous=None):
        loop.calls.append((len(loop.eyes), np.asarray(out.G, np.float64), np.asarray(out.H, np.float64),
                           np.asarray(out.landmarks, np.float64)[:, :2], previous is not None))
        return shipped(out, basis, previous)

    tracking.refit = refit
    try:
        yield
    finally:
        tracking.refit = shipped


def record(package: str, clip: str, out: Path, baseline: str | None = None, frames: int | None = None,
           gt: Path | None = None) -> tuple[dict, dict]:
    """The recording (also written to `out`) and eval's result for the same run."""
    loop = Recorder(package)
    with recording(loop):
        r = evaluate((loop, {"tracker": "package", "model": package, "package_sha256": None}), clip, gt=gt,
                     baseline=baseline, max_frames=frames, threads=1)
    frame, G, H, y, follows = zip(*loop.calls)
    data = {"frame": np.array(frame), "G": np.array(G), "H": np.array(H), "landmarks": np.array(y),
            "follows": np.array(follows), "eyes": np.array(loop.eyes, np.float64), "shipped": r["_G"]}
    if r["baseline"]:
        data["baseline"] = r["baseline"]["_G"]
    np.savez_compressed(out, **data)
    return data, r


@contextlib.contextmanager
def settings(prior: float | None = None, chin: float | None = None, temporal: float | None = None):
    """engine.tracking's refit constants set for the block (None: as shipped)."""
    names = {"REFIT_PRIOR": prior, "REFIT_CHIN": chin, "REFIT_TEMPORAL": temporal}
    kept = {n: getattr(tracking, n) for n in names}
    for n, v in names.items():
        if v is not None:
            setattr(tracking, n, float(v))
    try:
        yield
    finally:
        for n, v in kept.items():
            setattr(tracking, n, v)


def replay(data: dict, basis: tracking.ExpressionBasis) -> np.ndarray:
    """Each frame's answer G [T,468,3] (NaN where the loop lost the face): the refit chain run again on the recorded
    calls, each call staying near the last frame's answer where the loop's did."""
    T = len(data["eyes"])
    out = np.full((T, 468, 3), np.nan)
    previous = None
    for t, G, H, y, follows in zip(data["frame"], data["G"], data["H"], data["landmarks"], data["follows"]):
        call = tracking.CropOutput(points=y, presence=1.0, G=G, H=H, landmarks=y)
        out[t] = previous = tracking.refit(call, basis, previous if follows else None).G   # a frame's last call
    out[~np.isfinite(data["shipped"]).all((1, 2))] = np.nan    # frames the loop lost (its face flag)
    return out


def _eyes(row: np.ndarray):
    return None if np.isnan(row).any() else {s: {"aperture": a, "offset": (x, y)} for s, (a, x, y) in zip(SIDES, row)}


def score(data: dict, G: np.ndarray, ranges: dict | None, gt: dict | None = None) -> dict:
    """eval's measures of the answers G that depend on the refit."""
    s = {"stability_unguarded": metrics.temporal_stability(G)["stability_unguarded"]}
    if "baseline" in data:
        B = data["baseline"]
        common = metrics.stability_common(G, B)
        s["common_guard_vs_baseline"] = common["a"]["stability"] / common["b"]["stability"]
        s["unguarded_vs_baseline"] = s["stability_unguarded"] / metrics.temporal_stability(B)["stability_unguarded"]
        s["motion_ratio"] = metrics.motion_ratio(G, B)
    if gt is not None:
        m = min(len(G), len(gt["G"]))
        s["vertex_error_nonrigid"] = metrics.vertex_error_nonrigid(G[:m], gt["G"][:m])["mean"]
        s["motion_ratio_gt"] = metrics.motion_ratio(G[:m], gt["G"][:m])
        arkit = arkit_series(G[:m], [None] * m, [_eyes(e) for e in data["eyes"][:m]], ranges)
        truth = {k: v[:m] for k, v in gt["expr"].items() if k in metrics.GT_TO_ARKIT}
        s["expression_r"] = metrics.expression_r(metrics.gt_channels(arkit), truth)
    return s


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("package"), r.add_argument("clip"), r.add_argument("out", type=Path)
    r.add_argument("--baseline", choices=("mediapipe",))
    r.add_argument("--frames", type=int)
    q = sub.add_parser("replay")
    q.add_argument("recording", type=Path), q.add_argument("package")
    q.add_argument("--gt", type=Path)
    for flag, what in (("prior", "ρ"), ("chin", "λ"), ("temporal", "τ")):
        q.add_argument(f"--{flag}", type=float, help=f"{what} (default: as shipped)")
    a = p.parse_args(argv)
    if a.command == "record":
        data, _ = record(a.package, a.clip, a.out, a.baseline, a.frames)
        print(f"{len(data['frame'])} refit calls over {len(data['eyes'])} frames → {a.out}")
        return
    package = open_package(a.package)
    if package.basis() is None:
        raise SystemExit(f"error: {a.package} has no expression basis: its refit is the pose alone")
    data = dict(np.load(a.recording))
    with settings(a.prior, a.chin, a.temporal):
        basis = package_basis(package)
    G = replay(data, basis)
    print(json.dumps(score(data, G, package.expression_ranges, _load_gt(a.gt) if a.gt else None), indent=1))


if __name__ == "__main__":
    main()
