"""`facetrack build ENROLL_VIDEO NEW_ENV_VIDEO --out PACKAGE`: the whole offline pipeline a performer runs.

    enroll → train-dam → train-i2z → adapt (to NEW_ENV_VIDEO) → export

One stage line per step with its elapsed time (the steps' own tqdm bars still show on a terminal), work files in
--work (default PACKAGE.work/), and one report, PACKAGE/build_report.json: each stage's seconds and key numbers,
plus the exported package's ORT-vs-torch parity.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from engine import options, prompts, video
from engine.errors import UserError

PROFILES = ("tiny", "full")
STAGES = ("enroll", "train-dam", "train-i2z", "adapt", "export")


def _steps(default: int, scale: float) -> int:
    return max(1, int(round(default * scale)))


class Progress:
    """`[k/5] stage … done in s` lines on stderr, so stdout keeps only the final summary."""

    def __init__(self):
        self.begin, self.k = time.perf_counter(), 0

    def start(self, name: str) -> float:
        self.k += 1
        print(f"[{self.k}/{len(STAGES)}] {name} …", file=sys.stderr, flush=True)
        return time.perf_counter()

    def done(self, name: str, t0: float, note: str) -> float:
        seconds = time.perf_counter() - t0
        print(f"[{self.k}/{len(STAGES)}] {name} done in {seconds:.1f} s ({note}); "
              f"total {time.perf_counter() - self.begin:.0f} s", file=sys.stderr, flush=True)
        return round(seconds, 2)


def build(enroll_video: str | Path, new_env_video: str | Path, out: str | Path, profile: str = "tiny",
          work: str | Path | None = None, steps_scale: float = 1.0, max_frames: int | None = None) -> dict:
    from engine import adapt, enroll, train_dam, train_i2z
    from export import onnx_export

    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    if not steps_scale > 0:
        raise UserError(f"--steps-scale must be > 0 (got {steps_scale})")
    info = video.probe(enroll_video)                  # both inputs are checked before minutes of training,
    video.probe(new_env_video)
    prompts.recorded(enroll_video, info.frames)       # and a guided enrollment's prompt timeline
    out = Path(out)
    work = Path(work) if work is not None else out.with_name(out.name + ".work")
    run, adapted = work / "run", work / "adapted"
    progress, report = Progress(), {"profile": profile, "steps_scale": steps_scale, "inputs": {
        "enroll": str(enroll_video), "new_environment": str(new_env_video)}, "work": str(work), "stages": {}}
    stages = report["stages"]

    t0 = progress.start("enroll")
    size = train_dam.PROFILES[profile]["texture_size"]   # unwrap at the DAM's size: no larger textures needed
    r = enroll.enroll([enroll_video], run, texture_size=size, max_frames=max_frames)
    guided = f", {r['frames_resting']} resting under the guided prompts" if r["frames_resting"] else ""
    stages["enroll"] = {"seconds": progress.done("enroll", t0, f"{r['frames_kept']}/{r['frames_total']} frames{guided}"),
                        "frames_total": r["frames_total"], "frames_kept": r["frames_kept"],
                        "frames_resting": r["frames_resting"],
                        "ms_per_frame": round(r["ms_per_frame"], 2), "pose_range_deg": r["pose_range_deg"]}

    t0 = progress.start("train-dam")
    r = train_dam.train_dam(run, profile, steps=_steps(train_dam.PROFILES[profile]["steps"], steps_scale))
    held = r["held_out"]
    stages["train-dam"] = {"seconds": progress.done("train-dam", t0, f"held-out {held['geometry_error_cm']:.3f} cm, "
                                                                      f"{held['texture_psnr_db']:.1f} dB"),
                           "steps": r["steps"], "device": r["device"], "held_out": held}

    t0 = progress.start("train-i2z")
    r = train_i2z.train_i2z(run, profile, steps=_steps(train_i2z.PROFILES[profile]["steps"], steps_scale))
    held = r["held_out"]
    stages["train-i2z"] = {"seconds": progress.done("train-i2z", t0, f"held-out {held.get('landmark_px', 0):.2f} px"),
                           "steps": r["steps"], "device": r["device"], "held_out": held,
                           "losses_final": r["losses_final"]}

    t0 = progress.start("adapt")
    r = adapt.adapt(run, new_env_video, adapted, profile=profile, max_frames=max_frames,
                    steps=_steps(adapt.PROFILES[profile]["steps"], steps_scale))
    stages["adapt"] = {"seconds": progress.done("adapt", t0, f"loss {r['first']['total']:.4g} → {r['last']['total']:.4g}"),
                       "steps": r["steps"], "frames_tracked": r["frames_tracked"], "pairs": r["pairs"],
                       "first": r["first"], "last": r["last"]}

    t0 = progress.start("export")
    manifest = onnx_export.export_package(adapted, out)
    stages["export"] = {"seconds": progress.done("export", t0, "parity " + ", ".join(
        f"{k} {v:.2g}" for k, v in manifest["parity"].items())), "files": sorted(manifest["files"])}
    report["parity"] = manifest["parity"]
    report["seconds"] = round(time.perf_counter() - progress.begin, 2)
    report["package"] = str(out)
    options.write_json(out / "build_report.json", report)
    return report


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("build", help="enroll → train-dam → train-i2z → adapt → export: a performer package")
    p.add_argument("enroll_video", metavar="ENROLL_VIDEO", type=Path)
    p.add_argument("new_env_video", metavar="NEW_ENV_VIDEO", type=Path)
    p.add_argument("--out", required=True, type=Path, help="performer package folder")
    p.add_argument("--profile", choices=PROFILES, default="tiny")
    p.add_argument("--work", type=Path, help="work folder (default PACKAGE.work/)")
    p.add_argument("--max-frames", type=options.count(3), help="use at most this many frames of each video")
    p.add_argument("--steps-scale", type=options.positive(100), default=1.0, help=argparse.SUPPRESS)   # tests: tiny step counts
    p.set_defaults(run=_run)


def _run(args) -> None:
    r = build(args.enroll_video, args.new_env_video, args.out, args.profile, args.work, args.steps_scale,
              args.max_frames)
    print(f"built {args.out} in {r['seconds']:.0f} s; parity {json.dumps(r['parity'])}; "
          f"report {args.out / 'build_report.json'}")
