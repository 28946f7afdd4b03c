"""The embedded default job, torch-free: the sample package tracks its synthetic "wild" clip and, since that
clip was rendered with ground truth (`synthetic_gt.npz` beside it), the report also scores the tracking:
temporal stability (Eq. 10), vertex error (cm) and pose error (degrees), as `facetrack eval` defines them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine import metrics
from engine.errors import UserError
from export.track import track


def run(package: str | Path, out: str | Path, max_frames: int | None = None) -> dict:
    package, out = Path(package), Path(out)
    clip = package / "synthetic.mp4"
    if not clip.is_file():
        raise UserError(f"{clip}: the package has no synthetic clip")
    report = track(package, str(clip), out, max_frames=max_frames)
    gt_path = package / "synthetic_gt.npz"
    if gt_path.is_file():
        with np.load(out / "results.npz") as res, np.load(gt_path) as gt:
            found = res["found"]
            n = len(found)
            G, H = res["G"][found], res["H"][found]
            report["accuracy"] = {
                "frames_scored": int(found.sum()),
                "vertex_error_cm": metrics.vertex_error(G, gt["G"][:n][found])["mean"],
                "pose_error_deg": metrics.pose_error_deg(H, gt["H"][:n][found])["mean"],
                **{k: v for k, v in metrics.temporal_stability(np.where(found[:, None, None], res["G"], np.nan))
                   .items() if k in ("stability", "stability_unguarded", "stability_excluded")},
            }
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
