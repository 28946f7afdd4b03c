"""Make my model (torch-free): `facetrack make-model`, a guided recording of the performer then the offline build;
and where performer packages live on disk.

    `facetrack make-model --out PACKAGE [--source camera:N|FILE] [--seconds 30] [--perform-seconds 30]
                          [--profile tiny|full] [--keep-clips DIR] [--max-frames N]`

From a camera: the terminal shows one prompt at a time with a countdown (relax, blink, smile, jaw, brows, frown,
pucker, look around: the enrollment clip, --seconds long), then "perform as you will, in your usual place" (the
new-environment clip, --perform-seconds long), then runs the offline build (enroll → train-dam → train-i2z → adapt
→ export) as a child process with a one-line progress display. From a FILE nothing is recorded: its first
--seconds become the enrollment clip and the next --perform-seconds (or what is left) the new-environment clip.
Already have both clips? `facetrack build ENROLL NEW --out PACKAGE` is the same build.

The clips and the build's work folder live in PACKAGE.work/ and are removed at the end (--keep-clips DIR keeps
the two clips there). Ctrl-C, SIGTERM or SIGHUP, during the recording or the build, cancel cleanly: the build's
process group is stopped and the package, half built, is removed with everything else this run created.

The studio's "Make my model…" dialog (app.onboarding) runs the same pieces: app.guided's GuidedRecording fed
through the pipeline's frame tap (TapRecorder), then app.build_process's BuildProcess, with the package folders
from here.
"""
from __future__ import annotations

import math
import re
import shutil
import sys
import time
from pathlib import Path

from app.interrupt import StopSignals
from app.build_process import BuildProcess, describe_eta, has_files
from app.guided import MIN_CLIP_FRAMES, GuidedRecording
from engine import options
from engine.errors import UserError
from engine.userdirs import user_dir


# ------------------------------------------------------------------------------------------------ where things go
def data_dir() -> Path:
    """$FACETRACK_DATA, else $XDG_DATA_HOME/facetrack (an absolute one), else ~/.local/share/facetrack."""
    return user_dir("data")


def performer_folder(name: str, root: Path | None = None) -> Path:
    """root/performers/<name> (root: data_dir()); a name is one plain folder name."""
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise UserError(f"{name!r}: a performer name is a plain folder name (no slashes, not starting with '.')")
    return (root or data_dir()) / "performers" / name


def free_name(base: str, root: Path | None = None) -> str:
    """`base`, or base-2, base-3…: the first whose package folder and scratch folder are both unused."""
    for k in range(1, 1000):
        name = base if k == 1 else f"{base}-{k}"
        out = performer_folder(name, root)
        if not has_files(out) and not has_files(scratch_folder(out)):
            return name
    return base


def scratch_folder(out: Path) -> Path:
    """PACKAGE.work: the clips and the build's work folder, removed when make-model ends."""
    return out.with_name(out.name + ".work")


def claim(out: Path) -> Path:
    """Check that `out` and its scratch folder are new (or empty) and create the scratch folder; returns it."""
    out, scratch = Path(out), scratch_folder(Path(out))
    if has_files(out):
        raise UserError(f"{out}: already holds files; choose a new package folder")
    if has_files(scratch):
        raise UserError(f"{scratch}: left by another make-model run (running, or killed); remove it first")
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def release(out: Path, keep_package: bool) -> None:
    """Remove the scratch folder, and the package folder too unless it is a finished one."""
    shutil.rmtree(scratch_folder(Path(out)), ignore_errors=True)
    if not keep_package:
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the command


