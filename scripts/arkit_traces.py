"""ARKit traces of a synthetic clip against its ground truth (docs/img/arkit_traces.png): the package's values (as the
studio streams them, through `facetrack eval`'s tracking and ARKit code), MediaPipe FaceMesh's, and the same ARKit
code on the ground-truth meshes (the ceiling: where expressions overlap, one can hide another's measure), per field.

    .venv/bin/python scripts/arkit_traces.py [PACKAGE] [--clip VIDEO --gt GT.npz] [--out docs/img/arkit_traces.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import evaluate, metrics, video  # noqa: E402
from export.package import SAMPLE_PACKAGE  # noqa: E402


def series(model, clip: Path, rate: float) -> dict:
    track = evaluate.Track.start(*evaluate.tracker_for(model, fps=rate))
    for frame in video.frames(clip):
        track.step(frame)
    G = np.asarray(track.G, np.float64)
    return metrics.gt_channels(evaluate.arkit_series(G, track.expressions, track.eyes, track.expression_ranges))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("package", nargs="?", type=Path, default=SAMPLE_PACKAGE)
    p.add_argument("--clip", type=Path, help="default: the package's synthetic.mp4")
    p.add_argument("--gt", type=Path, help="default: the package's synthetic_gt.npz")
    p.add_argument("--out", type=Path, default=Path("docs/img/arkit_traces.png"))
    a = p.parse_args()
    clip, gt_path = a.clip or a.package / "synthetic.mp4", a.gt or a.package / "synthetic_gt.npz"
    with np.load(gt_path, allow_pickle=False) as z:
        truth = dict(zip((str(n) for n in z["expr_names"]), z["expr"].T))
        G_truth = np.asarray(z["G"], np.float64)
    rate = video.probe(clip).fps or 25.0
    ours, base = series(a.package, clip, rate), series("mediapipe", clip, rate)
    ceiling = metrics.gt_channels(evaluate.arkit_series(G_truth, [None] * len(G_truth)))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in truth if n in metrics.GT_TO_ARKIT]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.45 * len(names)), dpi=110, sharex=True)
    for ax, n in zip(axes, names):
        t = np.arange(len(truth[n]))
        ax.plot(t, truth[n], color="0.2", lw=1.6, label="ground truth")
        for s, colour, label in ((ceiling, "tab:green", "ARKit code on the truth's meshes"), (ours, "tab:red", "package"),
                                 (base, "tab:blue", "MediaPipe FaceMesh")):
            if n in s:
                r = metrics.pearson_r(s[n][:len(t)], truth[n])
                ax.plot(t, s[n][:len(t)], color=colour, lw=1.0,
                        label=f"{label} (r {'–' if r is None else f'{r:.2f}'})")
        ax.set_ylabel(n, fontsize=8)
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=6, loc="upper right", ncol=4)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("frame")
    fig.suptitle(f"ARKit values vs ground truth: {a.package.name} on {clip.parent.name}/{clip.name}", fontsize=9)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(f"→ {a.out}")


if __name__ == "__main__":
    main()
