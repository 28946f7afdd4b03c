"""`facetrack` command line: one subcommand per pipeline step. User errors → one `error:` line, exit 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import UserError


def _synth(args) -> None:
    from engine import synth

    synth.write_clip(args.out, frames=args.frames, domain=args.domain, seed=args.seed,
                     size=(args.width, args.height), face_image=args.face)


def _enroll(args) -> None:
    from engine import enroll

    report = enroll.enroll(args.videos, args.out, texture_size=args.texture_size, max_frames=args.max_frames,
                           start=args.start, stop=args.stop)
    print(f"enrolled {report['frames_kept']}/{report['frames_total']} frames "
          f"({report['ms_per_frame']:.1f} ms/frame) → {args.out}")


def _demo(args) -> None:
    """The embedded default: a synthetic performer clip, then its enrollment (no camera, GPU or download)."""
    from engine import enroll, synth

    out = Path(args.out)
    synth.write_clip(out / "synth", frames=args.frames, domain="lab", seed=args.seed)
    report = enroll.enroll([out / "synth" / "video.mp4"], out / "enroll")
    print(f"demo: enrolled {report['frames_kept']}/{report['frames_total']} synthetic frames; "
          f"report in {out / 'enroll' / 'report.json'}")


def _studio(args) -> None:
    from app import studio

    raise SystemExit(studio.main(args.studio_args))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facetrack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="render a synthetic performer clip with ground truth")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--frames", type=int, default=150)
    s.add_argument("--domain", choices=("lab", "wild"), default="lab")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--width", type=int, default=640)
    s.add_argument("--height", type=int, default=480)
    s.add_argument("--face", type=Path, help="build the performer from this photo instead of skimage's astronaut")
    s.set_defaults(run=_synth)

    e = sub.add_parser("enroll", help="teacher landmarks, pose, crops and unwrapped textures of enrollment video")
    e.add_argument("videos", nargs="+", type=Path, help="video files or folders of frames")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--texture-size", type=int, default=256)
    e.add_argument("--max-frames", type=int, default=None)
    e.add_argument("--start", type=float, default=0.0, help="first fraction of each video to use (0..1)")
    e.add_argument("--stop", type=float, default=1.0, help="last fraction of each video to use (0..1)")
    e.set_defaults(run=_enroll)

    d = sub.add_parser("demo", help="the embedded default job: synth + enroll on the synthetic performer")
    d.add_argument("--out", required=True, type=Path)
    d.add_argument("--frames", type=int, default=90)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(run=_demo)

    from engine import adapt, bench, evaluate, train_dam, train_i2z
    from export import onnx_export

    train_dam.add_parser(sub)
    train_i2z.add_parser(sub)
    adapt.add_parser(sub)
    onnx_export.add_parser(sub)
    evaluate.add_parser(sub)
    bench.add_parser(sub)

    st = sub.add_parser("studio", help="the live desktop app (PySide6): track, view, record, stream",
                        add_help=False)
    st.add_argument("studio_args", nargs=argparse.REMAINDER)
    st.set_defaults(run=_studio)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
