"""Make my model (torch-free): a guided recording of the performer, then `facetrack build` in its own process.

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

The studio's "Make my model…" dialog (app.onboarding) runs the same pieces: GuidedRecording fed through the
pipeline's frame tap (TapRecorder), then BuildProcess.
"""
from __future__ import annotations

import atexit
import collections
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from engine import options, progress
from engine.errors import UserError

CLIPS = ("enroll", "perform")
MIN_CLIP_FRAMES = 10        # adaptation needs consecutive pairs, enrollment a spread of frames
_CLIP_NAMES = {"enroll": "enrollment clip", "perform": "new-environment clip"}
EPS = 1e-6                  # seconds


# ------------------------------------------------------------------------------------------------ the prompts
@dataclass(frozen=True)
class Prompt:
    key: str                 # what it asks for: neutral, blink, smile, jaw, brows, frown, pucker, look, perform
    text: str                # what the performer reads
    seconds: float
    clip: str | None         # "enroll" | "perform" | None: a get-ready pause, not recorded


# (key, text, share of the enrollment clip): expressions the DAM must see, then the head poses I2ZNet must see
ENROLL_SCRIPT = (
    ("neutral", "Relax and look straight at the camera", 3),
    ("blink", "Blink slowly, a few times", 3),
    ("smile", "Smile wide… and relax", 3),
    ("jaw", "Open your jaw wide… and close it", 3),
    ("brows", "Raise your eyebrows high", 3),
    ("frown", "Frown: pull your brows down and together", 3),
    ("pucker", "Pucker your lips, as for a kiss", 3),
    ("look", "Slowly turn your head to the left", 2.25),
    ("look", "… and to the right", 2.25),
    ("look", "Now tilt your head up", 2.25),
    ("look", "… and down", 2.25),
)
PERFORM_TEXT = "Perform as you will, in your usual place: talk, react, move as you do when you stream"


def enrollment_script(seconds: float = 30.0) -> list[Prompt]:
    """The enrollment prompts, their shares scaled to `seconds` in all (the last one takes the rounding)."""
    total = sum(share for *_, share in ENROLL_SCRIPT)
    prompts = [Prompt(key, text, seconds * share / total, "enroll") for key, text, share in ENROLL_SCRIPT]
    rest = seconds - sum(p.seconds for p in prompts[:-1])
    prompts[-1] = Prompt(prompts[-1].key, prompts[-1].text, rest, "enroll")
    return prompts


def full_script(enroll_seconds: float = 30.0, perform_seconds: float = 30.0, get_ready: float = 3.0) -> list[Prompt]:
    """Get ready, the enrollment prompts, get ready again (time to move to the usual place), the perform clip."""
    steps = []
    if get_ready > 0:
        steps.append(Prompt("ready", "Get ready: face the camera, face well lit, nothing covering it", get_ready, None))
    steps += enrollment_script(enroll_seconds)
    if get_ready > 0:
        steps.append(Prompt("ready", "Done! Next: go to your usual place and perform as you will", get_ready, None))
    steps.append(Prompt("perform", PERFORM_TEXT, perform_seconds, "perform"))
    return steps


# ------------------------------------------------------------------------------------------------ recording
@dataclass
class Status:
    prompt: Prompt
    prompt_left: float       # seconds left of this prompt
    elapsed: float
    total: float
    frames: dict             # clip → frames written
    state: str               # waiting | recording | done | aborted

    @property
    def fraction(self) -> float:
        return min(1.0, self.elapsed / self.total) if self.total > 0 else 1.0


class LiveWriter:
    """H.264 MP4 at x264's `ultrafast` preset: a live recording must keep up with the camera on a small CPU while
    the studio tracks (~5× the frame rate of engine.video.VideoWriter's `fast`, files ~2× larger; these clips are
    temporary). Encoder failures are an OSError naming the file, as there (engine.video's checks)."""

    def __init__(self, path: Path, fps: float, crf: int = 18):
        self.path, self.fps, self.crf = Path(path), fps, crf
        self._gen = self._process = None

    def write(self, frame) -> None:
        import imageio_ffmpeg
        import numpy as np

        from engine import video

        if self._gen is None:
            h, w = frame.shape[:2]
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), (w, h), fps=self.fps, codec="libx264", quality=None, macro_block_size=1,
                output_params=["-crf", str(self.crf), "-preset", "ultrafast",
                               "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"],        # yuv420p needs even sizes
                pix_fmt_out="yuv420p", ffmpeg_log_level=video.FFMPEG_LOG_LEVEL)
            self._gen.send(None)
            self._process = video.encoder_process(self._gen)
        try:
            self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))
        except OSError as err:
            self._gen = None
            raise video.encoder_error(err, self.path, self._process) from None

    def close(self) -> None:
        from engine import video

        if self._gen is not None:
            gen, self._gen = self._gen, None
            gen.close()
            video.check_encoder(self._process, self.path)


