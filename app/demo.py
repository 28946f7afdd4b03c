"""The embedded default job, torch-free: the sample package tracks its synthetic "wild" clip through the studio's
pipeline (`facetrack track`: smoothing and ARKit values as the studio streams them) and, since that clip was
rendered with ground truth (`synthetic_gt.npz` beside it), the report also scores what the session recorded:
vertex error (cm), pose error (degrees), temporal stability (Eq. 10) and face motion next to the truth's."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.recording import load_session
from app.track import track
from engine import metrics, options
from engine.errors import UserError


def run(package: str | Path, out: str | Path, max_frames: int | None = None) -> dict:
    package, out = Path(package), Path(out)
    clip = package / "synthetic.mp4"
    if not clip.is_file():
        raise UserError(f"{clip}: the package has no synthetic clip")
    report = track(package, str(clip), out, max_frames=max_frames)
    gt_path = package / "synthetic_gt.npz"
    if gt_path.is_file():
        session = load_session(out)
        with np.load(gt_path, allow_pickle=False) as gt:
            n, found = len(session), session.found
            G = np.where(found[:, None, None], session.G, np.nan)
            G_gt = np.where(found[:, None, None], gt["G"][:n], np.nan)
            report["accuracy"] = {
                "frames_scored": int(found.sum()),
                "smoothing": report["smoothing"],
                "vertex_error_cm": metrics.vertex_error(G[found], gt["G"][:n][found])["mean"],
                "vertex_error_nonrigid_cm": metrics.vertex_error_nonrigid(G[found], gt["G"][:n][found])["mean"],
                "pose_error_deg": metrics.pose_error_deg(session.H[found], gt["H"][:n][found])["mean"],
                "motion_mm": metrics.motion_mm(G), "motion_ratio_gt": metrics.motion_ratio(G, G_gt),
                **{k: v for k, v in metrics.temporal_stability(G).items()
                   if k in ("stability", "stability_unguarded", "stability_excluded")},
            }
        options.write_json(out / "report.json", report)
    return report
