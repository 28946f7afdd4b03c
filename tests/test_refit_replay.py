"""scripts/refit_replay.py: replaying the recorded refit calls with the shipped settings gives eval's answers and
measures exactly, and a changed setting changes them the way the loop would (no temporal prior: less steady)."""
import math
from pathlib import Path

import numpy as np

from engine import tracking
from engine.evaluate import _load_gt
from export.package import open_package
from export.runtime import package_basis

SAMPLE = Path("export/sample_package")
GT = SAMPLE / "synthetic_gt.npz"
FRAMES = 40


def test_replay_reproduces_eval_and_moves_with_its_settings(tmp_path, script):
    rr = script("refit_replay")
    data, evaluated = rr.record(str(SAMPLE), str(SAMPLE / "synthetic.mp4"), tmp_path / "rec.npz", frames=FRAMES, gt=GT)
    assert len(data["eyes"]) == FRAMES and len(data["frame"]) >= FRAMES
    data = dict(np.load(tmp_path / "rec.npz"))                 # what was written is what replays
    package, truth = open_package(SAMPLE), _load_gt(GT)

    def replayed(**knobs):
        with rr.settings(**knobs):
            basis = package_basis(package)
        G = rr.replay(data, basis)
        return G, rr.score(data, G, package.expression_ranges, truth)

    G, shipped = replayed()
    np.testing.assert_allclose(G, data["shipped"], atol=1e-9)
    for key in ("stability_unguarded", "vertex_error_nonrigid", "motion_ratio_gt"):
        assert math.isclose(shipped[key], evaluated[key], rel_tol=1e-9), key
    for field, r in evaluated["expression_r"].items():
        assert (r is None and shipped["expression_r"][field] is None) or math.isclose(
            shipped["expression_r"][field], r, rel_tol=1e-9, abs_tol=1e-12), field
    assert tracking.REFIT_TEMPORAL > 0                          # the settings came back after the block

    _, free = replayed(temporal=0.0)
    assert free["stability_unguarded"] > 1.03 * shipped["stability_unguarded"]
