"""scripts/oracle_refit.py: the shipped loop fed the truth's points reads the truth far better than with the teacher,
and noise on those points costs accuracy (so the truth really is what the refit fits)."""
from pathlib import Path

import numpy as np

from engine.evaluate import _load_gt, evaluate
from export.runtime import Tracker

SAMPLE = Path("export/sample_package")
FRAMES = 40


def _score(loop):
    r = evaluate((loop, {"tracker": "package", "model": str(SAMPLE), "package_sha256": None}),
                 SAMPLE / "synthetic.mp4", gt=SAMPLE / "synthetic_gt.npz", max_frames=FRAMES, threads=1)
    return r["nme_gt"], r["vertex_error_nonrigid"]


def test_the_truths_points_make_the_package_read_the_truth(script):
    oracle = script("oracle_refit")
    truth = _load_gt(SAMPLE / "synthetic_gt.npz")
    shipped = _score(Tracker(SAMPLE, "cpu", 1))
    exact = _score(oracle.OracleLoop(SAMPLE, truth, noise=0.0))
    noisy = _score(oracle.OracleLoop(SAMPLE, truth, noise=4.0))
    assert exact[0] < 0.7 * shipped[0] and exact[1] < shipped[1]        # 2D and 3D both closer to the truth
    assert exact[0] < noisy[0]
    assert np.isfinite(shipped).all()