class _Line:
    """One status line on stderr: rewritten in place on a terminal, else printed only when its text changes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last, self._width = None, 0

    def show(self, text: str, key: str | None = None) -> None:
        """On a terminal `text` replaces the line; elsewhere a new line is printed when `key` (default: the
        text) changes, so a log gets one line per prompt or stage, not one per second."""
        key = text if key is None else key
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        elif key != self._last:
            self.stream.write(text + "\n")
        self._last = key
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width, self._last = 0, None


def record(source: str, folder: Path, seconds: float, perform_seconds: float, stop: StopSignals,
           get_ready: float = 3.0) -> dict:
    """The two clips into `folder`: from a camera with the prompts on the terminal, or split from a file.
    Returns {clip: path}, or {} when a stop was requested (nothing kept)."""
    from app.sources import CameraSource, FileSource, SourceError
    from engine import video

    camera = re.fullmatch(r"camera:(\d+)", source.strip())
    if not camera:
        video.probe(source)                                   # a missing or broken file is one line, now
    src = CameraSource(int(camera.group(1))) if camera else FileSource(source, loop=False)
    try:
        src.open()
    except SourceError as err:
        raise UserError(str(err)) from None
    line, rec = _Line(), None
    try:
        rec = GuidedRecording(folder, src.fps, seconds, perform_seconds, get_ready if camera else 0.0)
        if not camera:
            print(f"{source}: first {seconds:g} s → enrollment clip, next {perform_seconds:g} s → new-environment "
                  "clip", file=sys.stderr)
        while not stop.requested:
            try:
                frame = src.read()
            except SourceError as err:
                if camera:
                    raise UserError(f"{err}; nothing was kept") from None
                break                                            # the file ended: finish() checks what we have
            if not rec.feed(frame.image, frame.t if camera else None):
                break
            if camera:
                s = rec.status()
                line.show(f"  {s.prompt.text}  {math.ceil(s.prompt_left):>2d} s", key=s.prompt.text)
        if stop.requested:
            rec.abort()
            return {}
        if not camera and rec.frames["perform"] < MIN_CLIP_FRAMES:
            rec.abort()
            raise UserError(f"{source}: {rec.elapsed:.1f} s long, too short for a {seconds:g} s enrollment clip and "
                            f"a new-environment clip of at least {MIN_CLIP_FRAMES} frames (try a smaller --seconds)")
        return rec.finish()
    except BaseException:
        if rec is not None:
            rec.abort()
        raise
    finally:
        line.end()
        src.close()


def run_build(build: BuildProcess, stop: StopSignals, poll_s: float = 0.5) -> None:
    """Start `build` and show its progress until it ends; a stop request cancels it."""
    line = _Line()
    build.start()
    while build.wait(poll_s) == "running":
        if stop.requested:
            line.show(f"cancelling the build ({stop.requested})…")
            line.end()
            build.cancel()
            return
        if build.stage:
            detail = f" · {build.detail}" if build.detail else ""
            line.show(f"[{100 * build.fraction:3.0f}%] {build.stage}{detail} · {describe_eta(build.eta_s)}",
                      key=build.stage)
    line.end()


def make_model(out: str | Path, source: str = "camera:0", seconds: float = 30.0, perform_seconds: float = 30.0,
               profile: str = "tiny", keep_clips: str | Path | None = None, extra=(), get_ready: float = 3.0) -> dict:
    """Record (or split), build, and leave only the finished package (and --keep-clips). Returns the summary."""
    out = Path(out)
    scratch = claim(out)
    done = False
    begin = time.monotonic()
    try:
        with StopSignals() as stop:
            clips = record(source, Path(keep_clips) if keep_clips else scratch, seconds, perform_seconds, stop,
                           get_ready)
            if stop.requested:
                raise KeyboardInterrupt
            build = BuildProcess(clips["enroll"], clips["perform"], out, profile, scratch / "build", extra)
            run_build(build, stop)
            if build.state == "cancelled":
                raise KeyboardInterrupt
            if build.state != "done":
                raise UserError(f"build: {build.error}")
        done = True
    finally:
        release(out, keep_package=done)
    return {"package": str(out), "clips": {k: str(v) for k, v in clips.items()} if keep_clips else None,
            "seconds": round(time.monotonic() - begin, 1)}


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("make-model", help="guided recording (prompts) + the offline build: your own package")
    p.add_argument("--out", required=True, type=Path, help="the new performer package folder (new or empty)")
    p.add_argument("--source", default="camera:0",
                   help="camera:N (recorded with prompts), or a video FILE: its first --seconds enroll, "
                        "the next --perform-seconds are the new environment (default camera:0)")
    p.add_argument("--seconds", type=options.positive(600), default=30.0, help="enrollment clip length (s)")
    p.add_argument("--perform-seconds", type=options.positive(600), default=30.0,
                   help="new-environment clip length (s): you performing as you will, in your usual place")
    p.add_argument("--profile", choices=("tiny", "full"), default="tiny")
    p.add_argument("--keep-clips", type=Path, metavar="DIR", help="keep the two clips here (enroll.mp4, perform.mp4)")
    p.add_argument("--max-frames", type=options.count(3), help="use at most this many frames of each clip")
    p.add_argument("--steps-scale", type=options.positive(100), help=argparse.SUPPRESS)   # tests: tiny builds
    p.set_defaults(run=_run)


def _run(args) -> None:
    extra = []
    if args.max_frames is not None:
        extra += ["--max-frames", str(args.max_frames)]
    if args.steps_scale is not None:
        extra += ["--steps-scale", str(args.steps_scale)]
    r = make_model(args.out, args.source, args.seconds, args.perform_seconds, args.profile, args.keep_clips, extra)
    kept = f"; clips in {args.keep_clips}" if args.keep_clips else ""
    print(f"made {r['package']} in {r['seconds']:.0f} s{kept}; open it with: facetrack studio --package {r['package']}")