class GuidedRecording:
    """Frames in, two H.264 clips out (folder/enroll.mp4, folder/perform.mp4) at `fps`, each frame going where the
    script says at its time. Time is the frame's own timestamp when given (a camera: prompts follow the clock),
    else frames fed / fps (a file: exact frame counts). Each clip is written to a temp file and renamed only when
    the whole recording is finished, so a cut-short recording leaves no clip that looks complete."""

    def __init__(self, folder: str | Path, fps: float, enroll_seconds: float = 30.0, perform_seconds: float = 30.0,
                 get_ready: float = 3.0):
        if not (fps > 0 and enroll_seconds > 0 and perform_seconds > 0):
            raise UserError(f"a recording needs positive durations and fps (got {enroll_seconds:g} s, "
                            f"{perform_seconds:g} s at {fps:g} fps)")
        self.folder, self.fps = Path(folder), float(fps)
        self.script = full_script(enroll_seconds, perform_seconds, get_ready)
        self.starts = [0.0]
        for p in self.script:
            self.starts.append(self.starts[-1] + p.seconds)
        self.total = self.starts[-1]
        self.paths = {clip: self.folder / f"{clip}.mp4" for clip in CLIPS}
        self.frames = dict.fromkeys(CLIPS, 0)
        self.state, self.elapsed = "waiting", 0.0
        self._writers, self._temps, self._size = {}, {}, None
        self._fed, self._t0 = 0, None
        self._lock = threading.Lock()      # status() is read from the UI thread while feed() runs on another

    def step_at(self, t: float) -> int:
        # EPS: a frame on a boundary (k / fps) belongs to the next step however the float sums rounded
        return next((i for i, end in enumerate(self.starts[1:]) if t < end - EPS), len(self.script) - 1)

    def feed(self, image, t: float | None = None) -> bool:
        """Record one RGB frame; False once the script is over (the clips are then finished and in place)."""
        if self.state in ("done", "aborted"):
            return False
        if t is not None and self._t0 is None:
            self._t0 = t
        now = self._fed / self.fps if t is None else t - self._t0
        self._fed += 1
        if now >= self.total - EPS:
            self.finish()
            return False
        with self._lock:
            self.state, self.elapsed = "recording", now
        clip = self.script[self.step_at(now)].clip
        if clip is not None:
            self._write(clip, image)
        return True

    def _write(self, clip: str, image) -> None:
        if self._size is None:
            self._size = image.shape[:2]
        elif image.shape[:2] != self._size:
            raise UserError(f"the source changed frame size during the recording ({self._size[1]}×{self._size[0]} → "
                            f"{image.shape[1]}×{image.shape[0]}); start again")
        if clip not in self._writers:
            self.folder.mkdir(parents=True, exist_ok=True)
            temp = self.paths[clip].with_name(f".{clip}.partial-{os.getpid()}.mp4")   # .mp4: ffmpeg picks by it
            self._temps[clip], self._writers[clip] = temp, LiveWriter(temp, self.fps)
        self._writers[clip].write(image)
        with self._lock:
            self.frames[clip] += 1

    def finish(self, min_frames: int = MIN_CLIP_FRAMES) -> dict:
        """Close both clips and put them in place; a clip with fewer than `min_frames` frames is a UserError (and
        nothing is kept). Returns {clip: path}."""
        if self.state == "done":
            return dict(self.paths)
        short = [c for c in CLIPS if self.frames[c] < min_frames]
        if short:
            self.abort()
            raise UserError(f"the recording ended with {self.frames[short[0]]} frames in the {_CLIP_NAMES[short[0]]} "
                            f"(needs at least {min_frames})")
        try:
            for clip in CLIPS:
                self._writers.pop(clip).close()
                with open(self._temps[clip], "rb+") as f:
                    os.fsync(f.fileno())
            for clip in CLIPS:
                os.replace(self._temps[clip], self.paths[clip])
        except BaseException:
            self.abort()
            raise
        with self._lock:
            self.state, self.elapsed = "done", self.total
        return dict(self.paths)

    def abort(self) -> None:
        """Stop and remove what was written (temp files only: a finished clip stays)."""
        for writer in list(self._writers.values()):
            try:
                writer.close()
            except OSError:
                pass
        self._writers.clear()
        for temp in self._temps.values():
            temp.unlink(missing_ok=True)
        with self._lock:
            if self.state != "done":
                self.state = "aborted"

    def status(self, at: float | None = None) -> Status:
        """Where the script is at `at` seconds (default: the last frame fed)."""
        with self._lock:
            t = self.elapsed if at is None or self.state == "done" else min(at, self.total)
            i = self.step_at(t)
            return Status(self.script[i], max(0.0, self.starts[i + 1] - t), t, self.total, dict(self.frames),
                          self.state)


