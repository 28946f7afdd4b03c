"""The performer's expression range: what their own package reads of their widest jaw, smile, pucker, brows and
blinks on the enrollment clip (export.expressions.expression_ranges), kept in the package's manifest so the studio
and `facetrack eval` ramp each ARKit value to 1 there.

The person model reads a wide expression smaller than the face makes it (the teacher's landmarks under-read it, and
the model learns their reading): on the synthetic performers a full smile reads 0.15 and a full pucker 0.12 of
the average face's FULL. The guided enrollment asks for each expression in turn, so its widest is the performer's,
taken where it was asked for (the prompt of each enrollment frame: engine.enroll's prompt.npy).
Measured with the exported graphs on the enrollment's own crops (the run's crops.npy), as the live loop refits
them (engine.tracking.refit; no flow: the crops are not all consecutive).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.tracking import refit
from export.expressions import expression_ranges
from export.package import open_package, set_expression_ranges
from export.runtime import PackageModel


def measure(package, crops, prompted=None) -> dict[str, float]:
    """{RANGED key: FULL} read by the package's graphs on crops [N,S,S,3] uint8 at its crop size; `prompted`: [N]
    the guided prompt key of each crop ("" for none), or None."""
    model = PackageModel(package, backend="cpu")     # export never waits on a TensorRT engine build for this
    G, eyes = [], []
    for crop in crops:
        crop = np.ascontiguousarray(crop)
        out = refit(model(crop), model.expression_basis)
        G.append(out.G)
        eyes.append(model.eyes(crop, out.landmarks[:, :2]))     # the crop as the frame: its points are crop px
    return expression_ranges(np.stack(G), eyes, prompted=prompted)


def calibrate(folder: str | Path, crops, prompted=None) -> dict[str, float]:
    """Measure the package in `folder` on its enrollment crops and write the range into its manifest."""
    ranges = measure(open_package(folder), crops, prompted)
    set_expression_ranges(folder, ranges)
    open_package(folder)            # what we wrote must verify
    return ranges
