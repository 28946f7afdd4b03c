"""`facetrack` command line: one subcommand per pipeline step. User errors → one `error:` line, exit 2.

`main` is the one place that turns failures into that line: options are range-checked by the parser
(engine.options), every output path is checked for writability before the work (OUTPUTS), and a UserError, an
OSError while writing (disk full, folder removed, read-only) or a MemoryError ends as `error: <file>: <reason>`,
never a traceback. Native libraries' log noise (OpenCV's WARN lines, absl/TFLite lines from MediaPipe) is kept
off stderr, so the error line is the only line there (FACETRACK_NATIVE_LOGS=1 shows them for debugging).
"""
from __future__ import annotations

import os

# Before any module imports OpenCV or MediaPipe: their own loggers read these once, at load.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import contextlib
import importlib
import re
import sys
import threading
import warnings
from pathlib import Path

from engine import options
from engine.errors import UserError


def _synth(args) -> None:
    from engine import synth

    synth.write_clip(args.out, frames=args.frames, domain=args.domain, seed=args.seed,
                     size=(args.width, args.height), face_image=args.face, ict=args.ict,
                     script=args.script)


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
            "export-session": "app.recording", "make-model": "app.make_model"}
BUILT_IN = ("synth", "enroll", "demo", "studio")

# Where each command writes: (argument dest, "folder" | "file", name in messages). Checked before the work.
OUTPUTS = {
    "synth": [("out", "folder", "--out")], "enroll": [("out", "folder", "--out")],
    "demo": [("out", "folder", "--out")], "track": [("out", "folder", "--out")],
    "train-dam": [("run_dir", "folder", "RUN")],
    "train-i2z": [("run_dir", "folder", "RUN"), ("out", "folder", "--out")],
    "adapt": [("out", "folder", "--out")], "export": [("out", "folder", "--out")],
    "build": [("out", "folder", "--out"), ("work", "folder", "--work")],
    "eval": [("json", "file", "--json")], "bench": [("json", "file", "--json")],
    "bench-teacher": [("json", "file", "--json")],
    "export-session": [("csv", "file", "--csv"), ("obj", "folder", "--obj")],
    "make-model": [("out", "folder", "--out"), ("keep_clips", "folder", "--keep-clips")],
}


def check_options(args) -> None:
    """What one option's type cannot check alone, before any work starts: a span of the video (`--start` before
    `--stop`) and every output path of the command being writable (engine.options)."""
    start, stop = getattr(args, "start", None), getattr(args, "stop", None)
    if start is not None and stop is not None and not start < stop:
        raise UserError(f"--start {start:g} must be less than --stop {stop:g} (fractions of the video, 0..1)")
    for dest, kind, name in OUTPUTS.get(args.command, ()):
        path = getattr(args, dest, None)
        if path is not None:
            (options.writable_folder if kind == "folder" else options.writable_file)(path, name)


# absl/glog lines ("W0000 00:00:17.. 123 file.cc:114] ...") and TFLite's banner, from MediaPipe's graphs; OpenCV's
# own logger ("[ WARN:0@0.1] global ...", "[ERROR:0@0.4] global ... Camera index out of range"): what they say is
# said again by our one `error:` line
NATIVE_NOISE = re.compile(rb"^([IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]|WARNING: All log messages before "
                          rb"absl::InitializeLog|INFO: Created TensorFlow Lite|\[ ?(?:WARN|ERROR|INFO|DEBUG):\d+[@\]])")


@contextlib.contextmanager
def quiet_native_logs():
    """Native code's log noise is dropped from stderr; everything else there passes unchanged.

    The process's fd 2 (where C++ libraries and child processes write) becomes a pipe read by a thread that
    forwards every line but NATIVE_NOISE; Python's own sys.stderr keeps writing to the real stderr directly, so
    progress bars still see a terminal and the `error:` line never waits on the thread."""
    if os.environ.get("FACETRACK_NATIVE_LOGS") or not hasattr(os, "pipe"):
        yield
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read, write = os.pipe()
    except (OSError, ValueError):
        yield
        return
    old = sys.stderr
    os.dup2(write, 2)
    os.close(write)
    sys.stderr = open(real, "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8",  # noqa: SIM115
                      errors="backslashreplace", closefd=False)          # closed below, with `real`

    def forward():
        with open(read, "rb", closefd=True) as lines:
            for line in lines:
                if not NATIVE_NOISE.match(line):
                    try:
                        os.write(real, line)
                    except OSError:
                        return

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)            # closes the pipe's last write end here: the thread sees EOF
        sys.stderr.close()
        sys.stderr = old
        thread.join(2.0)            # a child process still holding the pipe only delays this
        if not thread.is_alive():
            os.close(real)


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
    s.add_argument("--ict", type=Path, help="expressions from this ICT-FaceKit delta file (npz: names, deltas, "
                   "neutral) instead of the procedural fields")
    s.add_argument("--script", choices=("enroll",), help="act out the guided enrollment's prompts (each expression "
                   "on its own, one-sided smiles, head turns) instead of random expressions, as a performer's "
                   "enrollment clip would")
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


def _os_error_line(args, err: OSError) -> str:
    """`<file>: <reason>`; where the library's error names no file (numpy's "N requested and M written"), the
    command's output is named instead."""
    if err.filename is not None:
        return options.describe_os_error(err)
    outputs = [getattr(args, dest, None) for dest, _, _ in OUTPUTS.get(args.command, ())]
    where = next((str(p) for p in outputs if p is not None), args.command)
    return f"{where}: writing the output failed ({options.os_reason(err)})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["studio"]:   # the studio parses its own options (argparse's REMAINDER drops leading ones)
        return _studio(argparse.Namespace(studio_args=argv[1:]))
    args = parser(argv[0] if argv else None).parse_args(argv)
    # protobuf (under MediaPipe) warns about its own deprecated API on every graph: not the user's concern
    warnings.filterwarnings("ignore", category=UserWarning, module=r"google\.protobuf")
    message, code = None, 0
    with quiet_native_logs():
        try:
            check_options(args)
            args.run(args)
        except UserError as err:
            message, code = str(err), 2
        except OSError as err:      # writing failed part-way (disk full, folder removed, ...): outputs are atomic
            message, code = _os_error_line(args, err), 2
        except MemoryError:
            message, code = f"{args.command}: out of memory (try smaller inputs or options)", 2
        except KeyboardInterrupt:
            message, code = f"{args.command}: interrupted", 130
    if message is not None:
        print("error: " + " ".join(message.split("\n")), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
