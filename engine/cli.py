"""`facetrack` command line: one subcommand per pipeline step. User errors → one `error:` line, exit 2."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from engine import options
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
    """The embedded default: the sample performer package (built by `facetrack build` from the synthetic
    performer) tracks its synthetic wild clip. Headless: writes DIR/report.json and DIR/overlay.mp4; with a
    display (and without --headless): opens the studio on that clip."""
    import os

    from export.package import SAMPLE_PACKAGE

    if not (SAMPLE_PACKAGE / "manifest.json").is_file():
        raise UserError(f"{SAMPLE_PACKAGE}: the sample package is missing (rebuild it with scripts/build_sample.sh)")
    if os.environ.get("DISPLAY") and not args.headless:
        _studio(argparse.Namespace(studio_args=["--package", str(SAMPLE_PACKAGE), "--source", "synthetic"]))
    from app import demo

    report = demo.run(SAMPLE_PACKAGE, args.out, max_frames=args.max_frames)
    print(f"demo: tracked {report['frames_found']}/{report['frames']} frames of the synthetic clip "
          f"({report['backend']}); {args.out}/report.json, {args.out}/overlay.mp4")


def _studio(args) -> None:
    from app import studio

    raise SystemExit(studio.main(args.studio_args))


COMMANDS = {"train-dam": "engine.train_dam", "train-i2z": "engine.train_i2z", "adapt": "engine.adapt",
            "export": "export.onnx_export", "build": "export.build", "track": "app.track",
            "bench": "export.bench", "eval": "engine.evaluate", "bench-teacher": "engine.bench",
            "export-session": "app.recording"}
BUILT_IN = ("synth", "enroll", "demo", "studio")


def parser(command: str | None = None) -> argparse.ArgumentParser:
    p = options.Parser(prog="facetrack", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="render a synthetic performer clip with ground truth")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--frames", type=options.count(1, 100_000), default=150)
    s.add_argument("--domain", choices=("lab", "wild"), default="lab")
    s.add_argument("--seed", type=options.count(0, 2**31 - 1), default=0)
    s.add_argument("--width", type=options.count(64, 7680), default=640)
    s.add_argument("--height", type=options.count(64, 4320), default=480)
    s.add_argument("--face", type=Path, help="build the performer from this photo instead of skimage's astronaut")
    s.set_defaults(run=_synth)

    e = sub.add_parser("enroll", help="teacher landmarks, pose, crops and unwrapped textures of enrollment video")
    e.add_argument("videos", nargs="+", type=Path, help="video files or folders of frames")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--texture-size", type=options.count(16, 2048), default=256)
    e.add_argument("--max-frames", type=options.count(1), default=None)
    e.add_argument("--start", type=options.fraction, default=0.0, help="first fraction of each video to use (0..1)")
    e.add_argument("--stop", type=options.fraction, default=1.0, help="last fraction of each video to use (0..1)")
    e.set_defaults(run=_enroll)

    d = sub.add_parser("demo", help="the embedded default: the sample package tracks a synthetic clip")
    d.add_argument("--out", required=True, type=Path)
    d.add_argument("--max-frames", type=options.count(1), default=None)
    d.add_argument("--headless", action="store_true", help="write the report and overlay even with a display")
    d.set_defaults(run=_demo)

    # Only the asked-for command's module is imported, so `track`, `bench` and `demo` never load torch.
    for name, module in COMMANDS.items():
        if command in (None, name) or command not in (*COMMANDS, *BUILT_IN):
            importlib.import_module(module).add_parser(sub)

    st = sub.add_parser("studio", help="the live desktop app (PySide6): track, view, record, stream",
                        add_help=False)
    st.add_argument("studio_args", nargs=argparse.REMAINDER)
    st.set_defaults(run=_studio)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["studio"]:   # the studio parses its own options (argparse's REMAINDER drops leading ones)
        return _studio(argparse.Namespace(studio_args=argv[1:]))
    args = parser(argv[0] if argv else None).parse_args(argv)
    try:
        args.run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