class TapRecorder:
    """A GuidedRecording fed from the studio's capture thread (Pipeline.add_tap). The tap only stamps the frame
    with its time in the script and queues it; this object's own thread encodes, so capture never waits for
    ffmpeg, and the prompt shown (status) follows the frames captured, not the encoder. Frames beyond
    BUDGET_BYTES of backlog are dropped (counted in `dropped`). `error` holds the one line that stopped the
    recording, if one did."""

    BUDGET_BYTES = 256 * 2**20     # ~10 s of 640×480 at 30 fps held while the encoder catches up

    def __init__(self, recording: GuidedRecording, use_time: bool):
        self.recording, self.use_time = recording, use_time
        self.dropped, self.error, self.latest = 0, None, None
        self.now, self._t0, self._count, self._held = None, None, 0, 0
        self._queue: queue.Queue = queue.Queue()
        self._closed = self._cancelled = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="make-model-recorder", daemon=True)
        self._thread.start()

    def __call__(self, frame) -> None:            # capture thread
        self.latest = frame.image
        if self._closed:
            return
        if self.use_time:                          # a camera: its clock; a file: its frames at its fps
            self._t0 = frame.t if self._t0 is None else self._t0
            now = frame.t - self._t0
        else:
            now = self._count / self.recording.fps
        self._count += 1
        self.now = now
        if now >= self.recording.total - EPS:
            self._closed = True
            self._queue.put(None)                  # the end: finish the clips once the backlog is written
            return
        with self._lock:
            if self._held + frame.image.nbytes > self.BUDGET_BYTES:
                self.dropped += 1
                return
            self._held += frame.image.nbytes
        self._queue.put((frame.image, now))

    def _run(self) -> None:
        try:
            while not self._cancelled:
                item = self._queue.get()
                if item is None:
                    if not self._cancelled:
                        self.recording.finish()
                    return
                with self._lock:
                    self._held -= item[0].nbytes
                if not self._cancelled:
                    self.recording.feed(*item)
        except (UserError, OSError) as err:
            self.error = options.describe_os_error(err) if isinstance(err, OSError) else str(err)
        except Exception as err:                    # an encoder or driver surprise: a line, never a dead dialog
            self.error = f"{type(err).__name__}: {err}"
        self._closed = True
        self.recording.abort()

    def status(self) -> Status:
        """The script at the latest captured frame; state waiting, recording, saving (the encoder finishing the
        backlog), done (both clips in place) or aborted."""
        s = self.recording.status(at=self.now)
        if s.state in ("waiting", "recording"):
            s.state = "waiting" if self.now is None else "saving" if self._closed else "recording"
        return s

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive()

    def cancel(self) -> None:
        """Stop now; nothing recorded is kept (clips already finished stay: the caller owns them)."""
        self._closed = self._cancelled = True
        self._queue.put(None)
        self._thread.join(10.0)
        self.recording.abort()


# ------------------------------------------------------------------------------------------------ the build
# Seconds per stage of a 30 s + 30 s build on a 2-core CPU (docs/BENCHMARKS.md, Obama pair): I2ZNet dominates.
STAGE_WEIGHTS = {"enroll": 55.0, "train-dam": 93.0, "train-i2z": 468.0, "adapt": 90.0, "export": 6.0}
STAGE_TEXT = {"enroll": "reading your face", "train-dam": "learning your face's shape and texture",
              "train-i2z": "training your tracker", "adapt": "adapting to your usual place",
              "export": "packaging your model"}
# engine.progress stage names → (build stage, span of that stage they cover): the I2ZNet pool was ~6 % of its
# stage, the adaptation's teacher pass ~45 % of adaptation (build reports)
SUBSTAGES = {"enroll": ("enroll", 0.0, 0.97), "train-dam": ("train-dam", 0.0, 0.97),
             "train-i2z: pool": ("train-i2z", 0.0, 0.06), "train-i2z": ("train-i2z", 0.06, 0.97),
             "adapt: teacher": ("adapt", 0.0, 0.45), "adapt": ("adapt", 0.45, 0.97)}
SUBSTAGE_TEXT = {"enroll": "frame", "train-dam": "step", "train-i2z: pool": "preparing views", "train-i2z": "step",
                 "adapt: teacher": "frame", "adapt": "step"}
