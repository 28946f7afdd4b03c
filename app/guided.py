"""The guided recording (torch-free): the prompt script, and the two clips it records from any stream of frames.

An enrollment clip (relax, blink, smile, jaw, brows, frown, pucker, look around: the expressions the DAM must see,
then the head poses I2ZNet must see) and a new-environment clip (the performer as they will perform, in their
usual place: what adaptation learns from), each an H.264 MP4 put in place only once the whole recording is
finished. `facetrack make-model` (app.make_model) feeds it a camera or a file; the studio's "Make my model…"
dialog (app.onboarding) feeds it the pipeline's frame tap through TapRecorder, so capture never waits for the
encoder. The enrollment clip carries which prompt each of its frames was recorded under (enroll.prompts.json,
engine.prompts.sidecar): the build measures each expression's range where it was asked for, and the teacher's view
bias where the face was asked to rest (export.ranges, engine.view_bias).
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from engine import options, prompts
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


PERFORM_TEXT = "Perform as you will, in your usual place: talk, react, move as you do when you stream"


def enrollment_script(seconds: float = 30.0) -> list[Prompt]:
    """The enrollment prompts (engine.prompts, which the synthetic performer acts out too), scaled to `seconds`."""
    return [Prompt(step.key, step.text, t, "enroll") for step, t in prompts.timed(seconds)]


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
        self._keys: list[str] = []       # the prompt of each enrollment frame written
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
        step = self.script[self.step_at(now)]
        if step.clip is not None:
            self._write(step.clip, image, step.key)
        return True

    def _write(self, clip: str, image, key: str) -> None:
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
        if clip == "enroll":
            self._keys.append(key)
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
            options.write_json(prompts.sidecar(self.paths["enroll"]), prompts.timeline(self._keys))
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
