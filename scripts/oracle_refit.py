"""What a person package could express with a perfect teacher: its loop, refit to the truth's own 468 points.

A diagnostic for synthetic clips (their gt.npz has every vertex): the package's tracking loop runs as shipped, except
that the landmarks its refit fits (the teacher's, fused with the flow) are replaced by the true points projected into
the same crop, optionally with Gaussian noise of NOISE crop pixels. What is still wrong then is the person model's
(its expression basis, its prior, its network), not the teacher's.

    .venv/bin/python scripts/oracle_refit.py PKG CLIP GT [--noise PX] [--frames N] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import pose  # noqa: E402
from engine.evaluate import _load_gt, evaluate  # noqa: E402
from export.runtime import Tracker  # noqa: E402


class OracleModel:
    """The package's crop model, with the truth's points (in the loop's current crop) in place of the teacher's."""

    def __init__(self, model, loop: "OracleLoop"):
        self.model, self.loop = model, loop

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, crop_rgb):
        out, loop = self.model(crop_rgb), self.loop
        truth = pose.project(loop.truth["G"][loop.frame], loop.truth["H"][loop.frame])
        y = loop.crop.to_crop(truth, self.model.crop_size)
        out.landmarks = np.array(out.landmarks, np.float64)
        out.landmarks[:, :2] = y + loop.noise * loop.rng.standard_normal(y.shape)
        return out


class OracleLoop(Tracker):
    """The package's loop as shipped (flow, refit, crops), fed the truth's points frame by frame."""

    def __init__(self, package, truth: dict, noise: float, seed: int = 0):
        super().__init__(package, threads=1)
        self.truth, self.noise, self.rng, self.frame, self.crop = truth, noise, np.random.default_rng(seed), -1, None
        if self.model.expression_basis is not None:
            self.model.expression_basis.view = None     # the truth's points carry no teacher's view bias to remove
        self.model = OracleModel(self.model, self)

    def __call__(self, frame):
        self.frame += 1
        return super().__call__(frame)

    def _run(self, frame, crop, stages):
        self.crop = crop
        return super()._run(frame, crop, stages)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("package"), p.add_argument("clip"), p.add_argument("gt")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise on the true points, crop pixels")
    p.add_argument("--frames", type=int, help="only the first N frames")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    loop = OracleLoop(a.package, _load_gt(a.gt), a.noise)
    r = evaluate((loop, {"tracker": "oracle", "model": a.package, "package_sha256": None}), a.clip, gt=a.gt, threads=1,
                 max_frames=a.frames)
    keys = ("vertex_error_nonrigid", "motion_ratio_gt", "nme_gt", "stability_unguarded", "expression_r")
    out = {k: r[k] for k in keys} | {"noise_px": a.noise}
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