STAGE_LINE = re.compile(r"^\[(\d+)/(\d+)\] ([\w-]+) (…|done)")
ROOT = Path(__file__).resolve().parents[1]

_running: "weakref.WeakSet[BuildProcess]" = weakref.WeakSet()


def _has_files(path: Path) -> bool:
    try:
        return path.exists() and (not path.is_dir() or any(path.iterdir()))
    except OSError:
        return True


def build_command(enroll: Path, perform: Path, out: Path, profile: str, work: Path, extra=()) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "build", str(enroll), str(perform), "--out", str(out),
            "--profile", profile, "--work", str(work), *map(str, extra)]


class BuildProcess:
    """`facetrack build` in its own process group, watched by a thread: `fraction` (0..1, stage weights from
    measured build times), `stage` (words), `detail` (step k/n), `eta_s`, `state` (idle, running, done, failed,
    cancelled), `error` (the child's `error:` line on failure). A failed or cancelled build removes the package
    and work folders if this build created them (a folder that held files before is never touched). `nice`
    lowers the build's CPU priority (the studio passes 10: live tracking comes first)."""

    def __init__(self, enroll: str | Path, perform: str | Path, out: str | Path, profile: str = "tiny",
                 work: str | Path | None = None, extra=(), command: list[str] | None = None, clock=time.monotonic,
                 nice: int = 0):
        self.out, self.nice = Path(out), nice
        self.work = Path(work) if work is not None else self.out.with_name(self.out.name + ".work")
        self.command = command or build_command(Path(enroll), Path(perform), self.out, profile, self.work, extra)
        self.state, self.stage, self.detail, self.error = "idle", "", "", None
        self.fraction, self.returncode = 0.0, None
        self.lines: collections.deque[str] = collections.deque(maxlen=200)   # the child's output (no progress)
        self._clock, self._started = clock, None
        self._done_weight, self._stage_key, self._within = 0.0, None, 0.0
        self._proc, self._reader, self._owned = None, None, []
        self._cancelling, self._cancelled = False, threading.Event()
        self._lock = threading.Lock()

    # -- life -----------------------------------------------------------------------------------------------
    def start(self) -> "BuildProcess":
        self._owned = [p for p in (self.out, self.work) if not _has_files(p)]
        env = dict(os.environ, FACETRACK_PROGRESS="1", PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
        try:
            self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True, text=True,
                                          encoding="utf-8", errors="replace", bufsize=1)
        except OSError as err:
            raise UserError(f"cannot start the build: {options.describe_os_error(err)}") from None
        if self.nice and hasattr(os, "setpriority"):
            try:   # a build beside the live studio yields the CPU to tracking; threads it starts later inherit it
                os.setpriority(os.PRIO_PROCESS, self._proc.pid, self.nice)
            except OSError:
                pass
        self.state, self._started = "running", self._clock()
        _running.add(self)
        self._reader = threading.Thread(target=self._read, name="build-watch", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            self._parse(line.rstrip("\n"))
        self._proc.stdout.close()
        rc = self._proc.wait()
        with self._lock:
            self.returncode = rc
            if self._cancelling:
                return                         # cancel() finishes the job
        if rc == 0 and (self.out / "manifest.json").is_file():
            self.fraction, self.state = 1.0, "done"
        else:
            self.error = self._error_line(rc)
            self._remove_owned()
            self.state = "failed"
        _running.discard(self)

    def _error_line(self, rc: int) -> str:
        errors = [ln[len("error: "):] for ln in self.lines if ln.startswith("error: ")]
        if errors:
            return errors[-1]
        if rc == 0:
            return f"the build finished without a package in {self.out}"
        if rc < 0:
            return f"the build was stopped by {_signal_name(-rc)}"
        last = next((ln.strip() for ln in reversed(self.lines) if ln.strip()), "")
        return f"the build failed (exit status {rc})" + (f": {last}" if last else "")

    def wait(self, timeout: float | None = None) -> str:
        if self._reader is not None:
            self._reader.join(timeout)
        return self.state

    def cancel(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace_s`; then the partial outputs are removed."""
        with self._lock:
            if self._proc is None or self.state != "running":
                return
            second = self._cancelling          # another thread is at it (closing while Cancel runs): wait
            if not second and self.returncode is not None:
                return                         # it ended on its own: the reader settles the state
            self._cancelling = True
        if second:
            self._cancelled.wait(grace_s + 10.0)
            return
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._proc.wait()
        self._signal(signal.SIGKILL)          # anything of the group still there (a grandchild that lingered)
        self._reader.join(5.0)
        self._remove_owned()
        self.state, self.error = "cancelled", None
        _running.discard(self)
        self._cancelled.set()

    def _signal(self, sig) -> None:
        try:
            os.killpg(self._proc.pid, sig)     # start_new_session: the group id is the child's pid
        except (ProcessLookupError, PermissionError):
            pass

    def _remove_owned(self) -> None:
        for path in self._owned:
            shutil.rmtree(path, ignore_errors=True)

    # -- progress ---------------------------------------------------------------------------------------------
    def _parse(self, line: str) -> None:
        if (step := progress.parse(line)) is not None:
            self._progress(*step)
            return
        self.lines.append(line)
        if m := STAGE_LINE.match(line):
            name, finished = m.group(3), m.group(4) == "done"
            if name not in STAGE_WEIGHTS:
                return
            with self._lock:
                if finished:
                    self._stage_key, self._within = None, 0.0
                    self._done_weight = sum(STAGE_WEIGHTS[s] for s in _stages_through(name))
                else:
                    self._stage_key, self._within = name, 0.0
                    self._done_weight = sum(STAGE_WEIGHTS[s] for s in _stages_through(name)[:-1])
                    self.stage, self.detail = f"{m.group(1)}/{m.group(2)} {STAGE_TEXT[name]}", ""
                self._update()

    def _progress(self, name: str, done: int, total: int) -> None:
        if name not in SUBSTAGES or total <= 0:
            return
        stage, lo, hi = SUBSTAGES[name]
        with self._lock:
            if stage != self._stage_key:
                return
            self._within = max(self._within, lo + (hi - lo) * min(1.0, done / total))   # a pool rebuilt late
            self.detail = f"{SUBSTAGE_TEXT[name]} {done}/{total}"                       # never moves it back
            self._update()

    def _update(self) -> None:
        weight = STAGE_WEIGHTS.get(self._stage_key, 0.0) * self._within
        self.fraction = min(1.0, (self._done_weight + weight) / sum(STAGE_WEIGHTS.values()))

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._started is None else self._clock() - self._started

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None until there is a rate to speak of)."""
        f, elapsed = self.fraction, self.elapsed_s
        if self.state != "running" or f < 0.01 or elapsed < 3.0:
            return None
        return elapsed * (1.0 - f) / f


def _stages_through(name: str) -> list[str]:
    names = list(STAGE_WEIGHTS)
    return names[: names.index(name) + 1]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@atexit.register
def _stop_orphans() -> None:
    """An interpreter that exits with a build still running takes it along (never an orphan training for minutes)."""
    for build in list(_running):
        build.cancel(grace_s=3.0)


def describe_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left…"
    if seconds < 60:
        return "less than a minute left"
    return f"about {math.ceil(seconds / 60)} min left"


# ------------------------------------------------------------------------------------------------ where things go
def data_dir() -> Path:
    """$FACETRACK_DATA, else $XDG_DATA_HOME/facetrack (an absolute one), else ~/.local/share/facetrack."""
    own = os.environ.get("FACETRACK_DATA")
    if own:
        return Path(own).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "facetrack"
    return Path.home() / ".local" / "share" / "facetrack"


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
        if not _has_files(out) and not _has_files(scratch_folder(out)):
            return name
    return base


def scratch_folder(out: Path) -> Path:
    """PACKAGE.work: the clips and the build's work folder, removed when make-model ends."""
    return out.with_name(out.name + ".work")


def claim(out: Path) -> Path:
    """Check that `out` and its scratch folder are new (or empty) and create the scratch folder; returns it."""
    out, scratch = Path(out), scratch_folder(Path(out))
    if _has_files(out):
        raise UserError(f"{out}: already holds files; choose a new package folder")
    if _has_files(scratch):
        raise UserError(f"{scratch}: left by another make-model run (running, or killed); remove it first")
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def release(out: Path, keep_package: bool) -> None:
    """Remove the scratch folder, and the package folder too unless it is a finished one."""
    shutil.rmtree(scratch_folder(Path(out)), ignore_errors=True)
    if not keep_package:
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the command
class _Stop:
    """SIGINT, SIGTERM and SIGHUP set `requested` (the signal's name) instead of killing the run, so it can stop
    the build's process group and remove the partial outputs first; the old handlers come back at exit."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __enter__(self):
        self._old, self.requested = {}, None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, _frame) -> None:
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


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


def record(source: str, folder: Path, seconds: float, perform_seconds: float, stop: _Stop,
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


def run_build(build: BuildProcess, stop: _Stop, poll_s: float = 0.5) -> None:
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
        with _Stop() as stop:
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
